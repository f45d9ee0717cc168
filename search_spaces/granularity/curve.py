"""Where a granularity's accuracy-vs-sparsity curve crosses the accuracy threshold, and its ratio there.

Mao et al. (arXiv:1705.08922, Sec. 4 and Fig. 3) compare granularities at equal accuracy: how sparse, and
how compressed, each can get before it loses accuracy. Taking the best of a few sampled trials judged on a
few hundred validation images picks noise, so the default study prunes every granularity on a fixed
sparsity grid with several retraining seeds, and this module reads each seed's curve:

1. the validation accuracies along the grid are made non-increasing in sparsity (isotonic regression,
   scikit-learn's ``IsotonicRegression``: pruning more weights never helps, so a rise is noise, and the
   pooled neighbours average it out);
2. the curve is cut at ``threshold`` (the dense accuracy minus the allowed drop) by linear interpolation
   between the last grid point at or above it and the next one;
3. the compressed size there is interpolated the same way between those two trials' compressed bits
   (storage grows about linearly with the density), and the compression ratio is the dense bits over it.

A curve that never falls below the threshold on the grid is ``above_grid``: its ratio is the last grid
point's, a lower bound. One already below at the grid's lowest sparsity is ``below_grid``: the ratio of
that point is an upper bound. NumPy and scikit-learn only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CurvePoint:
    """One pruned trial: its target sparsity (the grid value), validation accuracy, compressed bits, and the
    sparsity it reached over every counted weight (dense layers included)."""

    target_sparsity: float
    accuracy: float
    compressed_bits: float
    weight_sparsity: float


@dataclass(frozen=True)
class Crossing:
    """The curve at the threshold: the target and the overall weight sparsity there, the compression ratio,
    and ``status`` (``crossed``, ``above_grid`` or ``below_grid``; the last two are bounds)."""

    target_sparsity: float
    weight_sparsity: float
    compression_ratio: float
    status: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def monotone_accuracy(sparsities: Sequence[float], accuracies: Sequence[float]) -> np.ndarray:
    """The accuracies fitted non-increasing in sparsity (least squares, pool-adjacent-violators)."""
    from sklearn.isotonic import IsotonicRegression

    x, y = np.asarray(sparsities, dtype=float), np.asarray(accuracies, dtype=float)
    if len(x) < 2:
        return y.copy()
    return np.asarray(IsotonicRegression(increasing=False).fit_transform(x, y), dtype=float)


def threshold_crossing(points: Sequence[CurvePoint], threshold: float, dense_bits: float) -> Crossing:
    """Where the (monotone) curve through ``points`` meets ``threshold`` (see the module docstring)."""
    if not points:
        raise ValueError("a curve needs at least one point")
    ordered = sorted(points, key=lambda p: p.target_sparsity)
    fitted = monotone_accuracy([p.target_sparsity for p in ordered], [p.accuracy for p in ordered])
    above = np.flatnonzero(fitted >= threshold)
    if above.size == 0:
        first = ordered[0]
        return Crossing(first.target_sparsity, first.weight_sparsity, dense_bits / first.compressed_bits, "below_grid")
    i = int(above.max())  # non-increasing: every point before i is above too
    if i == len(ordered) - 1:
        last = ordered[-1]
        return Crossing(last.target_sparsity, last.weight_sparsity, dense_bits / last.compressed_bits, "above_grid")
    a, b = ordered[i], ordered[i + 1]
    t = float((fitted[i] - threshold) / (fitted[i] - fitted[i + 1]))
    bits = a.compressed_bits + t * (b.compressed_bits - a.compressed_bits)
    return Crossing(
        a.target_sparsity + t * (b.target_sparsity - a.target_sparsity),
        a.weight_sparsity + t * (b.weight_sparsity - a.weight_sparsity),
        dense_bits / bits,
        "crossed",
    )
