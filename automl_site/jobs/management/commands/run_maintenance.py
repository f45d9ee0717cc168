"""The maintenance loop: reap jobs whose worker died, re-enqueue jobs the broker lost, and delete the
checkpoints of jobs that ended longer ago than AUTOML_CHECKPOINT_RETENTION_SECONDS.

It runs in its own process (one per deployment is enough; more are harmless, every change is a
conditional UPDATE) rather than as a periodic Celery task, because it must work exactly when the
workers are dead or busy.
"""

from __future__ import annotations

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from automl_site.jobs.services import checkpoints_expire, jobs_reap, jobs_reenqueue_lost

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Reap orphaned jobs and re-enqueue lost ones, every AUTOML_MAINTENANCE_SECONDS."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--once", action="store_true", help="run one round and exit")

    def handle(self, *args, once: bool = False, **options) -> None:  # noqa: ANN002, ANN003
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        interval = settings.AUTOML["MAINTENANCE_SECONDS"]
        while True:
            try:
                outcome = jobs_reap()
                outcome["reenqueued"] = jobs_reenqueue_lost()
                outcome["checkpoints_expired"] = checkpoints_expire()
                if any(outcome.values()):
                    log.info("maintenance: %s", outcome)
            except Exception:  # keep the loop alive through a database or broker outage
                log.exception("maintenance round failed")
                close_old_connections()
            if once or stop.wait(interval):
                return
