"""Real data-parallel training over ``torch.distributed`` (gloo, CPU): DGC against a dense all-reduce.

:func:`train_data_parallel` starts N worker processes (fresh Python interpreters), each with its own
shard of the training data, which meet at ``MASTER_ADDR:MASTER_PORT`` (a free local port by default; a
:class:`Rendezvous` may name an address, a world size and this host's first rank for several machines).
Every step each worker computes its gradient and then either

* ``dgc``: compresses it (:class:`~search_spaces.dgc.compressor.DGCCompressor`), all-gathers every
  worker's byte piece (indices + values) and sums the pieces — the exchange of the reference code
  (an all-gather: pieces with different indices cannot be all-reduced); or
* ``dense``: all-reduces the fp32 gradient and takes a momentum-SGD step (the baseline, same seed, same
  shards, same batches, same learning-rate schedule); or
* ``reference``: DGC with ``TrainSpec.reference``'s settings and learning-rate warm-up, the way the
  reference code trains (1-D tensors dense, exactly k entries, weight decay applied locally, the
  learning rate ramped from lr/N to lr over ``reference_lr_warmup_epochs``), beside the headline run.

The parent process is the only one that holds the job's reporter. Each worker talks to it over its own
authenticated local connection: the lowest local rank (the *leader*) sends epoch starts, ~10 loss points
per epoch and, after each epoch, the statistics (validation accuracy, loss, bytes, density, compression
ratio, compute and communication seconds, averaged over all workers) with its model weights; every rank
sends its own optimizer/compressor state so the parent can checkpoint the epoch. The parent forwards all
of it to a :class:`Listener`, polls ``should_stop`` and, when a worker dies, stops the others and raises
a :class:`RuntimeError` naming the rank and its error. Collectives and the rendezvous carry a timeout,
and the parent watches for silence, so a lost peer never hangs a job.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from multiprocessing import connection as mp_connection
from pathlib import Path
from typing import Any

import numpy as np

from search_spaces.base import JobCancelled
from search_spaces.dgc.spec import MODES as MODES
from search_spaces.dgc.spec import EpochReport, Listener, TrainSpec
from search_spaces.dgc.spec import PhaseStart as PhaseStart
from search_spaces.dgc.spec import Rendezvous as Rendezvous
from search_spaces.dgc.worker import WORKER_COMMAND
from search_spaces.kit import procs

# Seconds a stopped worker gets to exit on SIGTERM before it is killed.
TERMINATE_GRACE_S = 5.0
# How long the parent keeps collecting error messages after the first failure, to name the root cause.
FAILURE_GRACE_S = 1.5


# --- the parent side ------------------------------------------------------------------------------------


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def shard_indices(n: int, world_size: int, rank: int, seed: int) -> np.ndarray:
    """Global rank ``rank``'s fixed shard of ``n`` training samples: a seeded permutation cut into
    ``world_size`` equal parts (the remainder, fewer than ``world_size`` samples, is left out so every
    worker runs the same number of steps)."""
    per = n // world_size
    if per == 0:
        raise ValueError(f"{n} training samples cannot be shared among {world_size} workers")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[rank * per : (rank + 1) * per])


def train_data_parallel(
    spec: TrainSpec, listener: Listener, *, stop_check_s: float = 0.2, stall_s: float | None = None
) -> None:
    """Run ``spec.phases`` in ``spec.workers`` local processes and feed ``listener`` until all are done.

    Raises :class:`JobCancelled` when ``listener.should_stop()`` says so (polled every ``stop_check_s``
    and right after each epoch), :class:`RuntimeError` when a worker fails or nothing is heard for
    ``stall_s`` seconds (default: ten rendezvous timeouts). Every worker process is stopped and reaped
    before this returns or raises.
    """
    rv = spec.rendezvous
    if rv.rank_offset + spec.workers > spec.world_size:
        raise ValueError(
            f"ranks {rv.rank_offset}..{rv.rank_offset + spec.workers - 1} do not fit a world of {spec.world_size}"
        )
    with _WorkerPool(spec) as pool:
        _Supervisor(
            spec,
            listener,
            pool,
            stop_check_s=stop_check_s,
            stall_s=stall_s if stall_s is not None else 10 * rv.timeout_s,
        ).run()


class _WorkerPool:
    """The local worker processes and the connections their messages come back on.

    Workers are plain ``python`` subprocesses, not ``multiprocessing`` children: the job may run inside a
    daemonic Celery (billiard) pool process, which ``multiprocessing`` refuses children. Each worker
    reads the parent's address and a random key from its stdin, connects back (an authenticated
    ``multiprocessing.connection``), says which rank it is and receives its arguments (the spec with
    its own shard). Its stderr goes to a file whose tail explains a worker that dies without a word.
    """

    def __init__(self, spec: TrainSpec) -> None:
        self.spec = spec
        self.ranks = [spec.rendezvous.rank_offset + i for i in range(spec.workers)]
        self.port = spec.rendezvous.port or free_port(spec.rendezvous.address)
        self.threads = spec.threads_per_worker or max(1, (os.cpu_count() or 1) // spec.workers)
        self.authkey = secrets.token_bytes(32)
        self.listener = mp_connection.Listener(("127.0.0.1", 0), family="AF_INET", authkey=self.authkey)
        self.logdir = Path(tempfile.mkdtemp(prefix="dgc-workers-"))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.connections: dict[int, mp_connection.Connection] = {}
        self._accepted: queue.Queue[tuple[int, mp_connection.Connection]] = queue.Queue()
        self._acceptor = threading.Thread(target=self._accept, name="dgc-accept", daemon=True)

    def __enter__(self) -> _WorkerPool:
        try:
            self._acceptor.start()
            for rank in self.ranks:
                self.processes[rank] = self._start(rank)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.logdir, ignore_errors=True)

    def _start(self, rank: int) -> subprocess.Popen[bytes]:
        hello = {"address": list(self.listener.address), "authkey": self.authkey.hex(), "rank": rank}
        return procs.start_python(
            ["-c", WORKER_COMMAND, "--rank", str(rank)],
            threads=self.threads,
            log=self.logdir / f"rank{rank}.log",
            cwd=self.logdir,
            stdin=json.dumps(hello).encode() + b"\n",
        )

    def _accept(self) -> None:
        """Background thread: accept each worker's connection, send it its arguments."""
        for _ in self.ranks:
            try:
                conn = self.listener.accept()
                _, rank = conn.recv()
                conn.send(self._worker_args(rank))
            except (OSError, EOFError, multiprocessing.AuthenticationError):
                return  # the listener was closed (stop) or a worker vanished while connecting
            self._accepted.put((rank, conn))

    def _worker_args(self, rank: int) -> dict[str, Any]:
        spec = self.spec
        leader = rank == self.ranks[0]
        shard = shard_indices(len(spec.y_train), spec.world_size, rank, spec.seed)
        # Only the leader evaluates; the others need no validation data.
        x_val = spec.x_val if leader else spec.x_val[:0]
        y_val = spec.y_val if leader else spec.y_val[:0]
        local = replace(spec, x_train=spec.x_train[shard], y_train=spec.y_train[shard], x_val=x_val, y_val=y_val)
        return {"spec": local, "rank": rank, "leader": leader, "port": self.port, "threads": self.threads}

    def messages(self, timeout: float) -> list[tuple[Any, ...]]:
        """Whatever the workers sent, waiting up to ``timeout`` seconds for something."""
        while True:
            try:
                rank, conn = self._accepted.get_nowait()
            except queue.Empty:
                break
            self.connections[rank] = conn
        if not self.connections:
            time.sleep(timeout)
            return []
        out: list[tuple[Any, ...]] = []
        for ready in mp_connection.wait(list(self.connections.values()), timeout=timeout):
            assert isinstance(ready, mp_connection.Connection)
            try:
                while ready.poll():
                    out.append(ready.recv())
            except (EOFError, OSError):  # the worker closed its end: exited or died
                ready.close()
                self.connections = {r: c for r, c in self.connections.items() if c is not ready}
        return out

    def exit_codes(self) -> dict[int, int | None]:
        return {rank: process.poll() for rank, process in self.processes.items()}

    def log_tail(self, rank: int, lines: int = 8) -> str:
        return procs.log_tail(self.logdir / f"rank{rank}.log", lines)

    def stop(self) -> None:
        """SIGTERM every live worker, give them :data:`TERMINATE_GRACE_S`, SIGKILL the rest, reap all."""
        procs.stop(self.processes.values(), TERMINATE_GRACE_S)
        self.listener.close()
        self._acceptor.join(timeout=TERMINATE_GRACE_S)
        for conn in self.connections.values():
            conn.close()
        self.connections = {}


