"""The hls4ml sweep's typed config (:class:`Settings`, read from a validated ``hls4ml_sweep`` config) and the two
errors it raises: :class:`SweepError` fails the job, :class:`TrialFailed` fails one trial."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from search_spaces.hls.parts import Part, get_part
from search_spaces.kit.config import typed_config


class SweepError(ValueError):
    """An input this sweep cannot work with (not an MLP, too wide for the part table …)."""


@dataclass(frozen=True)
class Settings:
    n_trials: int
    reuse_factors: tuple[int, ...]
    strategies: tuple[str, ...]
    precision_mode: str
    total_bits: tuple[int, ...]
    integer_bits: tuple[int, ...]
    input_precision: str
    pruning_sparsities: tuple[float, ...]
    prune_epochs: int
    part: Part
    clock_period_ns: float
    io_type: str
    cost: str
    hidden: tuple[int, ...]
    epochs: int
    lr: float
    batch_size: int
    max_train: int | None
    seed: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Settings:
        """The validated config, typed; the search grids sorted and deduplicated, the part looked up."""
        grids = ("reuse_factors", "total_bits", "integer_bits", "pruning_sparsities")
        return typed_config(
            cls, config, part=get_part(config["part"]), **{key: tuple(sorted(set(config[key]))) for key in grids}
        )


class TrialFailed(Exception):
    """A configuration hls4ml cannot build or that overflows: a failed trial with its message."""
