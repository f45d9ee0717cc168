"""Child processes of a job: start them with a fixed torch thread count, stop them cleanly, explain their exit.

Children are plain ``python`` subprocesses (the effect of a ``spawn`` start: a fresh interpreter that imports
what it needs), not ``multiprocessing`` children, because a job may run inside a daemonic Celery (billiard)
pool process, which ``multiprocessing`` refuses children. Every child sees the project on ``PYTHONPATH`` and
``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set to its share of the cores, writes stdout and stderr to a log file
whose tail explains a child that dies without a word, and (on Linux) is killed when its parent dies, so a
hard-killed worker leaves no training process behind. The DGC ranks (:mod:`search_spaces.dgc.distributed`)
and the NAS evaluation pool (:mod:`search_spaces.nas.evaluate`) start theirs here.

Imports nothing heavy: the caller's child imports torch itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def child_env(threads: int) -> dict[str, str]:
    """This process's environment with the project importable and ``threads`` intra-op threads per child."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def start_python(
    args: Sequence[str],
    *,
    threads: int,
    log: Path,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    discard_stdout: bool = False,
) -> subprocess.Popen[bytes]:
    """``python ARGS`` (e.g. ``["-m", "pkg.mod", ...]``) with :func:`child_env`, its output in ``log``.

    ``stdin``, if given, is written to the child's standard input, which is then closed (a way to hand it a
    secret that must not appear in ``ps``). ``cwd`` defaults to the project root. ``discard_stdout`` keeps only
    stderr in ``log``, for a child whose libraries chatter on stdout (hls4ml, a C++ emulation) so that the
    chatter would push the error out of the log's tail."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if discard_stdout else out,
            stderr=out if discard_stdout else subprocess.STDOUT,
            env=child_env(threads),
            cwd=str(cwd or PROJECT_ROOT),
        )
    if stdin is not None:
        assert process.stdin is not None
        process.stdin.write(stdin)
        process.stdin.close()
    return process


def stop(processes: Iterable[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM every live child, give them ``grace_s`` seconds together, SIGKILL the rest, reap all.

    ``grace_s = 0`` kills at once (a child whose work is thrown away needs no chance to clean up)."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            if grace_s > 0:
                process.terminate()
            else:
                process.kill()
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def describe_exit(code: int | None) -> str:
    """A child's exit status in words: ``exit code 1``, ``signal SIGKILL``, ``no exit code`` (still running)."""
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def tail(text: str, lines: int = 6) -> str:
    """The last ``lines`` lines of ``text`` (a log or a traceback), stripped."""
    return "\n".join(text.strip().splitlines()[-lines:])


def log_tail(log: Path, lines: int = 8) -> str:
    """The last ``lines`` lines of a child's log file; empty if it cannot be read."""
    try:
        return tail(log.read_text(errors="replace"), lines)
    except OSError:
        return ""


def die_with_parent() -> None:
    """Called in a child: ask Linux to SIGKILL it when its parent dies; elsewhere the parent's own
    cleanup (:func:`stop`) is all there is."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
