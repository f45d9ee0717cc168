"""The ORM-backed Reporter: how a running algorithm's trials, curves and files reach the database.

It implements :class:`search_spaces.base.Reporter`. Writes are batched and throttled so a training
loop that reports every step costs a few queries a second, not one per call.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from django.db import IntegrityError, close_old_connections, connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from automl_site.jobs.files import store_file_atomically
from automl_site.jobs.models import Artifact, FpgaReport, Job, JobCheckpoint, JobStatus, MetricPoint, Trial
from search_spaces.base import TRIAL_STATES, TrialRecord, json_safe

log = logging.getLogger(__name__)

FINISHED_TRIAL_STATES = ("complete", "pruned", "failed")
_METRIC_FLUSH_SECONDS = 1.0
_METRIC_FLUSH_COUNT = 500
_PROGRESS_SECONDS = 0.5


def _stamp(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, tz=dt.UTC)


def _upsert(model: type[models.Model], key: dict[str, Any], values: dict[str, Any]) -> None:
    """Update the row ``key`` names, or create it: one statement for an update, two for a new row.

    ``update_or_create`` takes six round trips (a transaction, a locking read, a savepoint); a run writes its
    trials and checkpoints often enough for that to be most of its queries. Rows are keyed by a unique
    constraint, so a concurrent create (a helper run) loses with an IntegrityError and updates instead."""
    if model.objects.filter(**key).update(**values):
        return
    try:
        # A savepoint only inside a caller's transaction (an IntegrityError there would spoil it).
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            model.objects.create(**key, **values)
    except IntegrityError:
        model.objects.filter(**key).update(**values)


class Heartbeat(threading.Thread):
    """Keeps the job's heartbeat fresh and notices a cancel, pause or re-queue request, or a lost claim.

    The claim is fenced by ``attempt``: if the reaper gave the job to another worker, our updates
    match no row and the running algorithm is told to stop.
    """

    def __init__(self, job_id: int, attempt: int, interval: float, *, write: bool = True) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id = job_id
        self.attempt = attempt
        self.interval = interval
        # A helper run only watches: the job's liveness is its own process's heartbeat.
        self.write = write
        self.stop_requested = threading.Event()
        self.lost = threading.Event()
        self._done = threading.Event()

    def beat(self) -> None:
        mine = Job.objects.filter(id=self.job_id, status=JobStatus.RUNNING, attempts=self.attempt)
        alive = mine.update(heartbeat_at=timezone.now()) if self.write else mine.exists()
        if not alive:
            self.lost.set()
            self.stop_requested.set()
        elif Job.objects.filter(
            Q(cancel_requested=True) | Q(requeue_requested=True) | Q(pause_requested=True), id=self.job_id
        ).exists():
            self.stop_requested.set()

    def run(self) -> None:
        try:
            while not self._done.wait(self.interval):
                try:
                    self.beat()
                except Exception:  # a database hiccup must not kill the heartbeat
                    log.exception("heartbeat of job %s failed", self.job_id)
                    close_old_connections()
        finally:
            connection.close()

    def finish(self) -> None:
        self._done.set()
        self.join(timeout=self.interval + 5)


class DbReporter:
    """Reporter for one claimed run (``attempt``) of one job."""

    def __init__(self, job: Job, attempt: int, heartbeat: Heartbeat, workdir: Path) -> None:
        self.job_id = job.pk
        self.attempt = attempt
        self.heartbeat = heartbeat
        self.workdir = workdir
        self._points: list[MetricPoint] = []
        self._last_flush = time.monotonic()
        self._last_progress = 0.0
        self._lock = threading.Lock()

    # --- progress and curves ------------------------------------------------------------------
    def progress(self, fraction: float, message: str = "") -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress < _PROGRESS_SECONDS:
            return
        self._last_progress = now
        self._mine().update(progress=fraction, progress_message=message[:200])
        self.flush()

    def metric(self, name: str, value: float, step: int, trial: int | None = None) -> None:
        value = float(value)
        if not math.isfinite(value):
            return
        with self._lock:
            self._points.append(
                MetricPoint(job_id=self.job_id, trial_number=trial, step=int(step), name=name[:100], value=value)
            )
            due = (
                len(self._points) >= _METRIC_FLUSH_COUNT or time.monotonic() - self._last_flush >= _METRIC_FLUSH_SECONDS
            )
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            points, self._points = self._points, []
            self._last_flush = time.monotonic()
        if points:
            MetricPoint.objects.bulk_create(points)

    # --- trials, files, reports ---------------------------------------------------------------
    def trial(
        self,
        number: int,
        *,
        params: dict[str, Any],
        state: str = "complete",
        values: list[float] | None = None,
        metrics: dict[str, Any] | None = None,
        started: float | None = None,
        finished: float | None = None,
    ) -> None:
        if state not in TRIAL_STATES:
            raise ValueError(f"unknown trial state {state!r}")
        duration = (finished - started) if (started is not None and finished is not None) else None
        _upsert(
            Trial,
            {"job_id": self.job_id, "number": number},
            {
                "params": json_safe(params),
                "state": state,
                "values": json_safe(values),
                "metrics": json_safe(metrics or {}),
                "started_at": _stamp(started),
                "finished_at": _stamp(finished),
                "duration_seconds": duration,
                "attempt": self.attempt,
            },
        )
        if state != "running":  # a finished trial's curves are stored with it; a started one has none yet
            self.flush()

    def artifact(self, name: str, path: Path, kind: str) -> None:
        relative, size, digest = store_file_atomically(Path(path), f"artifacts/job_{self.job_id}/{name}")
        _upsert(
            Artifact,
            {"job_id": self.job_id, "name": name},
            {"kind": kind, "file": relative, "size_bytes": size, "sha256": digest},
        )

    def fpga_report(self, trial: int | None, fields: dict[str, Any]) -> None:
        trial_row = Trial.objects.filter(job_id=self.job_id, number=trial).first() if trial is not None else None
        FpgaReport.objects.create(job_id=self.job_id, trial=trial_row, **json_safe(fields))

    # --- control and resume -------------------------------------------------------------------
    def should_stop(self) -> bool:
        return self.heartbeat.stop_requested.is_set()

    def save_checkpoint(self, state: bytes) -> None:
        _upsert(JobCheckpoint, {"job_id": self.job_id}, {"state": bytes(state)})

    def load_checkpoint(self) -> bytes | None:
        row = JobCheckpoint.objects.filter(job_id=self.job_id).first()
        return bytes(row.state) if row else None

    def completed_trials(self) -> list[TrialRecord]:
        rows = Trial.objects.filter(job_id=self.job_id, state__in=FINISHED_TRIAL_STATES).order_by("number")
        return [TrialRecord(t.number, t.params, t.values, t.metrics, t.state) for t in rows]

    def _mine(self):  # noqa: ANN202 - a QuerySet of this run's own job row
        return Job.objects.filter(id=self.job_id, status=JobStatus.RUNNING, attempts=self.attempt)

    def cleanup(self) -> None:
        self.flush()
        shutil.rmtree(self.workdir, ignore_errors=True)


class HelperReporter(DbReporter):
    """Reporter of a helper run: trials and curves go to the job; the progress bar, the checkpoint and
    the files belong to the job's own process, which this one only reads."""

    def progress(self, fraction: float, message: str = "") -> None:
        self.flush()

    def save_checkpoint(self, state: bytes) -> None:
        pass

    def artifact(self, name: str, path: Path, kind: str) -> None:
        pass
