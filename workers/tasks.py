"""Thin tasks: take an id, call a service, log the outcome. No business logic here."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_shutting_down
from django.conf import settings
from django.db import InterfaceError, OperationalError

log = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name="workers.tasks.run_job",
    acks_late=True,  # the message goes back to the queue if the worker dies before finishing
    reject_on_worker_lost=True,
    ignore_result=True,
    time_limit=settings.AUTOML["TIME_LIMIT_SECONDS"],
    soft_time_limit=max(settings.AUTOML["TIME_LIMIT_SECONDS"] - 60, 1),
    # Only the database being briefly away is worth a retry; an algorithm's failure is the job's.
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=5,
    retry_backoff=True,
)
def run_job(self, job_id: int) -> str:  # noqa: ANN001 - Celery's bound task
    """Run one job. A duplicate delivery is harmless: only the task that claims the job runs it."""
    from workers.runner import job_execute

    outcome = job_execute(job_id=job_id, task_id=self.request.id or "", host=self.request.hostname or "")
    log.info("job %s: %s", job_id, outcome)
    return outcome


@shared_task(
    bind=True,
    name="workers.tasks.run_job_helper",
    acks_late=False,
    ignore_result=True,
    time_limit=settings.AUTOML["TIME_LIMIT_SECONDS"],
)
def run_job_helper(self, job_id: int, index: int) -> str:  # noqa: ANN001 - Celery's bound task
    """Help a running job (best effort: a lost helper only means less parallelism)."""
    from workers.runner import job_help

    outcome = job_help(job_id=job_id, index=index)
    log.info("job %s helper %s: %s", job_id, index, outcome)
    return outcome


@shared_task(name="workers.tasks.ping", ignore_result=False, acks_late=False)
def ping() -> float:
    """A no-op that answers with the worker's clock: a liveness probe and the dispatch benchmark's baseline."""
    import time

    return time.time()


@worker_shutting_down.connect
def release_running_jobs(sender: str, **kwargs: object) -> None:
    """A graceful stop (deploy, restart) hands this worker's jobs back to the queue within a heartbeat,
    instead of holding the shutdown until they finish; they resume from their checkpoints elsewhere."""
    from automl_site.jobs.services import jobs_release_worker

    released = jobs_release_worker(host=sender)
    if released:
        log.info("shutting down: %d running job(s) handed back to the queue", released)
