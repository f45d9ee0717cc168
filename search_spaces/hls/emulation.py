"""A trial's bit-accurate emulation, run from the sweep's side: the child process of
:mod:`search_spaces.hls.emulate` started on the written project, watched for a cancel and a time limit, and
its failure (the last lines of its stderr) turned into the trial's."""

from __future__ import annotations

import hashlib
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


def validation_inputs(workdir: Path, x_val: np.ndarray) -> Path:
    """The emulated validation images as the child reads them, written once per content: the name carries
    their hash, so a run resumed after a change of the subset (its size follows the network's work per image)
    never emulates the old images against the new labels; written whole or not at all."""
    x = np.ascontiguousarray(x_val, dtype=np.float32)
    path = workdir / f"x_val_{hashlib.sha256(x.tobytes()).hexdigest()[:16]}.npy"
    if not path.exists():
        partial = path.with_name(path.stem + ".partial.npy")
        np.save(partial, x)
        partial.replace(path)
    return path


def emulate(run: _Run, project: Path) -> np.ndarray:
    """Compile ``project``'s bit-accurate emulation and predict the validation inputs in a child process
    (:mod:`search_spaces.hls.emulate`), so a compiler error or a crash of the emulation is this trial's
    failure and not the worker's. Polls ``should_stop()`` while it runs; kills the child on a cancel."""
    inputs = validation_inputs(run.workdir, run.net.x_val)
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
