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

import contextlib
import datetime
import io
import json
import math
import multiprocessing
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from multiprocessing import connection as mp_connection
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from search_spaces.base import JobCancelled
from search_spaces.dgc.compressor import (
    DENSE_VALUE_BYTES,
    DGCCompressor,
    DGCSettings,
    decode,
    encode,
)

MODES = ("dgc", "dense", "reference")
# Seconds a stopped worker gets to exit on SIGTERM before it is killed.
TERMINATE_GRACE_S = 5.0
# How long the parent keeps collecting error messages after the first failure, to name the root cause.
FAILURE_GRACE_S = 1.5


@dataclass(frozen=True)
class Rendezvous:
    """Where the workers meet. The defaults: this host only, a free port on the loopback interface.

    For several machines every host runs the same job with the same ``address``/``port`` (rank 0's
    host, which serves the store) and ``world_size`` (all workers of all hosts), each with its own
    ``rank_offset`` (the global rank of its first local worker).
    """

    address: str = "127.0.0.1"
    port: int = 0
    world_size: int | None = None
    rank_offset: int = 0
    timeout_s: float = 60.0


@dataclass(frozen=True)
class PhaseStart:
    """One training run to do in the workers: ``mode`` from ``start_epoch`` to the last epoch.

    ``model_state`` (``torch.save`` bytes of a ``state_dict``) and ``worker_states`` (per global rank:
    the compressor's or the optimizer's state) resume a run; ``None``/missing starts from the spec's
    initial weights and fresh state.
    """

    mode: str
    start_epoch: int = 0
    model_state: bytes | None = None
    worker_states: dict[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSpec:
    """Everything the workers need. ``batch_size`` is per worker; ``x_train``/``y_train`` are the whole
    training split (the launcher hands each worker only its shard). ``lr_warmup_epochs`` ramps the
    learning rate of the ``dgc`` and ``dense`` runs (see :func:`lr_at`); the ``reference`` run uses
    ``reference`` (DGC settings, default: ``dgc``'s) and ``reference_lr_warmup_epochs``."""

    arch: dict[str, Any]
    initial_state: bytes
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    phases: tuple[PhaseStart, ...]
    workers: int = 4
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.1
    lr_schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip_norm: float = 0.0
    dgc: DGCSettings = field(default_factory=DGCSettings)
    lr_warmup_epochs: int = 0
    reference: DGCSettings | None = None
    reference_lr_warmup_epochs: int = 0
    seed: int = 0
    rendezvous: Rendezvous = field(default_factory=Rendezvous)
    threads_per_worker: int = 0  # 0: the host's cores shared out among the local workers
    loss_points_per_epoch: int = 10

    @property
    def world_size(self) -> int:
        return self.rendezvous.world_size or self.workers


@dataclass
class EpochReport:
    """One finished epoch of one run, as the parent assembles it from all local workers."""

    mode: str
    epoch: int
    stats: dict[str, float]
    model_state: bytes
    worker_states: dict[int, bytes]
    started: float
    finished: float


class Listener(Protocol):
    """What the parent does with the workers' news (the job kind turns it into reporter calls)."""

    def begin(self, mode: str, epoch: int, started: float) -> None:
        """Epoch ``epoch`` of ``mode`` started (wall-clock ``started``)."""

    def metric(self, mode: str, epoch: int, name: str, value: float, step: int, fraction: float) -> None:
        """A live-curve point at global ``step``; ``fraction`` of the epoch is done."""

    def epoch(self, report: EpochReport) -> None:
        """An epoch finished on every worker; checkpoint it before recording it."""

    def should_stop(self) -> bool:
        """True to stop all workers and raise :class:`JobCancelled`."""


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
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        with open(self.logdir / f"rank{rank}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_COMMAND, "--rank", str(rank)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self.logdir),
            )
        hello = {"address": list(self.listener.address), "authkey": self.authkey.hex(), "rank": rank}
        assert process.stdin is not None
        process.stdin.write(json.dumps(hello).encode() + b"\n")
        process.stdin.close()
        return process

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
        try:
            return _tail((self.logdir / f"rank{rank}.log").read_text(errors="replace"), lines)
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM every live worker, give them :data:`TERMINATE_GRACE_S`, SIGKILL the rest, reap all."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + TERMINATE_GRACE_S
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
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
            if self.errors or any(code not in (None, 0) for code in codes.values()):
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
        """Collect what the workers say for a moment, stop them all, raise with the root cause first."""
        deadline = time.monotonic() + FAILURE_GRACE_S
        while time.monotonic() < deadline:
            for message in self.pool.messages(timeout=0.05):
                if message[0] == "error":
                    self.errors.setdefault(message[1], message[2])
        # A rank that died on its own without a word (killed, crashed) is the cause; its peers' errors
        # are echoes. Exit codes are read before the survivors are stopped.
        silent = [
            (rank, code)
            for rank, code in self.pool.exit_codes().items()
            if code not in (None, 0) and rank not in self.errors
        ]
        self.pool.stop()
        if silent:
            rank, code = silent[0]
            log = self.pool.log_tail(rank)
            raise RuntimeError(
                f"DGC worker rank {rank} died with {_describe_exit(code)}"
                + (f"; its last output:\n{log}" if log else "")
                + (
                    f"\nrank {min(self.errors)} then failed with:\n{_tail(self.errors[min(self.errors)])}"
                    if self.errors
                    else ""
                )
            )
        if self.errors:
            rank = next(iter(self.errors))
            raise RuntimeError(f"DGC worker rank {rank} failed:\n{_tail(self.errors[rank], 25)}")
        codes = ", ".join(f"rank {r}: {_describe_exit(c)}" for r, c in self.pool.exit_codes().items())
        raise RuntimeError(f"DGC workers stopped unexpectedly ({codes})")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _tail(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- the worker side ------------------------------------------------------------------------------------

# What a worker process runs (``--rank`` only labels it for ``ps``); its connection details come on stdin.
_WORKER_COMMAND = "from search_spaces.dgc.distributed import worker_cli; worker_cli()"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def worker_cli() -> None:
    """A worker process: connect back to the parent, get its arguments, train, report; on any error say
    so and exit 1."""
    _die_with_parent()
    hello = json.loads(sys.stdin.readline())
    rank = int(hello["rank"])
    conn = mp_connection.Client(tuple(hello["address"]), family="AF_INET", authkey=bytes.fromhex(hello["authkey"]))
    conn.send(("hello", rank))
    args = conn.recv()
    channel = _Channel(conn)
    try:
        _Worker(args, channel).run()
    except BaseException:  # noqa: BLE001 - everything a worker hits must reach the parent
        with contextlib.suppress(OSError):
            channel.put(("error", rank, traceback.format_exc()))
        raise SystemExit(1) from None
    channel.put(("done", rank))
    conn.close()


class _Channel:
    """The worker's end of its connection to the parent."""

    def __init__(self, conn: mp_connection.Connection) -> None:
        self.conn = conn

    def put(self, message: tuple[Any, ...]) -> None:
        self.conn.send(message)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the parent dies (a hard-killed Celery worker must not leave
    training processes behind); elsewhere the parent's own cleanup is all there is."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def lr_at(
    epoch: int,
    *,
    lr: float,
    schedule: str,
    epochs: int,
    warmup_epochs: int = 0,
    world_size: int = 1,
    progress: float = 0.0,
) -> float:
    """The learning rate of ``epoch`` (``progress``: the fraction of it done): cosine annealing to 0 over
    ``epochs`` (Loshchilov & Hutter 2017, the kit's schedule) or constant.

    With ``warmup_epochs`` the reference code's warm-up (Goyal et al. 2017, its ``adjust_learning_rate``)
    comes first: the rate rises linearly per step from ``lr/N`` to ``lr`` over those epochs, and the
    cosine then runs over the remaining ``epochs − warmup_epochs``."""
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; use 'cosine' or 'constant'")
    if epoch < warmup_epochs:
        n = max(world_size, 1)
        return lr * ((epoch + progress) * (n - 1) / warmup_epochs + 1) / n
    if schedule == "cosine":
        span = max(epochs - warmup_epochs, 1)
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(epoch - warmup_epochs, span) / span))
    return lr


