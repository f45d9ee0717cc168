"""Issue 17's attack run, input by input: each hostile request gets a 4xx with a message, costs the web
process no more than 100 MB at its peak, and leaves no row behind."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from automl_site.jobs.models import Dataset, FpgaReport, Job, JobStatus, ModelFile, Trial
from tests import hostile

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vivado"
PEAK_GROWTH_KIB = 100 * 1024


@pytest.fixture(autouse=True)
def media(tmp_path, settings):  # noqa: ANN001, ANN201
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def _torch_loaded() -> None:
    """The web process imports torch at its first model upload; that import is not the attack's cost."""
    from search_spaces.kit import models, sizing  # noqa: F401


def _rows() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Dataset, ModelFile, Job, FpgaReport))


@pytest.fixture
def no_new_rows() -> Iterator[None]:
    before = _rows()
    yield
    assert _rows() == before, "a refused request left rows behind"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field))


@contextmanager
def peak_growth() -> Iterator[list[int]]:
    """The process's peak RSS growth over the block, in KiB (filled in on exit). On Linux the high-water mark
    is reset first (``/proc/self/clear_refs``), so a higher peak of an earlier test cannot hide this one;
    elsewhere ``ru_maxrss`` (a lifetime peak: a lower bound). The test client runs in this process, so the
    figure is the request's cost to the web side plus the client's encoding of it: an upper bound."""
    out: list[int] = []
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before, peak = _status_kib("VmRSS:"), lambda: _status_kib("VmHWM:")
    except OSError:
        before, peak = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        )
    t0 = time.monotonic()
    yield out
    out.append(peak() - before)
    print(f"peak growth {out[0] / 1024:.1f} MB in {time.monotonic() - t0:.2f} s")  # the figure a note quotes (-s)


# --- memory bombs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch, needle",
    [
        ({"name": "mlp", "input_shape": [16000], "hidden": [16000], "num_classes": 2}, "parameters"),
        ({"name": "mlp", "input_shape": [100000], "hidden": [100000], "num_classes": 2}, "parameters"),
        ({"name": "vgg", "input_shape": [3, 4096, 4096], "widths": [64], "num_classes": 2}, "activations"),
        (
            {"name": "resnet", "input_shape": [1, 8, 8], "widths": [8], "blocks_per_stage": 100_000, "num_classes": 2},
            "layers",
        ),
    ],
)
def test_a_model_architecture_is_sized_before_it_is_built(alice_api, no_new_rows, arch, needle) -> None:  # noqa: ANN001
    with peak_growth() as growth:
        r = alice_api.post(
            "/api/v1/models/",
            {"file": SimpleUploadedFile("w.pt", hostile.state_dict_bytes()), "architecture": json.dumps(arch)},
            format="multipart",
        )
    assert r.status_code == 400 and needle in r.json()["file"][0], r.content
    assert growth[0] < PEAK_GROWTH_KIB, f"{growth[0] / 1024:.1f} MB"


def test_a_small_npz_of_300_mb_of_zeros_is_refused_from_its_header(alice_api, no_new_rows) -> None:  # noqa: ANN001
    bomb = hostile.zero_bomb_npz()
    assert len(bomb) < 400_000
    with peak_growth() as growth:
        r = alice_api.post("/api/v1/datasets/", {"file": SimpleUploadedFile("z.npz", bomb)}, format="multipart")
    assert r.status_code == 400 and "declares shape" in r.json()["file"][0], r.content
    assert growth[0] < PEAK_GROWTH_KIB, f"{growth[0] / 1024:.1f} MB"


# --- malformed input: 4xx, never 500 ----------------------------------------------------------------------


