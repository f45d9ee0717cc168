"""Users are isolated: another user's job, its trials, files and reports answer 404."""

from __future__ import annotations

import pytest

from automl_site.jobs.models import Artifact, FpgaReport, Job, Trial
from automl_site.jobs.services import job_submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices_job(alice, tmp_path, settings):  # noqa: ANN001, ANN201
    settings.MEDIA_ROOT = tmp_path
    job = job_submit(owner=alice, kind="mlp_sweep", config={"trials": 3})
    Trial.objects.create(job=job, number=0, params={"hidden": 8}, values=[0.5])
    (tmp_path / "a.txt").write_text("secret")
    Artifact.objects.create(job=job, name="a.txt", kind="data", file="a.txt", size_bytes=6, sha256="x")
    FpgaReport.objects.create(job=job, part="xcu250", clock_period_ns=5.0, dsp=3)
    return job


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/v1/jobs/{id}/"),
        ("get", "/api/v1/jobs/{id}/trials/"),
        ("get", "/api/v1/jobs/{id}/metrics/"),
        ("get", "/api/v1/jobs/{id}/artifacts/"),
        ("post", "/api/v1/jobs/{id}/cancel/"),
        ("post", "/api/v1/jobs/{id}/rerun/"),
        ("get", "/api/v1/artifacts/{artifact}/"),
        ("get", "/api/v1/artifacts/{artifact}/download/"),
        ("get", "/api/v1/fpga-reports/{report}/"),
    ],
)
def test_another_users_objects_answer_404(bob_api, alices_job, method, path) -> None:  # noqa: ANN001
    url = path.format(id=alices_job.pk, artifact=alices_job.artifacts.get().pk, report=alices_job.fpga_reports.get().pk)
    r = getattr(bob_api, method)(url)
    assert r.status_code == 404, (url, r.status_code)
    assert Job.objects.count() == 1 and Job.objects.get().status == "queued"


def test_lists_show_only_own_objects(alice_api, bob_api, alices_job) -> None:  # noqa: ANN001
    assert bob_api.get("/api/v1/jobs/").json()["count"] == 0
    assert alice_api.get("/api/v1/jobs/").json()["count"] == 1
    assert bob_api.get(f"/api/v1/fpga-reports/?job={alices_job.pk}").json()["count"] == 0
    assert alice_api.get(f"/api/v1/fpga-reports/?job={alices_job.pk}").json()["count"] == 1


def test_owner_downloads_the_artifact(alice_api, alices_job) -> None:  # noqa: ANN001
    artifact = alices_job.artifacts.get()
    r = alice_api.get(f"/api/v1/artifacts/{artifact.pk}/download/")
    assert r.status_code == 200 and b"".join(r.streaming_content) == b"secret"


def test_a_parent_job_of_another_user_is_refused(bob_api, alices_job) -> None:  # noqa: ANN001
    r = bob_api.post("/api/v1/jobs/", {"kind": "mlp_sweep", "parent": alices_job.pk}, format="json")
    assert r.status_code == 400 and "parent" in r.json()


def test_plots_are_shown_inline_only_sandboxed_and_other_files_always_download(
    alice_api,
    alices_job,  # noqa: ANN001
    tmp_path,
) -> None:
    (tmp_path / "tree.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    plot = Artifact.objects.create(
        job=alices_job, name="tree.svg", kind="plot", file="tree.svg", size_bytes=42, sha256="y"
    )
    r = alice_api.get(f"/api/v1/artifacts/{plot.pk}/download/?inline=1")
    assert r.status_code == 200 and r["Content-Type"] == "image/svg+xml"
    assert "attachment" not in r.get("Content-Disposition", "")
    assert r["Content-Security-Policy"] == "sandbox allow-scripts" and r["X-Content-Type-Options"] == "nosniff"
    assert "attachment" in alice_api.get(f"/api/v1/artifacts/{plot.pk}/download/")["Content-Disposition"]
    data = alices_job.artifacts.get(name="a.txt")
    r = alice_api.get(f"/api/v1/artifacts/{data.pk}/download/?inline=1")
    assert "attachment" in r["Content-Disposition"] and "Content-Security-Policy" not in r
