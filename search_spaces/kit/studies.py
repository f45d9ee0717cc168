"""Optuna storage for the kinds that keep their study in the service's database."""

from __future__ import annotations

import time
import warnings

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
