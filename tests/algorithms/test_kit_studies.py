"""The kit's Pareto filter: the same front as the definition, ties kept, fast on 10,000 points."""

from __future__ import annotations

import time

import numpy as np
import pytest

from search_spaces.kit.studies import pareto_mask


def _by_definition(points: np.ndarray, signs: np.ndarray) -> np.ndarray:
    p = points * signs
    return np.array([not any((q >= x).all() and (q > x).any() for q in p) for x in p])


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_front_is_the_definitions(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 6, size=(300, k)).astype(float)  # small integers: many ties and duplicates
    directions = ["maximize", "minimize", "minimize"][:k]
    signs = np.array([1.0, -1.0, -1.0][:k])
    assert (pareto_mask(points, directions) == _by_definition(points, signs)).all()


def test_equal_points_are_both_kept_and_bad_input_is_refused() -> None:
    assert pareto_mask([[1, 1], [1, 1], [0, 0]], ["maximize", "maximize"]).tolist() == [True, True, False]
    assert pareto_mask(np.zeros((0, 2)), ["maximize", "minimize"]).tolist() == []
    with pytest.raises(ValueError, match="directions"):
        pareto_mask([[1, 2]], ["up", "down"])
    with pytest.raises(ValueError, match="n × 3"):
        pareto_mask([[1, 2]], ["maximize"] * 3)


def test_ten_thousand_points_take_milliseconds() -> None:
    points = np.random.default_rng(0).random((10_000, 3))
    started = time.perf_counter()
    mask = pareto_mask(points, ["maximize", "minimize", "minimize"])
    seconds = time.perf_counter() - started
    print(f"\nPareto of 10,000 points (3 objectives, front {mask.sum()}): {seconds * 1000:.1f} ms")
    assert 0 < mask.sum() < 10_000 and seconds < 1.0
