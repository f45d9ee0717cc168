"""A lean supervised training loop with cancel checks, live metrics, pruning masks and resume.

The loop indexes pre-loaded tensors with a per-epoch permutation instead of going through a
``DataLoader``: the kit's datasets fit in memory, and for the small models trained here the loader's
per-batch Python work would cost more than the model. Everything the loop adds to a hand-written
PyTorch loop (cancel checks, metric points, mask multiplication) is either throttled or a single fused
tensor operation, so its throughput stays within a few percent of the plain loop
(``bench/trainer_overhead.py`` measures it).
"""

from __future__ import annotations

import io
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.base import JobCancelled

# Seconds between two ``reporter.should_stop()`` calls: a worker's reporter may ask the database, and a
# cancel only has to be honoured promptly, not within one batch.
STOP_CHECK_SECONDS = 0.2
# Train-loss points per epoch sent to the reporter (the live curve needs a handful, not every batch).
LOSS_POINTS_PER_EPOCH = 10

ArrayLike = np.ndarray | torch.Tensor
EpochCallback = Callable[[int, "TrainResult"], bool | None]


class TrainReporter(Protocol):
    """What :func:`train` uses of a :class:`search_spaces.base.Reporter` (which is one): curves and the stop check."""

    def metric(self, name: str, value: float, step: int, trial: int | None = None) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass
class TrainResult:
    """What :func:`train` did.

    ``epochs_done`` counts all epochs finished, resumed ones included; ``train_loss`` is the mean loss of
    the last epoch; ``val_acc`` the validation accuracy after it (``None`` without validation data);
    ``state`` the optimizer, scheduler and epoch counter to pass back as ``state=`` to resume;
    ``stopped`` is true when ``on_epoch_end`` asked to stop before ``epochs``.
    """

    epochs_done: int = 0
    train_loss: float = math.nan
    val_acc: float | None = None
    seconds: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """PyTorch's intra-op thread count set to ``threads`` inside the block and restored after it (``None``:
    leave it). The kit's small models run fastest with one thread on a small shared machine."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (every device's) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def as_tensor(a: ArrayLike, device: str | torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``a`` as a tensor on ``device``, sharing memory with a NumPy array where it can."""
    t = torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
    return t.to(device=device, dtype=dtype if dtype is not None else t.dtype)


@torch.inference_mode()
def predict(
    model: nn.Module, x: ArrayLike, *, device: str | torch.device = "cpu", batch_size: int = 512
) -> torch.Tensor:
    """Predicted class indices of ``x`` (in eval mode; the model's mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        xs = as_tensor(x, device, torch.float32)
        preds = [model(xs[i : i + batch_size]).argmax(dim=1) for i in range(0, len(xs), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long, device=device)


def evaluate(
    model: nn.Module, x: ArrayLike, y: ArrayLike, *, device: str | torch.device = "cpu", batch_size: int = 512
) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``; NaN for an empty set."""
    if len(y) == 0:
        return math.nan
    preds = predict(model, x, device=device, batch_size=batch_size)
    return float((preds == as_tensor(y, preds.device, torch.long)).float().mean().item())


def make_optimizer(
    model: nn.Module,
    name: str,
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD with heavy-ball (or, with ``nesterov``, Nesterov) momentum, or Adam."""
    if name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
        )
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adam'")


SCHEDULES = ("cosine", "cosine_epoch", "constant")


def cosine_factor(step: int, total: int) -> float:
    """½(1 + cos(π·step/total)): the learning-rate factor at ``step`` of ``total`` (1 at the start, 0 at the end)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def steps_per_update(name: str, steps_per_epoch: int) -> int:
    """Optimizer steps between two scheduler steps: 1 for the per-batch ``cosine``, an epoch for the others."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; use one of {', '.join(SCHEDULES)}")
    return 1 if name == "cosine" else steps_per_epoch


def make_schedule(
    optimizer: torch.optim.Optimizer, name: str, epochs: int, steps_per_epoch: int = 1
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate factor of ``name``:

    * ``cosine``: annealed to 0 over all ``epochs × steps_per_epoch`` optimizer steps, stepped after every batch
      (Loshchilov & Hutter 2017, SGDR without restarts; the lr of batch t of T is ½·lr·(1 + cos(πt/T)), as in
      han-cai/PathLevel-EAS's ``RunConfig._learning_rate``), so even a one-epoch fine-tune ends near 0;
    * ``cosine_epoch``: the same curve stepped once per epoch (each epoch at one rate; the last epoch of E runs at
      ½(1 + cos(π(E−1)/E)), half the rate for E = 2, the full rate for E = 1);
    * ``constant``.
    """
    per = steps_per_update(name, steps_per_epoch)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    total = epochs * steps_per_epoch // per
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_factor(s, total))


