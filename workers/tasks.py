"""Thin tasks: take an id, call a service, log the outcome. No business logic here."""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from celery.exceptions import Reject
from celery.signals import worker_process_init, worker_shutting_down
from django.conf import settings
from django.db import InterfaceError, OperationalError

log = logging.getLogger(__name__)
# Set in a pool process once its worker's shutdown handed a job back: it takes no new job after that.
_stopping = threading.Event()


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

    if _stopping.is_set():
        # This process's worker is shutting down but still consuming: give the message back for another worker
        # (after a pause, so a stopping worker does not spin on it) instead of claiming the job it just released.
        time.sleep(1.0)
        raise Reject("this worker is shutting down", requeue=True)
    outcome = job_execute(job_id=job_id, task_id=self.request.id or "", host=self.request.hostname or "")
    log.info("job %s: %s", job_id, outcome)
    if outcome == "re-queued":  # handed back because this worker is shutting down (release_running_jobs)
        _stopping.set()
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


@worker_process_init.connect
def leave_stopping_to_the_main_process(**kwargs: object) -> None:
    """A pool process ignores SIGTERM: honcho (``make run``), systemd's control-group stop and a terminal's
    Ctrl-C signal the worker's whole process group, which used to kill the process running a job at once, so the
    job sat ``running`` until the reaper noticed and spent one of its attempts. Now only the main process acts on
    the signal (warm shutdown): it hands the running jobs back (below), the job stops at its next check and is
    queued again, and the pool process exits when the main process closes the pool; SIGKILL still ends it."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@worker_shutting_down.connect
def release_running_jobs(sender: str, **kwargs: object) -> None:
    """A graceful stop (deploy, restart) hands this worker's jobs back to the queue within a heartbeat,
    instead of holding the shutdown until they finish; they resume from their checkpoints elsewhere."""
    from automl_site.jobs.services import jobs_release_worker

    released = jobs_release_worker(host=sender)
    if released:
        log.info("shutting down: %d running job(s) handed back to the queue", released)
