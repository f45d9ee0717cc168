"""The granularity sweep's typed config (:class:`SweepConfig`), read from a validated ``granularity_sweep`` config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from search_spaces.kit.config import typed_config
from search_spaces.kit.pruning import GRANULARITIES


@dataclass(frozen=True)
class SweepConfig:
    """The sweep's knobs; :meth:`from_config` reads a validated ``granularity_sweep`` config.

    ``value_bits = 8`` is Deep Compression's width for quantised conv weights, the format Mao et al. count
    storage in; ``index_bits = 4`` is a short relative index (the paper's exact widths were not at hand
    when this was written: both are config knobs). ``dense_bits = 32`` is float32.

    With ``sampler = "grid"`` the study is the grid granularities × ``sparsity_grid`` × norms × ``seeds``
    (``n_trials`` and the sparsity range are not used) and every trial retrains ``retrain_epochs`` per
    prune step; the samplers draw ``retrain_epochs`` from 1 to it.
    """

    granularities: tuple[str, ...] = GRANULARITIES
    sparsity_min: float = 0.5
    sparsity_max: float = 0.95
    norms: tuple[str, ...] = ("l1",)
    n_trials: int = 400
    sparsity_grid: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
    seeds: int = 3
    dense_first_conv: bool = True
    val_fraction: float = 0.3
    retrain_epochs: int = 6
    prune_steps: int = 3
    pretrain_epochs: int = 30
    lr: float = 0.01
    pretrain_lr: float = 0.05
    batch_size: int = 64
    value_bits: int = 8
    index_bits: int = 4
    dense_bits: int = 32
    vector_size: int = 4
    accuracy_threshold: float = 0.005
    mode: str = "multi"
    target_compression: float = 8.0
    sampler: str = "grid"
    parallel_trials: int = 1
    seed: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SweepConfig:
        return typed_config(cls, config)

    @property
    def grid(self) -> bool:
        return self.sampler == "grid"

    @property
    def trial_count(self) -> int:
        """Trials in the whole study: the grid's size, or ``n_trials``."""
        if self.grid:
            return len(self.granularities) * len(self.sparsity_grid) * len(self.norms) * self.seeds
        return self.n_trials

    def grid_space(self) -> dict[str, list[Any]]:
        """The ``GridSampler`` search space (every combination is one trial)."""
        return {
            "granularity": list(self.granularities),
            "sparsity": [float(x) for x in self.sparsity_grid],
            "norm": list(self.norms),
            "retrain_seed": list(range(self.seeds)),
        }
