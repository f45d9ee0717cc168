"""DELETE removes a job, dataset or model with everything stored for it; owner only; refused while in use;
checkpoints of finished jobs expire."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from automl_site.jobs import services
from automl_site.jobs.models import (
    Artifact,
    Dataset,
    FpgaReport,
    Job,
    JobCheckpoint,
    JobStatus,
    MetricPoint,
    ModelFile,
    Trial,
)
from tests import hostile

pytestmark = pytest.mark.django_db(transaction=True)  # files go when the delete commits


@pytest.fixture(autouse=True)
def media(tmp_path, settings):  # noqa: ANN001, ANN201
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _job_with_everything(owner, media, status=JobStatus.SUCCEEDED) -> Job:  # noqa: ANN001
    job = Job.objects.create(owner=owner, kind="mlp_sweep", config={}, status=status, finished_at=timezone.now())
    trial = Trial.objects.create(job=job, number=0, params={})
    MetricPoint.objects.create(job=job, step=0, name="loss", value=1.0)
    FpgaReport.objects.create(job=job, trial=trial, part="x", clock_period_ns=5.0)
    JobCheckpoint.objects.create(job=job, state=b"state")
    for kind in ("model", "checkpoint"):
        path = media / f"artifacts/{job.pk}/{kind}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
        Artifact.objects.create(
            job=job, name=f"{kind}.bin", kind=kind, file=str(path.relative_to(media)), size_bytes=10, sha256="0"
        )
    return job


def test_a_job_goes_with_everything_stored_for_it(alice_api, alice, bob_api, media) -> None:  # noqa: ANN001
    job = _job_with_everything(alice, media)
    files = list((media / "artifacts" / str(job.pk)).iterdir())
    assert bob_api.delete(f"/api/v1/jobs/{job.pk}/").status_code == 404
    assert alice_api.delete(f"/api/v1/jobs/{job.pk}/").status_code == 204
    for model in (Job, Trial, MetricPoint, FpgaReport, JobCheckpoint, Artifact):
        assert not model.objects.filter(**({"pk": job.pk} if model is Job else {"job_id": job.pk})).exists()
    assert files and not any(f.exists() for f in files)


def test_a_running_job_is_refused_and_a_queued_one_leaves_the_queue(alice_api, alice, media) -> None:  # noqa: ANN001
    running = _job_with_everything(alice, media, JobStatus.RUNNING)
    r = alice_api.delete(f"/api/v1/jobs/{running.pk}/")
    assert r.status_code == 400 and "running" in r.json()["status"][0]
    assert Job.objects.filter(pk=running.pk).exists() and Artifact.objects.filter(job=running).count() == 2
    queued = alice_api.post("/api/v1/jobs/", {"kind": "mlp_sweep"}, format="json").json()
    assert alice_api.delete(f"/api/v1/jobs/{queued['id']}/").status_code == 204
    assert services.job_claim(job_id=queued["id"], task_id="t", host="h") is None


@pytest.mark.parametrize("child_status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED])
def test_a_parent_is_refused_while_a_child_that_has_yet_to_finish_needs_its_model(
    alice_api,
    alice,
    media,
    child_status,  # noqa: ANN001
) -> None:
    parent = _job_with_everything(alice, media)
    child = Job.objects.create(owner=alice, kind="adc_prune", config={}, status=child_status, parent=parent)
    r = alice_api.delete(f"/api/v1/jobs/{parent.pk}/")
    assert r.status_code == 400 and f"job(s) {child.pk}" in r.json()["non_field_errors"][0], r.content
    assert Artifact.objects.filter(job=parent).count() == 2 and all(
        (media / a.file.name).exists() for a in Artifact.objects.filter(job=parent)
    )
    Job.objects.filter(pk=child.pk).update(status=JobStatus.CANCELLED)  # a finished child keeps its results
    assert alice_api.delete(f"/api/v1/jobs/{parent.pk}/").status_code == 204
    assert Job.objects.get(pk=child.pk).parent_id is None


def _dataset(api) -> dict:  # noqa: ANN001
    r = api.post("/api/v1/datasets/", {"file": SimpleUploadedFile("d.npz", hostile.good_npz())}, format="multipart")
    assert r.status_code == 201, r.content
    return r.json()


def test_a_dataset_is_refused_while_a_queued_job_uses_it_then_goes(alice_api, bob_api, media) -> None:  # noqa: ANN001
    data = _dataset(alice_api)
    path = Dataset.objects.get(pk=data["id"]).file.path
    job = alice_api.post("/api/v1/jobs/", {"kind": "mlp_sweep", "dataset": str(data["id"])}, format="json").json()
    assert bob_api.delete(f"/api/v1/datasets/{data['id']}/").status_code == 404
    r = alice_api.delete(f"/api/v1/datasets/{data['id']}/")
    assert r.status_code == 400 and str(job["id"]) in r.json()["non_field_errors"][0]
    Job.objects.filter(pk=job["id"]).update(status=JobStatus.PAUSED)  # it will run again: still in use
    assert alice_api.delete(f"/api/v1/datasets/{data['id']}/").status_code == 400
    Job.objects.filter(pk=job["id"]).update(status=JobStatus.SUCCEEDED)
    assert alice_api.delete(f"/api/v1/datasets/{data['id']}/").status_code == 204
    assert not Dataset.objects.filter(pk=data["id"]).exists() and Job.objects.get(pk=job["id"]).dataset is None
    from pathlib import Path

    assert not Path(path).exists()
    builtin = Dataset.objects.get(builtin="digits")
    assert alice_api.delete(f"/api/v1/datasets/{builtin.pk}/").status_code == 400


def test_a_model_is_refused_while_a_running_job_takes_it(alice_api, alice, media) -> None:  # noqa: ANN001
    import io

    import torch

    from search_spaces.kit import models

    arch = {"name": "mlp", "input_shape": [1, 8, 8], "num_classes": 10}
    buf = io.BytesIO()
    torch.save({"format": models.FORMAT, "arch": arch, "state_dict": models.build_model(arch).state_dict()}, buf)
    r = alice_api.post("/api/v1/models/", {"file": SimpleUploadedFile("m.pt", buf.getvalue())}, format="multipart")
    assert r.status_code == 201, r.content
    model = ModelFile.objects.get(pk=r.json()["id"])
    job = Job.objects.create(owner=alice, kind="granularity_sweep", config={}, model=model, status=JobStatus.RUNNING)
    assert alice_api.delete(f"/api/v1/models/{model.pk}/").status_code == 400
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
    assert alice_api.delete(f"/api/v1/models/{model.pk}/").status_code == 204
    assert not ModelFile.objects.filter(pk=model.pk).exists()


def test_checkpoints_of_jobs_that_ended_long_ago_expire(alice, media, settings) -> None:  # noqa: ANN001
    settings.AUTOML = {**settings.AUTOML, "CHECKPOINT_RETENTION_SECONDS": 3600}
    old = _job_with_everything(alice, media)
    recent = _job_with_everything(alice, media)
    running = _job_with_everything(alice, media, JobStatus.RUNNING)
    Job.objects.filter(pk__in=[old.pk, running.pk]).update(finished_at=timezone.now() - dt.timedelta(hours=2))
    assert services.checkpoints_expire() == 1
    assert not JobCheckpoint.objects.filter(job=old).exists()
    assert list(Artifact.objects.filter(job=old).values_list("kind", flat=True)) == ["model"]
    assert not (media / f"artifacts/{old.pk}/checkpoint.bin").exists()
    assert (media / f"artifacts/{old.pk}/model.bin").exists()
    for job in (recent, running):
        assert JobCheckpoint.objects.filter(job=job).exists() and Artifact.objects.filter(job=job).count() == 2


def test_delete_is_in_the_schema(alice_api) -> None:  # noqa: ANN001
    paths = alice_api.get("/api/schema/?format=json").json()["paths"]
    for path in ("/api/v1/jobs/{id}/", "/api/v1/datasets/{id}/", "/api/v1/models/{id}/"):
        assert "delete" in paths[path]
