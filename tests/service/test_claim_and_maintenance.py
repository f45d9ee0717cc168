"""The atomic claim, the reaper and the reconciler, against the real database."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from automl_site.jobs import services
from automl_site.jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(alice):  # noqa: ANN001, ANN201
    return services.job_submit(owner=alice, kind="mlp_sweep", config={"trials": 3})


def test_a_redelivered_task_cannot_claim_a_job_twice(job) -> None:  # noqa: ANN001
    assert services.job_claim(job_id=job.pk, task_id="t1", host="a") == 1
    assert services.job_claim(job_id=job.pk, task_id="t1", host="b") is None
    job.refresh_from_db()
    assert job.status == "running" and job.worker_host == "a" and job.attempts == 1


def test_an_orphaned_job_is_requeued_then_failed_after_max_attempts(job, settings) -> None:  # noqa: ANN001
    settings.AUTOML = {**settings.AUTOML, "MAX_ATTEMPTS": 2}
    long_ago = timezone.now() - dt.timedelta(hours=1)
    for attempt in (1, 2):
        assert services.job_claim(job_id=job.pk, task_id=f"t{attempt}", host="h") == attempt
        Job.objects.filter(pk=job.pk).update(heartbeat_at=long_ago)  # the worker died
        outcome = services.jobs_reap()
        job.refresh_from_db()
        if attempt == 1:
            assert outcome["requeued"] == 1 and job.status == "queued"
    assert outcome["failed"] == 1 and job.status == "failed" and "lost 2 times" in job.error


def test_a_fresh_heartbeat_is_left_alone(job) -> None:  # noqa: ANN001
    services.job_claim(job_id=job.pk, task_id="t", host="h")
    assert services.jobs_reap() == {"cancelled": 0, "paused": 0, "failed": 0, "requeued": 0}


def test_cancel_of_an_orphaned_job_finishes_it(job) -> None:  # noqa: ANN001
    services.job_claim(job_id=job.pk, task_id="t", host="h")
    services.job_cancel(job=job)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - dt.timedelta(hours=1))
    assert services.jobs_reap()["cancelled"] == 1
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_queued_jobs_with_an_old_message_are_reenqueued(job) -> None:  # noqa: ANN001
    assert services.jobs_reenqueue_lost() == 0
    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - dt.timedelta(hours=1))
    assert services.jobs_reenqueue_lost() == 1
    job.refresh_from_db()
    assert timezone.now() - job.enqueued_at < dt.timedelta(minutes=1)