def _deep(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    "body",
    [
        '{"kind": "mlp_sweep", "dataset": "\\u00b2"}',
        '{"kind": "mlp_sweep", "dataset": "99999999999999999999999"}',
        '{"kind": "mlp_sweep", "config": {"\\ud800": 1}}',
        '{"kind": "mlp_sweep", "config": {"trials": "\\udfff"}}',
        '{"kind": "mlp_sweep", "config": {"x": "a\\u0000b"}}',
        '{"kind": "mlp_sweep", "config": ' + _deep(5000) + "}",
        '{"kind": "mlp_sweep", "config": ' + _deep(100_000) + "}",
        '{"kind": "mlp_sweep", "config": ' + _deep(900) + "}",
        '{"kind": "mlp_sweep", "config": {"trials": 1e400}}',
    ],
)
def test_a_malformed_submit_is_a_400(alice_api, no_new_rows, body: str) -> None:  # noqa: ANN001
    r = alice_api.post("/api/v1/jobs/", body, content_type="application/json")
    assert r.status_code == 400, r.content
    assert r.json()


def test_an_architecture_nested_deep_is_a_400(alice_api, no_new_rows) -> None:  # noqa: ANN001
    for arch in (_deep(5000), '{"name": "mlp", "input_shape": [16], "num_classes": 2, "x": "\\ud800"}'):
        r = alice_api.post(
            "/api/v1/models/",
            {"file": SimpleUploadedFile("w.pt", hostile.state_dict_bytes()), "architecture": arch},
            format="multipart",
        )
        assert r.status_code == 400, r.content


@pytest.mark.parametrize(
    "name, content",
    [
        ("crc.npz", hostile.bad_crc_zip()),
        ("size.npz", hostile.false_size_zip()),
        ("deflate.npz", hostile.corrupt_deflate_zip()),
        ("huge.npz", hostile.huge_header_npz()),
        ("wide.csv", ("0," * 10**6 + "1\n").encode() * 12),
    ],
)
def test_a_broken_or_oversized_dataset_is_a_400(alice_api, no_new_rows, name: str, content: bytes) -> None:  # noqa: ANN001
    with peak_growth() as growth:
        r = alice_api.post("/api/v1/datasets/", {"file": SimpleUploadedFile(name, content)}, format="multipart")
    assert r.status_code == 400 and r.json()["file"], r.content
    # The wide CSV is 24 MB on the wire: most of its ~55 MB is the request's own copies (it split its first row
    # into a million strings, ~100 MB, before the prefix-only header check).
    assert growth[0] < PEAK_GROWTH_KIB, f"{growth[0] / 1024:.1f} MB"


def test_a_file_name_longer_than_a_name_is_cut(alice_api) -> None:  # noqa: ANN001
    r = alice_api.post(
        "/api/v1/datasets/", {"file": SimpleUploadedFile("d" * 250 + ".npz", hostile.good_npz())}, format="multipart"
    )
    assert r.status_code == 201, r.content
    assert r.json()["name"] == "d" * 200
    r = alice_api.post(
        "/api/v1/models/", {"file": SimpleUploadedFile("m" * 250 + ".pt", _mlp_weights())}, format="multipart"
    )
    assert r.status_code == 201, r.content
    assert len(r.json()["name"]) == 200


def _mlp_weights() -> bytes:
    import io

    import torch

    from search_spaces.kit import models

    arch = {"name": "mlp", "input_shape": [4], "hidden": [3], "num_classes": 2}
    buf = io.BytesIO()
    torch.save({"format": models.FORMAT, "arch": arch, "state_dict": models.build_model(arch).state_dict()}, buf)
    return buf.getvalue()


# --- FPGA reports -----------------------------------------------------------------------------------------


@pytest.fixture
def sweep_job(alice) -> Job:  # noqa: ANN001
    job = Job.objects.create(owner=alice, kind="hls4ml_sweep", config={}, status=JobStatus.SUCCEEDED)
    Trial.objects.create(job=job, number=0, params={}, state="complete")
    return job


REPORT = (FIXTURES / "pruned_cnn_csynth.rpt").read_text()
TOTAL = "|Total                |      100|   5414|    52549|   245466|     0|"
LATENCY = "|     1044|     1044| 5.220 us | 5.220 us |  1028|  1028| dataflow |"


