"""The broker's doorbell, rung by task name: the web process sends messages and imports no worker code.

The Celery application is configured from Django's settings (``CELERY_*``); ``workers/celery_app.py`` uses the
same application and registers the tasks on it, so sender and worker cannot disagree on the broker.
"""

from __future__ import annotations

import functools

from celery import Celery

RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}


@functools.cache
def celery_app() -> Celery:
    """The one Celery application (created on first use, after Django's settings are configured)."""
    app = Celery("automl")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    return app


def send(task: str, *args: object, retry: bool = False) -> str:
    """Queue task ``task`` (its registered name) with ``args``; returns the message's task id."""
    options = {"retry": True, "retry_policy": RETRY_POLICY} if retry else {}
    return celery_app().send_task(task, args=list(args), **options).id


def revoke(task_id: str) -> None:
    """Tell the workers to drop a queued message (a duplicate delivery would find nothing to claim anyway)."""
    celery_app().control.revoke(task_id)
