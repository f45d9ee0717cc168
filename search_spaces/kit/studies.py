"""Optuna studies of the kinds that keep theirs in the service's database, and the Pareto front of any rows."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import optuna


def rdb_storage(
    url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None, attempts: int = 5
) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at ``url`` (optionally with trial heartbeats). Workers that start together on a
    fresh database may race to create Optuna's tables; the loser retries and finds them."""
    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def pareto_mask(values: npt.ArrayLike, directions: Sequence[str]) -> npt.NDArray[np.bool_]:
    """Which rows of ``values`` (n points × k objectives) no other row dominates, ``directions`` saying
    ``"maximize"`` or ``"minimize"`` per objective. Equal points do not dominate each other: both are kept.

    Vectorised over the remaining points: each front point sweeps away everything it dominates, so the cost is
    about n × (front size) comparisons, milliseconds for 10,000 points where a pure-Python pairwise check took
    seconds. Optuna's ``Study.best_trials`` does the same for a study; this serves rows that are not trials
    (constraints applied, several studies merged) with one rule."""
    points = np.asarray(values, dtype=float)
    if points.ndim != 2 or points.shape[1] != len(directions):
        raise ValueError(f"values must be n × {len(directions)}; got shape {points.shape}")
    signs = np.array([1.0 if d == "maximize" else -1.0 for d in directions if d in ("maximize", "minimize")])
    if len(signs) != len(directions):
        raise ValueError(f"directions must be 'maximize' or 'minimize'; got {list(directions)}")
    points = points * signs  # every objective maximised from here on
    keep = np.arange(len(points))
    i = 0
    while i < len(points):
        # Points the i-th does not dominate: better somewhere, or equal everywhere (itself included).
        survives = np.any(points > points[i], axis=1) | np.all(points == points[i], axis=1)
        keep, points = keep[survives], points[survives]
        i = int(np.count_nonzero(survives[:i])) + 1
    mask = np.zeros(len(np.asarray(values)), dtype=bool)
    mask[keep] = True
    return mask