def all_gather_bytes(
    payload: torch.Tensor, world_size: int, capacity: int | None = None
) -> tuple[list[torch.Tensor], int]:
    """Every rank's uint8 ``payload`` (their lengths may differ), in rank order, and the padded length.

    gloo's all-gather needs equal sizes. With ``capacity`` (the most a piece can hold, the same on every
    rank) it is one collective: each piece travels in a buffer of ``capacity`` bytes behind an 8-byte
    length header. Without, the lengths are gathered first (8 bytes each) and the pieces padded to the
    longest. The statistics count the padding apart from the payload. One collective instead of two
    matters: on a busy machine each costs about the same, whatever its size.
    """
    if capacity is not None:
        if payload.numel() > capacity:
            raise ValueError(f"a piece of {payload.numel()} bytes does not fit the exchange's {capacity}")
        buffer = torch.zeros(capacity + 8, dtype=torch.uint8)
        buffer[:8] = torch.tensor([payload.numel()], dtype=torch.int64).view(torch.uint8)
        buffer[8 : 8 + payload.numel()] = payload
        gathered = [torch.empty_like(buffer) for _ in range(world_size)]
        dist.all_gather(gathered, buffer)
        sizes = [int(piece[:8].view(torch.int64)) for piece in gathered]
        return [piece[8 : 8 + size] for piece, size in zip(gathered, sizes, strict=True)], capacity
    length = torch.tensor([payload.numel()], dtype=torch.int64)
    lengths = [torch.zeros_like(length) for _ in range(world_size)]
    dist.all_gather(lengths, length)
    sizes = [int(t) for t in lengths]
    longest = max(sizes)
    padded = (
        payload if payload.numel() == longest else torch.cat([payload, payload.new_zeros(longest - payload.numel())])
    )
    pieces = [torch.empty(longest, dtype=torch.uint8) for _ in range(world_size)]
    dist.all_gather(pieces, padded)
    return [piece[:size] for piece, size in zip(pieces, sizes, strict=True)], longest