def train(
    model: nn.Module,
    x_train: ArrayLike,
    y_train: ArrayLike,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    seed: int = 0,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    schedule: str = "cosine",
    x_val: ArrayLike | None = None,
    y_val: ArrayLike | None = None,
    reporter: TrainReporter | None = None,
    metric_prefix: str = "",
    step_offset: int = 0,
    masks: dict[str, torch.Tensor] | None = None,
    start_epoch: int = 0,
    state: dict[str, Any] | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Train ``model`` in place with minibatch cross-entropy for ``epochs`` epochs in total.

    Epoch ``e`` visits the training set in a permutation drawn from ``seed`` and ``e`` alone, so a run
    resumed from ``state`` (returned by an earlier call, also passed to ``on_epoch_end``) or from
    ``start_epoch`` sees the same batches as an uninterrupted one. ``masks`` maps parameter names to 0/1
    tensors that are multiplied into the parameters before training and after every optimizer step
    (retraining a pruned network keeps its zeros). Metric points ``{metric_prefix}train_loss`` (about
    ten per epoch) and ``{metric_prefix}val_acc`` (each epoch) go to ``reporter`` at global step
    ``step_offset + optimizer steps``; ``reporter.should_stop()`` is polled between batches and raises
    :class:`JobCancelled`. ``on_epoch_end(epoch, result)`` may return ``True`` to stop early; the
    ``result.state`` it sees holds the optimizer's live tensors, so serialise it there and then
    (:func:`checkpoint_bytes`). ``seed`` fixes the batch order; seed the model's initial weights with
    :func:`set_seed` before building it. ``schedule`` is one of :data:`SCHEDULES` (see :func:`make_schedule`;
    the default ``cosine`` anneals per batch).
    """
    started = time.perf_counter()
    model.to(device)
    xs, ys = as_tensor(x_train, device, torch.float32), as_tensor(y_train, device, torch.long)
    if len(xs) != len(ys) or len(xs) == 0:
        raise ValueError(f"x_train has {len(xs)} samples and y_train {len(ys)}; need the same, non-zero")
    opt = make_optimizer(model, optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    steps_per_epoch = math.ceil(len(xs) / batch_size)
    sched = make_schedule(opt, schedule, epochs, steps_per_epoch)
    per_batch = steps_per_update(schedule, steps_per_epoch) == 1
    _restore(opt, sched, state, start_epoch * (steps_per_epoch if per_batch else 1))
    first = int(state["epoch"]) if state else start_epoch
    masked = _bind_masks(model, masks, device)
    _apply_masks(masked)
    loop = _Loop(model, opt, xs, ys, batch_size, masked, reporter, metric_prefix, step_offset)
    loop.batch_schedule = sched if per_batch else None
    result = TrainResult(epochs_done=first, state=_state(opt, sched, first))
    for epoch in range(first, epochs):
        result.train_loss = loop.run_epoch(epoch, seed)
        if not per_batch:
            sched.step()
        result.epochs_done, result.state = epoch + 1, _state(opt, sched, epoch + 1)
        if x_val is not None and y_val is not None and len(y_val) > 0:
            result.val_acc = evaluate(model, x_val, y_val, device=device)
            if reporter is not None:
                reporter.metric(f"{metric_prefix}val_acc", result.val_acc, loop.global_step)
        result.seconds = time.perf_counter() - started
        if on_epoch_end is not None and on_epoch_end(epoch, result) and epoch + 1 < epochs:
            result.stopped = True
            break
    result.seconds = time.perf_counter() - started
    return result


class _Loop:
    """The per-batch work of :func:`train`, kept apart so the hot loop reads top to bottom."""

    def __init__(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        xs: torch.Tensor,
        ys: torch.Tensor,
        batch_size: int,
        masked: list[tuple[torch.Tensor, torch.Tensor]],
        reporter: TrainReporter | None,
        prefix: str,
        step_offset: int,
    ) -> None:
        self.model, self.opt, self.xs, self.ys, self.batch_size = model, opt, xs, ys, batch_size
        self.masked, self.reporter, self.prefix = masked, reporter, prefix
        self.steps_per_epoch = math.ceil(len(xs) / batch_size)
        self.loss_every = max(1, self.steps_per_epoch // LOSS_POINTS_PER_EPOCH)
        self.step_offset = step_offset
        self.global_step = step_offset
        self.next_stop_check = 0.0
        self.batch_schedule: torch.optim.lr_scheduler.LambdaLR | None = None  # stepped after every batch if set

    def run_epoch(self, epoch: int, seed: int) -> float:
        """One pass over the data; returns the mean training loss."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.xs), generator=generator).to(self.xs.device)
        self.model.train()
        # Detached losses wait in a list and are summed once per reported point: per-batch tensor adds
        # (or ``.item()``, a sync on a GPU) would cost a tiny model a noticeable share of its step time.
        losses: list[torch.Tensor] = []
        model, opt, xs, ys, batch, masked, every, sched = (
            self.model,
            self.opt,
            self.xs,
            self.ys,
            self.batch_size,
            self.masked,
            self.loss_every,
            self.batch_schedule,
        )
        for b, start in enumerate(range(0, len(order), batch), start=1):
            self._check_stop()
            idx = order[start : start + batch]
            loss = F.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if masked:
                _apply_masks(masked)
            losses.append(loss.detach())
            if b % every == 0:
                self._report_loss(losses[-every:], self.step_offset + epoch * self.steps_per_epoch + b)
        self.global_step = self.step_offset + (epoch + 1) * self.steps_per_epoch
        return torch.stack(losses).mean().item()

    def _check_stop(self) -> None:
        if self.reporter is None:
            return
        now = time.monotonic()
        if now >= self.next_stop_check:
            self.next_stop_check = now + STOP_CHECK_SECONDS
            if self.reporter.should_stop():
                raise JobCancelled()

    def _report_loss(self, window: list[torch.Tensor], step: int) -> None:
        if self.reporter is not None:
            self.reporter.metric(f"{self.prefix}train_loss", torch.stack(window).mean().item(), step)


def _bind_masks(
    model: nn.Module, masks: dict[str, torch.Tensor] | None, device: str | torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if not masks:
        return []
    params = dict(model.named_parameters())
    unknown = sorted(set(masks) - set(params))
    if unknown:
        raise ValueError(f"masks name parameters the model does not have: {', '.join(unknown)}")
    bound: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name, mask in masks.items():
        if mask.shape != params[name].shape:
            raise ValueError(f"mask {name} has shape {tuple(mask.shape)}, the parameter {tuple(params[name].shape)}")
        bound.append((params[name], mask.to(device=device, dtype=params[name].dtype)))
    return bound


@torch.no_grad()
def _apply_masks(masked: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    if masked:
        # One fused call for all masked tensors instead of a Python loop of ``mul_``.
        torch._foreach_mul_([p for p, _ in masked], [m for _, m in masked])


def _restore(
    opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, state: dict[str, Any] | None, skip: int
) -> None:
    """Load optimizer/scheduler state for a resume, or fast-forward the schedule by ``skip`` scheduler steps (a
    start epoch's worth)."""
    if state:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(dict(state["scheduler"]))  # LambdaLR pops keys from the dict it is given
        return
    with warnings.catch_warnings():
        # Fast-forwarding the schedule before any optimizer step is intended here.
        warnings.filterwarnings("ignore", message="Detected call of", category=UserWarning)
        for _ in range(skip):  # no optimizer state to restore, but the learning rate must match
            sched.step()


def _state(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, epoch: int) -> dict[str, Any]:
    # The optimizer's tensors are live: serialise the state before training goes on (checkpoint_bytes).
    return {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch}


def checkpoint_bytes(model: nn.Module, state: dict[str, Any], extra: dict[str, Any] | None = None) -> bytes:
    """Model weights, training ``state`` and JSON-like ``extra`` as bytes for ``reporter.save_checkpoint``."""
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "state": state, "extra": extra or {}}, buffer)
    return buffer.getvalue()


def restore_checkpoint(data: bytes, model: nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load :func:`checkpoint_bytes` output into ``model``; returns ``(state, extra)``. Weights only."""
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model.load_state_dict(payload["model"])
    return payload["state"], payload["extra"]
