"""A CNN trial's synthesis imported beside its io_stream estimate: the archive hls4ml_sweep stores for a Pareto
trial (a real hls4ml io_stream project), synthesised, with one C-synthesis report per dataflow process as
Vivado HLS writes them; the top function's report is the one stored, for that trial."""

from __future__ import annotations

import contextlib
import io
import tarfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from automl_site.jobs.models import FpgaReport, Job, JobStatus, Trial

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vivado"
if not (FIXTURES / "pruned_cnn_csynth.rpt").exists():
    FIXTURES = Path("/work/shared/fixtures/vivado")


def _cnn_project(tmp_path: Path) -> Path:
    pytest.importorskip("hls4ml")
    import hls4ml
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10), nn.Softmax(dim=-1)
    ).eval()
    with contextlib.redirect_stdout(io.StringIO()):
        cfg = hls4ml.utils.config_from_pytorch_model(model, input_shape=(1, 8, 8), granularity="name", backend="Vitis")
        hm = hls4ml.converters.convert_from_pytorch_model(
            model, hls_config=cfg, output_dir=str(tmp_path / "trial_0002"), backend="Vitis", io_type="io_stream"
        )
        hm.write()
    return tmp_path / "trial_0002"


def _synthesised_archive(project: Path) -> bytes:
    """The sweep's archive of ``project`` plus what ``vivado_hls -f build_prj.tcl`` leaves in it: the top
    function's report and one per dataflow process (here copies of the fixture's, renamed)."""
    from search_spaces.hls.results import _archive_project

    archive = project.parent / "hls4ml_project_trial2.tar.gz"
    _archive_project(project, archive)
    report = (FIXTURES / "pruned_cnn_csynth.rpt").read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(archive) as src, tarfile.open(fileobj=buffer, mode="w:gz") as out:
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        syn = f"{project.name}/myproject_prj/solution1/syn/report"
        for name in ("myproject", "conv_2d_cl_array_array_ap_fixed_4u_config2_s", "pooling2d_cl_array_config4_s"):
            data = report if name == "myproject" else report.replace(b"'myproject'", f"'{name}'".encode())
            info = tarfile.TarInfo(f"{syn}/{name}_csynth.rpt")
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_synthesised_cnn_trial_archive_is_stored_beside_its_io_stream_estimate(
    alice_api,  # noqa: ANN001
    alice,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    job = Job.objects.create(owner=alice, kind="hls4ml_sweep", config={}, status=JobStatus.SUCCEEDED)
    trial = Trial.objects.create(job=job, number=2, params={"strategy": "Latency"}, state="complete")
    FpgaReport.objects.create(
        job=job,
        trial=trial,
        source="estimate",
        part="xcu250-figd2104-2L-e",
        clock_period_ns=5.0,
        reuse_factor={"_0": 1, "_4": 1},
        precision={"_0": {"weight": "ap_fixed<16,6>"}},
        strategy="latency",
        io_type="io_stream",
        dsp=6337,
        bram=100,
        latency_cycles=1047,
        latency_ns=5235.0,
        initiation_interval=1028,
        fixed_point_accuracy=0.9,
        float_accuracy=0.91,
    )
    data = _synthesised_archive(_cnn_project(tmp_path))
    r = alice_api.post(
        "/api/v1/fpga-reports/",
        {"job": job.pk, "trial": 2, "file": SimpleUploadedFile("hls4ml_project_trial2.tar.gz", data)},
        format="multipart",
    )
    assert r.status_code == 201, r.content
    [row] = r.json()
    assert row["source"] == "vivado_hls" and row["trial_number"] == 2
    assert (row["dsp"], row["bram"], row["latency_cycles"], row["initiation_interval"]) == (5414, 100.0, 1044, 1028)
    assert row["io_type"] == "io_stream" and row["reuse_factor"] == {"_0": 1, "_4": 1}  # the trial's, copied
    listed = alice_api.get(f"/api/v1/fpga-reports/?job={job.pk}").json()["results"]
    by_source = {x["source"]: x for x in listed if x["trial_number"] == 2}
    assert set(by_source) == {"estimate", "vivado_hls"}  # side by side for the trial
