"""A trial's bit-accurate emulation, run from the sweep's side: the child process of
:mod:`search_spaces.hls.emulate` started on the written project, watched for a cancel and a time limit, and
its failure (the last lines of its stderr) turned into the trial's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search_spaces.base import JobCancelled
from search_spaces.hls.config import TrialFailed
from search_spaces.kit import procs

if TYPE_CHECKING:
    from search_spaces.hls.trial import _Run

EMULATION_TIMEOUT_S = 600
EMULATION_LOG = "emulation.log"  # in the trial's project: the emulation child's stderr


def emulate(run: _Run, project: Path) -> np.ndarray:
    """Compile ``project``'s bit-accurate emulation and predict the validation inputs in a child process
    (:mod:`search_spaces.hls.emulate`), so a compiler error or a crash of the emulation is this trial's
    failure and not the worker's. Polls ``should_stop()`` while it runs; kills the child on a cancel."""
    inputs = run.workdir / "x_val.npy"
    if not inputs.exists():
        np.save(inputs, np.ascontiguousarray(run.net.x_val, dtype=np.float32))
    outputs = project / "emulation_outputs.npy"
    log_path = project / EMULATION_LOG
    # stdout discarded: hls4ml and the compiled emulation chatter there, and the error is on stderr
    child = procs.start_python(
        ["-m", "search_spaces.hls.emulate", str(project), str(inputs), str(outputs)],
        threads=1,
        log=log_path,
        discard_stdout=True,
    )
    deadline = time.monotonic() + EMULATION_TIMEOUT_S
    try:
        while child.poll() is None:
            if run.reporter.should_stop():
                raise JobCancelled()
            if time.monotonic() > deadline:
                raise TrialFailed(f"compiling and running the emulation took over {EMULATION_TIMEOUT_S} s")
            time.sleep(0.1)
    finally:
        procs.stop([child], grace_s=0)
    if child.returncode != 0:
        reason = procs.log_tail(log_path, lines=6) or "no output"
        raise TrialFailed(f"hls4ml compile or emulation failed: {reason}\n({procs.describe_exit(child.returncode)})")
    return np.load(outputs)