def _to_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _from_bytes(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


@dataclass
class _Counters:
    """One worker's sums over an epoch (all-reduced across workers at its end)."""

    loss: float = 0.0
    steps: int = 0
    nbytes: int = 0
    wire_bytes: int = 0
    entries: int = 0
    compute_s: float = 0.0
    comm_s: float = 0.0
    select_s: float = 0.0
    fallbacks: int = 0

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor(
            [
                self.loss,
                self.steps,
                self.nbytes,
                self.wire_bytes,
                self.entries,
                self.compute_s,
                self.comm_s,
                self.select_s,
                self.fallbacks,
            ],
            dtype=torch.float64,
        )


class _Worker:
    def __init__(self, args: dict[str, Any], messages: Any) -> None:
        self.spec: TrainSpec = args["spec"]
        self.rank: int = args["rank"]
        self.leader: bool = args["leader"]
        self.port: int = args["port"]
        self.threads: int = args["threads"]
        self.messages = messages
        self.world = self.spec.world_size

    def run(self) -> None:
        torch.set_num_threads(self.threads)
        rv = self.spec.rendezvous
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = rv.address, str(self.port)
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://{rv.address}:{self.port}",
            rank=self.rank,
            world_size=self.world,
            timeout=datetime.timedelta(seconds=rv.timeout_s),
        )
        for phase in self.spec.phases:
            self._run_phase(phase)
        dist.barrier()
        dist.destroy_process_group()

    def _run_phase(self, phase: PhaseStart) -> None:
        from search_spaces.kit import models

        spec = self.spec
        model = models.build_model(spec.arch)
        model.load_state_dict(_from_bytes(phase.model_state or spec.initial_state))
        # Every worker must start from the same weights; rank 0's are the reference.
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)
        params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
        state = phase.worker_states.get(self.rank)
        step_fn: _DgcStep | _DenseStep
        if phase.mode == "dgc":
            step_fn = _DgcStep(params, spec.dgc, self.world, seed=spec.seed * 1000 + self.rank)
        elif phase.mode == "reference":
            step_fn = _DgcStep(params, spec.reference or spec.dgc, self.world, seed=spec.seed * 1000 + self.rank)
        elif phase.mode == "dense":
            step_fn = _DenseStep(params, spec, self.world)
        else:
            raise ValueError(f"unknown mode {phase.mode!r}; use one of {', '.join(MODES)}")
        if state is not None:
            step_fn.load_state_dict(_from_bytes(state))
        x = torch.from_numpy(np.ascontiguousarray(spec.x_train)).float()
        y = torch.from_numpy(np.ascontiguousarray(spec.y_train)).long()
        for epoch in range(phase.start_epoch, spec.epochs):
            self._run_epoch(phase.mode, epoch, model, params, step_fn, x, y)

    def _run_epoch(
        self,
        mode: str,
        epoch: int,
        model: nn.Module,
        params: list[torch.Tensor],
        step_fn: _DgcStep | _DenseStep,
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> None:
        spec = self.spec
        started = time.time()
        if self.leader:
            self.messages.put(("begin", mode, epoch, started))
        warmup = spec.reference_lr_warmup_epochs if mode == "reference" else spec.lr_warmup_epochs

        def lr_now(progress: float) -> float:
            return lr_at(
                epoch,
                lr=spec.lr,
                schedule=spec.lr_schedule,
                epochs=spec.epochs,
                warmup_epochs=warmup,
                world_size=self.world,
                progress=progress,
            )

        lr = lr_now(0.0)
        sparsity = step_fn.set_epoch(epoch)
        # The batch order depends on (seed, epoch, rank) only, so a resumed run sees the same batches.
        generator = torch.Generator().manual_seed(spec.seed * 1_000_003 + epoch * 1_009 + self.rank)
        order = torch.randperm(len(x), generator=generator)
        steps = math.ceil(len(x) / spec.batch_size)
        every = max(1, steps // max(spec.loss_points_per_epoch, 1))
        counters = _Counters()
        window: list[torch.Tensor] = []
        model.train()
        for b in range(steps):
            idx = order[b * spec.batch_size : (b + 1) * spec.batch_size]
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            for p in params:
                p.grad = None
            loss.backward()
            step_fn.step(lr_now(b / steps) if epoch < warmup else lr, counters, t0)
            window.append(loss.detach())
            if self.leader and (b + 1) % every == 0:
                value = float(torch.stack(window).mean())
                window.clear()
                self.messages.put(
                    ("metric", mode, epoch, f"{mode}/train_loss", value, epoch * steps + b + 1, (b + 1) / steps)
                )
            counters.loss += float(loss.detach())
            counters.steps += 1
        _average_buffers(model, self.world)
        totals = counters.as_tensor()
        dist.all_reduce(totals)
        stats = self._stats(mode, totals / self.world, step_fn.numel, lr, sparsity)
        finished = time.time()
        if self.leader:
            from search_spaces.kit import trainer

            stats["accuracy"] = trainer.evaluate(model, spec.x_val, spec.y_val) if len(spec.y_val) else math.nan
            stats["epoch_s"] = finished - started
            self.messages.put(("epoch", mode, epoch, stats, _to_bytes(model.state_dict()), started, time.time()))
        self.messages.put(("state", mode, epoch, self.rank, _to_bytes(step_fn.state_dict())))

    @staticmethod
    def _stats(mode: str, mean: torch.Tensor, numel: int, lr: float, sparsity: float) -> dict[str, float]:
        loss, steps, nbytes, wire_bytes, entries, compute_s, comm_s, select_s, fallbacks = mean.tolist()
        dense_bytes = numel * DENSE_VALUE_BYTES * steps
        return {
            "loss": loss / max(steps, 1),
            "bytes_per_worker": nbytes,
            "wire_bytes_per_worker": wire_bytes,
            "dense_bytes_per_worker": dense_bytes,
            "density": entries / max(numel * steps, 1),
            "compression_ratio": dense_bytes / nbytes if nbytes else math.inf,
            "compute_s": compute_s,
            "comm_s": comm_s,
            "select_s": select_s,
            "fallbacks_per_step": fallbacks / max(steps, 1),
            "steps": steps,
            "lr": lr,
            "sparsity": sparsity,
            "params": numel,
        }


def _average_buffers(model: nn.Module, world: int) -> None:
    """Average BatchNorm running statistics over the workers at the end of an epoch (both modes), so the
    evaluated model is the same whichever worker holds it. Once per epoch, not counted as gradient bytes."""
    buffers = [b for b in model.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1) for b in buffers])
    dist.all_reduce(flat)
    flat.div_(world)
    offset = 0
    for b in buffers:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()


