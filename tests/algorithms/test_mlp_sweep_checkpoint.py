"""mlp_sweep's checkpoint (the best trial so far) in the kit's format: exact weights back, the old .npz refused."""

from __future__ import annotations

import io

import numpy as np
import pytest

from search_spaces.kit import checkpoint
from search_spaces.mlp_sweep import _Best


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w1": rng.normal(size=(4, 3)), "b1": rng.normal(size=3), "w2": rng.normal(size=(3, 2)), "b2": np.zeros(2)}


def test_the_best_trial_comes_back_exactly() -> None:
    best = _Best.restore(_Best(5, 0.875, _weights(0)).dump())
    assert (best.number, best.val_acc) == (5, 0.875)
    assert best.weights is not None
    for name, value in _weights(0).items():
        assert best.weights[name].dtype == value.dtype and np.array_equal(best.weights[name], value)
    assert _Best.restore(None).weights is None


def test_a_checkpoint_of_the_old_npz_layout_is_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, number=1, val_acc=0.5, **_weights(1))
    with pytest.raises(checkpoint.CheckpointError, match="not a mlp_sweep/2 checkpoint"):
        _Best.restore(buffer.getvalue())
