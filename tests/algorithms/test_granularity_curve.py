"""Reading a granularity's accuracy-vs-sparsity curve at the accuracy threshold (no torch): the monotone fit,
the interpolated crossing and compression ratio, and the bounds when the grid does not bracket the threshold."""

from __future__ import annotations

import pytest

from search_spaces.granularity.curve import CurvePoint, monotone_accuracy, threshold_crossing

DENSE_BITS = 1000.0


def _points(accuracies: list[float], sparsities: tuple[float, ...] = (0.5, 0.7, 0.9)) -> list[CurvePoint]:
    # Compressed bits fall linearly with the density; the overall sparsity trails the target a little.
    return [CurvePoint(s, a, DENSE_BITS * (1 - s) / 2, s - 0.02) for s, a in zip(sparsities, accuracies, strict=True)]


def test_the_crossing_is_interpolated_between_the_grid_points_around_it() -> None:
    crossing = threshold_crossing(_points([0.98, 0.97, 0.93]), threshold=0.96, dense_bits=DENSE_BITS)
    assert crossing.status == "crossed"
    assert crossing.target_sparsity == pytest.approx(0.7 + 0.2 * 0.25)  # a quarter of the way from 0.97 to 0.93
    assert crossing.weight_sparsity == pytest.approx(0.75 - 0.02)
    bits = DENSE_BITS * (1 - 0.75) / 2
    assert crossing.compression_ratio == pytest.approx(DENSE_BITS / bits)


def test_a_rise_with_sparsity_is_noise_and_is_pooled() -> None:
    """0.95 then 0.97: pruning more did not help; both points become their mean, 0.96."""
    fitted = monotone_accuracy([0.5, 0.7, 0.9], [0.95, 0.97, 0.90])
    assert list(fitted) == pytest.approx([0.96, 0.96, 0.90])
    crossing = threshold_crossing(_points([0.95, 0.97, 0.90]), threshold=0.955, dense_bits=DENSE_BITS)
    assert crossing.status == "crossed" and 0.7 < crossing.target_sparsity < 0.9


def test_a_curve_the_grid_does_not_bracket_is_a_bound() -> None:
    above = threshold_crossing(_points([0.99, 0.99, 0.98]), threshold=0.97, dense_bits=DENSE_BITS)
    assert above.status == "above_grid" and above.target_sparsity == 0.9  # a lower bound on the ratio
    below = threshold_crossing(_points([0.90, 0.85, 0.80]), threshold=0.97, dense_bits=DENSE_BITS)
    assert below.status == "below_grid" and below.target_sparsity == 0.5  # an upper bound
    single = threshold_crossing(_points([0.99], (0.8,)), threshold=0.97, dense_bits=DENSE_BITS)
    assert single.status == "above_grid"
    with pytest.raises(ValueError):
        threshold_crossing([], threshold=0.9, dense_bits=DENSE_BITS)


def test_points_may_come_in_any_order() -> None:
    points = _points([0.98, 0.97, 0.93])
    assert threshold_crossing(points[::-1], 0.96, DENSE_BITS) == threshold_crossing(points, 0.96, DENSE_BITS)