class _DgcStep:
    """A DGC step: compress, all-gather the byte pieces, sum them, update the weights."""

    def __init__(self, params: list[torch.Tensor], settings: DGCSettings, world: int, *, seed: int) -> None:
        self.params, self.world = params, world
        self.value_dtype = settings.value_dtype
        self.compressor = DGCCompressor([p.shape for p in params], settings, world_size=world, seed=seed)
        self.numel = self.compressor.total

    def set_epoch(self, epoch: int) -> float:
        return self.compressor.set_epoch(epoch)

    def step(self, lr: float, counters: _Counters, t0: float) -> None:
        stats_before = (self.compressor.stats.select_seconds, self.compressor.stats.fallbacks)
        piece = self.compressor.compress([p.grad for p in self.params], self.params)
        payload = encode(piece)
        t1 = time.perf_counter()
        buffers, longest = all_gather_bytes(payload, self.world, capacity=self.compressor.max_piece_bytes())
        t2 = time.perf_counter()
        aggregated = self.compressor.aggregate(
            [decode(b, self.value_dtype, self.compressor.dense_total) for b in buffers]
        )
        self.compressor.apply_update(self.params, self.compressor.direction(aggregated, self.params), lr)
        t3 = time.perf_counter()
        counters.compute_s += (t1 - t0) + (t3 - t2)
        counters.comm_s += t2 - t1
        counters.nbytes += payload.numel()
        counters.wire_bytes += longest + 8
        counters.entries += piece.entries
        counters.select_s += self.compressor.stats.select_seconds - stats_before[0]
        counters.fallbacks += self.compressor.stats.fallbacks - stats_before[1]

    def state_dict(self) -> dict[str, Any]:
        return self.compressor.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.compressor.load_state_dict(state)


