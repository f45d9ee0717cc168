"""What the parent hands the DGC workers and what it hears back: the training spec, the runs to do, an
epoch's report, and the :class:`Listener` the job kind implements (see :mod:`.distributed` for the launcher,
:mod:`.worker` for the training loop in each worker process)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from search_spaces.dgc.compressor import DGCSettings

MODES = ("dgc", "dense", "reference")


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