@pytest.mark.parametrize(
    "old, new",
    [
        (TOTAL, TOTAL.replace("   5414", "    inf")),
        (TOTAL, TOTAL.replace("   5414", "    nan")),
        (TOTAL, TOTAL.replace("   5414", "   1e12")),
        (LATENCY, LATENCY.replace("     1044|     1044", "      abc|      abc")),
        (LATENCY, LATENCY.replace("     1044|     1044", "     1e30|     1e30")),
        ("xcu250-figd2104-2L-e", "x" * 80),
        ("HLS Report for 'myproject'", "HLS Report for 'my\x00project'"),
    ],
)
def test_a_synthesis_report_with_numbers_no_tool_writes_is_refused(alice_api, sweep_job, old: str, new: str) -> None:  # noqa: ANN001
    assert old in REPORT
    r = alice_api.post(
        "/api/v1/fpga-reports/",
        {
            "job": sweep_job.pk,
            "trial": 0,
            "file": SimpleUploadedFile("a_csynth.rpt", REPORT.replace(old, new).encode()),
        },
        format="multipart",
    )
    if "abc" in new:  # not a number: read as "no latency given", the rest of the report is kept
        assert r.status_code == 201, r.content
        assert r.json()[0]["latency_cycles"] is None
    else:
        assert r.status_code == 400 and r.json()["file"], r.content
    assert FpgaReport.objects.filter(job=sweep_job).count() == (r.status_code == 201)


@pytest.mark.parametrize(
    "make", [hostile.bad_crc_zip, hostile.false_size_zip, hostile.corrupt_deflate_zip], ids=["crc", "size", "deflate"]
)
def test_a_broken_report_archive_is_a_400(alice_api, sweep_job, make) -> None:  # noqa: ANN001
    good = hostile.zip_of({"prj/a_csynth.rpt": REPORT.encode() * 3})
    r = alice_api.post(
        "/api/v1/fpga-reports/",
        {"job": sweep_job.pk, "file": SimpleUploadedFile("r.zip", make(good, "prj/a_csynth.rpt"))},
        format="multipart",
    )
    if make is hostile.false_size_zip:  # the lie is harmless here: the member is read to its real end
        assert r.status_code in (201, 400), r.content
        return
    assert r.status_code == 400 and r.json()["file"], r.content
    assert not FpgaReport.objects.filter(job=sweep_job).exists()


# --- the budget counts the dataset's real size --------------------------------------------------------------


def test_the_budget_of_a_job_on_an_upload_follows_its_size(alice_api, alice) -> None:  # noqa: ANN001
    """A 12-row dataset of 65,536 features and an mlp_sweep of 1,024-unit layers is not budgeted as digits."""
    from automl_site.jobs import services
    from search_spaces import registry
    from search_spaces.base import DataShape

    wide = Dataset.objects.create(
        owner=alice, name="wide", modality="tabular", input_shape=[65_536], num_classes=2, num_samples=12
    )
    config = {"trials": 4, "epochs": 10, "hidden_min": 1024, "hidden_max": 1024}
    assert alice_api.post("/api/v1/jobs/", {"kind": "mlp_sweep", "config": config}, format="json").status_code == 201
    r = alice_api.post("/api/v1/jobs/", {"kind": "mlp_sweep", "config": config, "dataset": str(wide.pk)}, format="json")
    assert r.status_code == 400 and "budget" in r.json()["config"][0], r.content
    for name, kind in registry.KINDS.items():  # every kind: a bigger dataset never costs less
        defaults = {**kind.validate({}), **({"max_train": None} if "max_train" in kind.defaults() else {})}
        small = kind.budget(defaults, DataShape.builtin(kind.default_dataset))
        shape = DataShape.builtin(kind.default_dataset)
        big = DataShape(shape.modality, shape.input_shape, shape.num_classes, (shape.num_samples or 1) * 20)
        assert kind.budget(defaults, big) > small, name
        assert services._data_shape(Dataset.objects.get(builtin=kind.default_dataset)).num_samples