class _DenseStep:
    """The baseline step: all-reduce the fp32 gradient, average, clip globally, momentum SGD."""

    def __init__(self, params: list[torch.Tensor], spec: TrainSpec, world: int) -> None:
        self.params, self.world, self.clip_norm = params, world, spec.clip_norm
        self.optimizer = torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
        self.numel = sum(p.numel() for p in params)

    def set_epoch(self, epoch: int) -> float:
        return 0.0

    def step(self, lr: float, counters: _Counters, t0: float) -> None:
        flat = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel()) for p in self.params])
        t1 = time.perf_counter()
        dist.all_reduce(flat)
        t2 = time.perf_counter()
        flat.div_(self.world)
        if self.clip_norm > 0:
            # Conventional clipping: on the aggregated gradient (Pascanu et al. 2013).
            norm = torch.linalg.vector_norm(flat)
            flat.mul_(torch.clamp(self.clip_norm / (norm + 1e-6), max=1.0))
        offset = 0
        for p in self.params:
            p.grad = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        t3 = time.perf_counter()
        counters.compute_s += (t1 - t0) + (t3 - t2)
        counters.comm_s += t2 - t1
        counters.nbytes += flat.numel() * DENSE_VALUE_BYTES
        counters.wire_bytes += flat.numel() * DENSE_VALUE_BYTES
        counters.entries += flat.numel()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)
