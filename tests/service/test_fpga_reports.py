"""Importing a real synthesis report beside a trial's estimate, through the API."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from automl_site.jobs.models import FpgaReport, Job, JobStatus, Trial

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vivado"


@pytest.fixture
def sweep_job(alice) -> Job:  # noqa: ANN001
    job = Job.objects.create(owner=alice, kind="hls4ml_sweep", config={}, status=JobStatus.SUCCEEDED)
    trial = Trial.objects.create(job=job, number=3, params={"strategy": "Latency"}, state="complete")
    FpgaReport.objects.create(
        job=job,
        trial=trial,
        source="estimate",
        part="xcu250-figd2104-2L-e",
        clock_period_ns=5.0,
        reuse_factor={"fc1": 4},
        precision={"fc1": {"weight": "ap_fixed<16,6>"}},
        strategy="latency",
        io_type="io_parallel",
        dsp=5000,
        lut=200000,
        ff=50000,
        bram=90,
        latency_cycles=900,
        latency_ns=4500.0,
        initiation_interval=4,
        utilisation={"dsp": 40.7},
        fixed_point_accuracy=0.75,
        float_accuracy=0.76,
    )
    return job


def _post(api, job: int, trial: int | None, name: str, data: bytes):  # noqa: ANN001, ANN202
    body = {"job": job, "file": SimpleUploadedFile(name, data)}
    if trial is not None:
        body["trial"] = trial
    return api.post("/api/v1/fpga-reports/", body, format="multipart")


def test_a_csynth_report_is_stored_beside_the_estimate(alice_api, bob_api, sweep_job: Job) -> None:  # noqa: ANN001
    r = _post(alice_api, sweep_job.pk, 3, "myproject_csynth.rpt", (FIXTURES / "pruned_cnn_csynth.rpt").read_bytes())
    assert r.status_code == 201, r.content
    [row] = r.json()
    assert row["source"] == "vivado_hls" and row["trial_number"] == 3
    assert (row["dsp"], row["lut"], row["ff"], row["bram"]) == (5414, 245466, 52549, 100.0)
    assert (row["latency_cycles"], row["latency_ns"], row["initiation_interval"]) == (1044, 5220.0, 1028)
    assert row["reuse_factor"] == {"fc1": 4} and row["fixed_point_accuracy"] == 0.75  # copied from the estimate
    listed = alice_api.get(f"/api/v1/fpga-reports/?job={sweep_job.pk}").json()
    assert sorted(x["source"] for x in listed["results"]) == ["estimate", "vivado_hls"]
    assert bob_api.get(f"/api/v1/fpga-reports/{row['id']}/").status_code == 404


def test_an_archive_gives_one_report_per_tool(alice_api, sweep_job: Job) -> None:  # noqa: ANN001
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("prj/project.tcl", 'set project_name "myproject"\n')
        z.writestr(
            "prj/myproject_prj/solution1/syn/report/myproject_csynth.rpt",
            (FIXTURES / "quantized_pruned_cnn_csynth.rpt").read_bytes(),
        )
        z.writestr("prj/vivado_synth.rpt", (FIXTURES / "quantized_pruned_cnn_vivado_synth.rpt").read_bytes())
    r = _post(alice_api, sweep_job.pk, 3, "reports.zip", buffer.getvalue())
    assert r.status_code == 201, r.content
    by_source = {x["source"]: x for x in r.json()}
    assert by_source["vivado_hls"]["dsp"] == 340 and by_source["vivado_synth"]["dsp"] == 353
    assert by_source["vivado_synth"]["bram"] == 68.0


@pytest.mark.parametrize(
    ("name", "data", "field", "message"),
    [
        ("evil.zip", None, "file", "outside the archive"),
        ("myproject_csynth.rpt", b"\x89PNG\r\n\x1a\n", "file", "expected a"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_stored(
    alice_api,
    sweep_job: Job,
    name: str,
    data: bytes | None,  # noqa: ANN001
    field: str,
    message: str,
) -> None:
    if data is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("../../myproject_csynth.rpt", (FIXTURES / "pruned_cnn_csynth.rpt").read_bytes())
        data = buffer.getvalue()
    r = _post(alice_api, sweep_job.pk, 3, name, data)
    assert r.status_code == 400 and message in " ".join(r.json()[field])
    assert FpgaReport.objects.filter(job=sweep_job).count() == 1


def test_oversize_upload_is_refused(alice_api, sweep_job: Job, settings) -> None:  # noqa: ANN001
    settings.AUTOML = {**settings.AUTOML, "MAX_UPLOAD_BYTES": 1000}
    r = _post(alice_api, sweep_job.pk, 3, "myproject_csynth.rpt", (FIXTURES / "pruned_cnn_csynth.rpt").read_bytes())
    assert r.status_code == 400 and "limit" in r.json()["file"][0]


def test_another_users_job_or_a_missing_trial_is_refused(bob_api, alice_api, sweep_job: Job) -> None:  # noqa: ANN001
    report = (FIXTURES / "pruned_cnn_csynth.rpt").read_bytes()
    r = _post(bob_api, sweep_job.pk, 3, "myproject_csynth.rpt", report)
    assert r.status_code == 400 and "job" in r.json()
    r = _post(alice_api, sweep_job.pk, 99, "myproject_csynth.rpt", report)
    assert r.status_code == 400 and "trial" in r.json()
    assert FpgaReport.objects.filter(job=sweep_job).count() == 1
