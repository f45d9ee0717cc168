"""``dgc_train``'s typed config and the rules derived from it (world size, the automatic batch, the built-in
VGG). Imports nothing heavy: the kind module reads it to serve the schema and the budget."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from search_spaces.kit.config import typed_config

WARMUP_SPARSITY = (0.75, 0.9375, 0.984375, 0.996, 0.999)
# The built-in vgg of this kind: the widest stages last, one 3×3 convolution each (see dgc_vgg_arch).
DGC_VGG_WIDTHS = (16, 32, 128, 128)
# The automatic per-worker batch: the largest in this range that gives enough steps (auto_batch_size).
AUTO_BATCH = (2, 32)


@dataclass(frozen=True)
class DgcConfig:
    """A validated ``dgc_train`` config (the schema in :mod:`search_spaces.dgc_train` documents each field).

    ``batch_size`` ``None`` means automatic: :meth:`with_batch_size` fixes it for the training split."""

    model: str = "vgg"
    workers: int = 4
    epochs: int = 20
    batch_size: int | None = None
    min_sends_per_entry: float = 2.0
    lr: float = 0.1
    lr_schedule: str = "cosine"
    lr_warmup_epochs: int = 0
    momentum: float = 0.9
    weight_decay: float = 0.0
    sparsity: float = 0.999
    warmup_epochs: int = 5
    warmup_sparsity: tuple[float, ...] = WARMUP_SPARSITY
    momentum_correction: bool = True
    local_clipping: bool = True
    clip_norm: float = 5.0
    factor_masking: bool = True
    dense_vectors: bool = False
    exact_k: bool = False
    local_weight_decay: bool = False
    value_dtype: str = "fp16"
    run_dense_baseline: bool = True
    run_reference_mode: bool = True
    link_gbps: float = 1.0
    max_train: int | None = None
    rendezvous: dict[str, Any] | None = None
    seed: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DgcConfig:
        return typed_config(cls, config)

    @property
    def world_size(self) -> int:
        """N: this host's workers, or all hosts' together under a multi-host rendezvous."""
        return int(self.rendezvous["world_size"]) if self.rendezvous else self.workers

    @property
    def modes(self) -> list[str]:
        """The runs, in order: DGC, then the dense baseline and the reference-mode run if enabled."""
        return (
            ["dgc"]
            + (["dense"] if self.run_dense_baseline else [])
            + (["reference"] if self.run_reference_mode else [])
        )

    @property
    def batch(self) -> int:
        """The per-worker batch once :meth:`with_batch_size` has fixed it."""
        if self.batch_size is None:
            raise ValueError("the automatic batch size is not resolved yet (with_batch_size)")
        return self.batch_size

    def with_batch_size(self, n_train: int) -> DgcConfig:
        """This config with ``batch_size`` resolved for ``n_train`` training samples (:func:`resolve_batch_size`)."""
        return dataclasses.replace(self, batch_size=resolve_batch_size(self, n_train))


def expected_sends_per_entry(
    n_train: int, world: int, batch_size: int, *, epochs: int, warmup_epochs: int, sparsity: float
) -> float:
    """How often an average gradient entry is sent after the warm-up: (steps after it) × (1 − sparsity).

    A step sends k ≈ (1 − sparsity)·n entries of n, so over S steps the entries are sent S·(1 − sparsity)
    times on average; an entry waits about 1/(1 − sparsity) steps between sends (§3.1: nothing is lost,
    only delayed, and a delay longer than the run is a loss)."""
    steps = math.ceil(max(n_train // max(world, 1), 1) / batch_size)
    return max(epochs - warmup_epochs, 0) * steps * (1.0 - sparsity)


def auto_batch_size(
    n_train: int, world: int, *, epochs: int, warmup_epochs: int, sparsity: float, min_sends: float
) -> int:
    """The largest per-worker batch in 2..32 with which every entry is expected to be sent ``min_sends``
    times after the warm-up (:func:`expected_sends_per_entry`); 2 if none is, 32 if no step follows it."""
    low, high = AUTO_BATCH
    if epochs <= warmup_epochs:
        return high
    for batch in range(high, low - 1, -1):
        sends = expected_sends_per_entry(
            n_train, world, batch, epochs=epochs, warmup_epochs=warmup_epochs, sparsity=sparsity
        )
        if sends >= min_sends:
            return batch
    return low


def resolve_batch_size(config: DgcConfig, n_train: int) -> int:
    """``batch_size`` as configured, or :func:`auto_batch_size` when it is null."""
    if config.batch_size is not None:
        return int(config.batch_size)
    return auto_batch_size(
        n_train,
        config.world_size,
        epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
        sparsity=config.sparsity,
        min_sends=config.min_sends_per_entry,
    )


def dgc_vgg_arch(input_shape: Any, num_classes: int) -> dict[str, Any]:
    """This kind's built-in ``vgg``: the kit's VGG family with stages of 16, 32, 128, 128 channels, one 3×3
    convolution each, keeping as many of the last stages as the input's resolution holds (every
    convolution sees at least 2×2 pixels: four on 28×28, the last three, 32-128-128, on 8×8).

    Why wider than the kit's default (16-32-64): the reference code sends 1-D tensors dense, so the
    ratio is at most 4 / (value bytes × their share of the parameters). The kit's VGG has 0.97% of 1-D
    parameters (154× with fp16 at best); this one has about 0.3%, like the paper's ResNets, so the
    reference way reaches about 320× with fp16 values. Most of the added weights sit where the
    resolution is lowest, so a step costs about twice the kit's VGG's, not the 8× of its parameters."""
    size, stages = min(int(d) for d in list(input_shape)[1:]), 0
    while size >= 2 and stages < len(DGC_VGG_WIDTHS):
        stages, size = stages + 1, size // 2
    return {
        "name": "vgg",
        "input_shape": [int(d) for d in input_shape],
        "num_classes": int(num_classes),
        "widths": list(DGC_VGG_WIDTHS[-max(stages, 1) :]),
        "convs_per_stage": 1,
        "fc": [],
    }
