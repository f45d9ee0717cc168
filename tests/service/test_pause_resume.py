"""Pause and resume: a paused job holds no worker and no place in the active-job limit, keeps its trials and
checkpoint, is left alone by the reaper and the reconciler, and goes back to the queue on resume."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from automl_site.jobs import services
from automl_site.jobs.models import Job, JobCheckpoint, JobStatus, Trial
from workers.reporting import Heartbeat

pytestmark = pytest.mark.django_db

LONG_AGO = dt.timedelta(hours=1)


@pytest.fixture
def job(alice):  # noqa: ANN001, ANN201
    return services.job_submit(owner=alice, kind="mlp_sweep", config={"trials": 3})


def _run_until_paused(job: Job) -> int:
    """Claim ``job``, pause it, and stop the run the way the worker does once its heartbeat notices."""
    attempt = services.job_claim(job_id=job.pk, task_id="t", host="h")
    assert attempt is not None
    services.job_pause(job=job)
    heartbeat = Heartbeat(job.pk, attempt, 0.1)
    heartbeat.beat()
    assert heartbeat.stop_requested.is_set() and not heartbeat.lost.is_set()
    assert services.job_stopped(job_id=job.pk, attempt=attempt) == "paused"
    return attempt


def test_a_queued_job_is_paused_at_once_and_cannot_be_claimed(job) -> None:  # noqa: ANN001
    paused = services.job_pause(job=job)
    assert paused.status == JobStatus.PAUSED and paused.finished_at is None
    assert services.job_claim(job_id=job.pk, task_id="t", host="h") is None
    assert services.job_pause(job=job).status == JobStatus.PAUSED  # pausing twice changes nothing


def test_a_running_job_is_asked_and_pauses_at_its_next_heartbeat(job) -> None:  # noqa: ANN001
    attempt = services.job_claim(job_id=job.pk, task_id="t", host="h")
    asked = services.job_pause(job=job)
    assert asked.status == JobStatus.RUNNING and asked.pause_requested  # its worker has not let go yet
    Trial.objects.create(job=job, number=0, params={}, values=[0.5], attempt=attempt)
    JobCheckpoint.objects.create(job=job, state=b"state after trial 0")
    heartbeat = Heartbeat(job.pk, attempt, 0.1)
    heartbeat.beat()
    assert heartbeat.stop_requested.is_set()
    assert services.job_stopped(job_id=job.pk, attempt=attempt) == "paused"
    job.refresh_from_db()
    assert job.status == JobStatus.PAUSED and not job.pause_requested and job.stopped_runs == 1
    # What a resumed run starts from is kept.
    assert Trial.objects.filter(job=job).count() == 1
    assert bytes(JobCheckpoint.objects.get(job=job).state) == b"state after trial 0"


def test_resume_queues_it_again_and_the_next_run_is_a_new_attempt(job, django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    first = _run_until_paused(job)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_resume(job=job).status == JobStatus.QUEUED
    job.refresh_from_db()
    assert job.enqueued_at is not None  # the doorbell rang once the resume was committed
    assert services.job_claim(job_id=job.pk, task_id="t2", host="h") == first + 1


def test_a_paused_job_does_not_count_against_the_active_job_limit(alice, job, settings) -> None:  # noqa: ANN001
    settings.AUTOML = {**settings.AUTOML, "MAX_ACTIVE_JOBS_PER_USER": 1}
    with pytest.raises(services.ServiceError):
        services.job_submit(owner=alice, kind="mlp_sweep", config={"trials": 3})
    services.job_pause(job=job)
    other = services.job_submit(owner=alice, kind="mlp_sweep", config={"trials": 3})
    # ... and a resume past the limit is refused like a submit, leaving the job paused.
    with pytest.raises(services.ServiceError, match="the limit is 1"):
        services.job_resume(job=job)
    job.refresh_from_db()
    assert job.status == JobStatus.PAUSED
    services.job_cancel(job=other)
    assert services.job_resume(job=job).status == JobStatus.QUEUED


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_finished_job_cannot_be_paused_or_resumed(job, status) -> None:  # noqa: ANN001
    Job.objects.filter(pk=job.pk).update(status=status, finished_at=timezone.now())
    with pytest.raises(services.ServiceError, match=f"is {status}; only queued or running jobs can be paused"):
        services.job_pause(job=job)
    with pytest.raises(services.ServiceError, match="only paused jobs can be resumed"):
        services.job_resume(job=job)


def test_a_job_being_cancelled_cannot_be_paused_and_a_pausing_one_not_yet_resumed(job) -> None:  # noqa: ANN001
    services.job_claim(job_id=job.pk, task_id="t", host="h")
    services.job_pause(job=job)
    with pytest.raises(services.ServiceError, match="still pending"):
        services.job_resume(job=job)
    services.job_cancel(job=job)
    with pytest.raises(services.ServiceError, match="being cancelled"):
        services.job_pause(job=job)


def test_cancel_wins_over_a_pending_pause(job) -> None:  # noqa: ANN001
    attempt = services.job_claim(job_id=job.pk, task_id="t", host="h")
    services.job_pause(job=job)
    services.job_cancel(job=job)
    assert services.job_stopped(job_id=job.pk, attempt=attempt) == "cancelled"


def test_a_paused_job_can_be_cancelled(job) -> None:  # noqa: ANN001
    _run_until_paused(job)
    assert services.job_cancel(job=job).status == JobStatus.CANCELLED


def test_the_reaper_and_the_reconciler_leave_paused_jobs_alone(job) -> None:  # noqa: ANN001
    _run_until_paused(job)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - LONG_AGO, enqueued_at=timezone.now() - LONG_AGO)
    assert services.jobs_reap() == {"cancelled": 0, "paused": 0, "failed": 0, "requeued": 0}
    assert services.jobs_reenqueue_lost() == 0
    job.refresh_from_db()
    assert job.status == JobStatus.PAUSED


def test_a_job_whose_worker_died_while_pausing_is_paused_by_the_reaper(job) -> None:  # noqa: ANN001
    services.job_claim(job_id=job.pk, task_id="t", host="h")
    services.job_pause(job=job)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - LONG_AGO)
    assert services.job_claim(job_id=job.pk, task_id="t2", host="h2") is None  # a redelivery must not run it
    assert services.jobs_reap()["paused"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.PAUSED


def test_runs_ended_by_a_pause_are_not_counted_as_lost_workers(job, settings) -> None:  # noqa: ANN001
    settings.AUTOML = {**settings.AUTOML, "MAX_ATTEMPTS": 2}
    for _ in range(2):
        _run_until_paused(job)
        services.job_resume(job=job)
    attempt = services.job_claim(job_id=job.pk, task_id="t", host="h")
    assert attempt == 3
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - LONG_AGO)  # this run's worker died
    assert services.jobs_reap()["requeued"] == 1  # the first lost run, not the third


def test_pause_and_resume_over_the_api(alice_api, bob_api, job) -> None:  # noqa: ANN001
    assert bob_api.post(f"/api/v1/jobs/{job.pk}/pause/").status_code == 404  # not bob's
    r = alice_api.post(f"/api/v1/jobs/{job.pk}/pause/")
    assert r.status_code == 200 and r.json()["status"] == "paused", r.content
    assert alice_api.get("/api/v1/jobs/?status=paused").json()["count"] == 1
    assert bob_api.post(f"/api/v1/jobs/{job.pk}/resume/").status_code == 404
    r = alice_api.post(f"/api/v1/jobs/{job.pk}/resume/")
    assert r.status_code == 200 and r.json()["status"] == "queued" and r.json()["pause_requested"] is False
    r = alice_api.post(f"/api/v1/jobs/{job.pk}/resume/")
    assert r.status_code == 400 and r.json() == {"status": [f"job {job.pk} is queued; only paused jobs can be resumed"]}


def test_pause_of_a_finished_job_is_a_400_with_the_reason(alice_api, job) -> None:  # noqa: ANN001
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    r = alice_api.post(f"/api/v1/jobs/{job.pk}/pause/")
    assert r.status_code == 400
    assert r.json() == {"status": [f"job {job.pk} is succeeded; only queued or running jobs can be paused"]}


def test_admin_pause_and_resume_actions(staff, job) -> None:  # noqa: ANN001
    browser = Client()
    browser.force_login(staff)
    browser.post("/admin/jobs/job/", {"action": "pause_jobs", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.status == JobStatus.PAUSED
    assert "paused" in browser.get("/admin/jobs/job/?status__exact=paused").content.decode()
    browser.post("/admin/jobs/job/", {"action": "resume_jobs", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