class _Supervisor:
    """The parent's loop: read the workers' messages, assemble epochs, forward them, watch the workers and
    the stop flag."""

    def __init__(
        self, spec: TrainSpec, listener: Listener, pool: _WorkerPool, *, stop_check_s: float, stall_s: float
    ) -> None:
        self.spec, self.listener, self.pool = spec, listener, pool
        self.stop_check_s, self.stall_s = stop_check_s, stall_s
        self.expected = [(p.mode, e) for p in spec.phases for e in range(p.start_epoch, spec.epochs)]
        self.partial: dict[tuple[str, int], dict[str, Any]] = {}
        self.done: set[int] = set()
        self.errors: dict[int, str] = {}

    def run(self) -> None:
        next_stop_check = 0.0
        last_heard = time.monotonic()
        while True:
            messages = self.pool.messages(timeout=0.05)
            now = time.monotonic()
            if messages:
                last_heard = now
            for message in messages:
                if self._handle(message):
                    next_stop_check = 0.0  # an epoch was just recorded: ask at once
            if len(self.done) == len(self.pool.ranks) and not self.expected:
                return
            codes = self.pool.exit_codes()
            if self.errors or any(code not in (None, 0) and rank not in self.done for rank, code in codes.items()):
                self._fail()
            if all(code == 0 for code in codes.values()) and now - last_heard > FAILURE_GRACE_S:
                raise RuntimeError("the DGC workers exited without finishing their epochs")
            if now >= next_stop_check:
                next_stop_check = now + self.stop_check_s
                if self.listener.should_stop():
                    raise JobCancelled()
            if now - last_heard > self.stall_s:
                raise RuntimeError(f"no word from the DGC workers for {self.stall_s:.0f} s; stopped them")

    def _handle(self, message: tuple[Any, ...]) -> bool:
        kind = message[0]
        if kind == "metric":
            _, mode, epoch, name, value, step, fraction = message
            self.listener.metric(mode, epoch, name, value, step, fraction)
        elif kind == "begin":
            _, mode, epoch, started = message
            self.listener.begin(mode, epoch, started)
        elif kind == "epoch":
            _, mode, epoch, stats, model_state, started, finished = message
            self.partial.setdefault((mode, epoch), {}).update(
                stats=stats, model_state=model_state, started=started, finished=finished
            )
            return self._emit_ready()
        elif kind == "state":
            _, mode, epoch, rank, state = message
            self.partial.setdefault((mode, epoch), {}).setdefault("worker_states", {})[rank] = state
            return self._emit_ready()
        elif kind == "error":
            _, rank, text = message
            self.errors.setdefault(rank, text)
        elif kind == "done":
            self.done.add(message[1])
        return False

    def _emit_ready(self) -> bool:
        """Hand over finished epochs in order, each once its stats and every local rank's state are in."""
        emitted = False
        while self.expected:
            key = self.expected[0]
            part = self.partial.get(key, {})
            if "stats" not in part or len(part.get("worker_states", {})) < len(self.pool.ranks):
                break
            self.expected.pop(0)
            del self.partial[key]
            self.listener.epoch(
                EpochReport(
                    mode=key[0],
                    epoch=key[1],
                    stats=part["stats"],
                    model_state=part["model_state"],
                    worker_states=part["worker_states"],
                    started=part["started"],
                    finished=part["finished"],
                )
            )
            emitted = True
            if self.listener.should_stop():
                raise JobCancelled()
        return emitted

    def _fail(self) -> None:
        """Collect what the workers say for a moment, then stop them all and raise with the root cause first;
        or go on when every rank that exited badly had already said "done"."""
        deadline = time.monotonic() + FAILURE_GRACE_S
        while time.monotonic() < deadline:
            for message in self.pool.messages(timeout=0.05):
                self._handle(message)  # its errors, and a "done" that was on its way when the rank exited
        # A rank that died on its own without a word (killed, crashed) is the cause; its peers' errors
        # are echoes. Exit codes are read before the survivors are stopped. A rank that said "done" had sent
        # all its work: a crash after it is its process teardown (gloo's threads can abort a torch process at
        # exit, "terminate called without an active exception"), not a lost result.
        silent = [
            (rank, code)
            for rank, code in self.pool.exit_codes().items()
            if code not in (None, 0) and rank not in self.errors and rank not in self.done
        ]
        if not silent and not self.errors:
            return
        self.pool.stop()
        if silent:
            rank, code = silent[0]
            log = self.pool.log_tail(rank)
            raise RuntimeError(
                f"DGC worker rank {rank} died with {procs.describe_exit(code)}"
                + (f"; its last output:\n{log}" if log else "")
                + (
                    f"\nrank {min(self.errors)} then failed with:\n{procs.tail(self.errors[min(self.errors)])}"
                    if self.errors
                    else ""
                )
            )
        if self.errors:
            rank = next(iter(self.errors))
            raise RuntimeError(f"DGC worker rank {rank} failed:\n{procs.tail(self.errors[rank], 25)}")
