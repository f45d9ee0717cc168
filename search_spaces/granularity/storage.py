"""Storage of a pruned network in a relative-index sparse format: the "index saving" effect.

Mao et al., "Exploring the Regularity of Sparse Structure in Convolutional Neural Networks"
(arXiv:1705.08922), Section 4: a sparse layer stores its non-zero values plus an index, and with
coarse-grained sparsity *one index entry covers a whole group*, so at the same sparsity a coarse
pattern needs fewer index bits. The format is the relative-index CSR of Deep Compression (Han et al.,
2016, Section 2): each stored entry carries the distance to the previous entry in ``index_bits`` bits;
when a gap does not fit, a padding entry (a stored zero group) is inserted.

Per layer we walk the groups in flattened order (see :mod:`.pruning`: every group is a contiguous run
of the flattened weight). An entry's relative index is the number of pruned groups skipped since the
previous entry (or the layer start), at most ``2**index_bits − 1``. A gap of ``z`` pruned groups costs
``z // 2**index_bits`` padding entries: each padding entry skips ``2**index_bits − 1`` groups and
itself stands on one. Every entry, real or padding, costs ``index_bits + group_size · value_bits``.
Trailing pruned groups cost nothing; row pointers and per-layer headers are not counted.

Layers that are not pruned (the classifier) are stored dense at ``value_bits`` per weight, without an
index. compression ratio = dense bits (weights × ``dense_bits``, 32 for float32) / compressed bits.

NumPy only, so it can be used (and tested) without torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LayerStorage:
    """Bits of one layer's weights, dense and compressed."""

    name: str
    n_weights: int
    group_size: int
    kept_groups: int
    padding_entries: int
    index_bits: int
    value_bits: int
    dense_bits: int
    compressed_bits: int

    @property
    def entries(self) -> int:
        """Stored entries: kept groups plus padding."""
        return self.kept_groups + self.padding_entries


@dataclass(frozen=True)
class StorageReport:
    """Bits of a whole model and its compression ratio."""

    layers: tuple[LayerStorage, ...]

    @property
    def dense_bits(self) -> int:
        return sum(layer.dense_bits for layer in self.layers)

    @property
    def compressed_bits(self) -> int:
        return sum(layer.compressed_bits for layer in self.layers)

    @property
    def compression_ratio(self) -> float:
        """Dense bits / compressed bits."""
        return self.dense_bits / self.compressed_bits if self.compressed_bits else float("inf")

    @property
    def index_entries(self) -> int:
        return sum(layer.entries for layer in self.layers if layer.index_bits)

    @property
    def padding_entries(self) -> int:
        return sum(layer.padding_entries for layer in self.layers)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly totals and the per-layer rows."""
        return {
            "dense_bits": self.dense_bits,
            "compressed_bits": self.compressed_bits,
            "compression_ratio": self.compression_ratio,
            "index_entries": self.index_entries,
            "padding_entries": self.padding_entries,
            "layers": [asdict(layer) for layer in self.layers],
        }


def relative_index_entries(kept: Iterable[bool] | np.ndarray, index_bits: int) -> tuple[int, int]:
    """(kept groups, padding entries) for a sequence of group flags in storage order.

    Relative indexing as in Deep Compression: the gap ``z`` of pruned groups before a kept group must fit
    in ``index_bits`` bits (``z ≤ 2**index_bits − 1``); otherwise ``z // 2**index_bits`` padding zero
    entries are inserted before it.
    """
    if index_bits < 1:
        raise ValueError("index_bits must be at least 1")
    flags = np.asarray(list(kept) if not isinstance(kept, np.ndarray) else kept, dtype=bool).ravel()
    positions = np.flatnonzero(flags)
    if positions.size == 0:
        return 0, 0
    gaps = np.diff(positions, prepend=-1) - 1
    padding = int((gaps // (1 << index_bits)).sum())
    return int(positions.size), padding


def kept_groups(mask: np.ndarray, group_size: int) -> np.ndarray:
    """One flag per group (in flattened order): does the group hold any non-zero mask entry?"""
    flat = np.asarray(mask).reshape(-1)
    if flat.size % group_size:
        raise ValueError(f"a mask of {flat.size} weights does not split into groups of {group_size}")
    return np.asarray(flat.reshape(-1, group_size).any(axis=1))


def sparse_layer_storage(
    name: str,
    mask: np.ndarray,
    group_size: int,
    *,
    value_bits: int = 8,
    index_bits: int = 4,
    dense_value_bits: int = 32,
) -> LayerStorage:
    """Bits of one pruned layer: (kept + padding entries) × (index_bits + group_size·value_bits)."""
    flags = kept_groups(mask, group_size)
    kept, padding = relative_index_entries(flags, index_bits)
    n = int(np.asarray(mask).size)
    bits = (kept + padding) * (index_bits + group_size * value_bits)
    return LayerStorage(name, n, group_size, kept, padding, index_bits, value_bits, n * dense_value_bits, bits)


def dense_layer_storage(name: str, n_weights: int, *, value_bits: int = 8, dense_value_bits: int = 32) -> LayerStorage:
    """Bits of a layer kept dense: every weight at ``value_bits``, no index."""
    return LayerStorage(
        name, n_weights, 1, n_weights, 0, 0, value_bits, n_weights * dense_value_bits, n_weights * value_bits
    )


def model_storage(
    weight_sizes: Mapping[str, int],
    masks: Mapping[str, np.ndarray],
    group_sizes: Mapping[str, int],
    *,
    value_bits: int = 8,
    index_bits: int = 4,
    dense_value_bits: int = 32,
) -> StorageReport:
    """Storage of a model: layers in ``masks`` are sparse, the other counted weights are dense.

    ``weight_sizes`` maps every counted weight (conv and linear) to its number of weights; ``masks`` and
    ``group_sizes`` cover the pruned ones.
    """
    layers = []
    for name, n in weight_sizes.items():
        if name in masks:
            layers.append(
                sparse_layer_storage(
                    name,
                    masks[name],
                    group_sizes[name],
                    value_bits=value_bits,
                    index_bits=index_bits,
                    dense_value_bits=dense_value_bits,
                )
            )
        else:
            layers.append(dense_layer_storage(name, int(n), value_bits=value_bits, dense_value_bits=dense_value_bits))
    return StorageReport(tuple(layers))
