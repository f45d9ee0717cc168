"""One DGC worker process: join the gloo group, train the runs the parent asked for on its shard, report.

Started by :mod:`.distributed` (through :mod:`search_spaces.kit.procs`) as ``python -c`` :data:`WORKER_COMMAND`; it
reads the parent's address and key from stdin, connects back, receives its arguments (the spec with its own
shard) and sends epoch starts, loss points, each epoch's statistics and weights (the leader) and its own
optimizer/compressor state (every rank). Every step it computes its gradient and exchanges it: DGC's sparse
pieces all-gathered (:class:`_DgcStep`) or the dense gradient all-reduced (:class:`_DenseStep`).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from search_spaces.dgc.compressor import DENSE_VALUE_BYTES, DGCCompressor, DGCSettings, decode, encode
from search_spaces.dgc.spec import MODES, PhaseStart, TrainSpec
from search_spaces.kit.procs import die_with_parent

# What a worker process runs (``--rank`` only labels it for ``ps``); its connection details come on stdin.
WORKER_COMMAND = "from search_spaces.dgc.worker import worker_cli; worker_cli()"


def worker_cli() -> None:
    """A worker process: connect back to the parent, get its arguments, train, report; on any error say
    so and exit 1."""
    die_with_parent()
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
    # Everything is sent: leave without the interpreter's teardown, where torch's gloo threads can abort the
    # process ("terminate called without an active exception", seen once in a full test run on a busy machine).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Channel:
    """The worker's end of its connection to the parent."""

    def __init__(self, conn: mp_connection.Connection) -> None:
        self.conn = conn

    def put(self, message: tuple[Any, ...]) -> None:
        self.conn.send(message)


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
