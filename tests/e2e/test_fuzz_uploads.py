"""Uploads are refused whole: the multipart endpoints (datasets, models, synthesis reports) fuzzed over real HTTP
with generated bodies and with the hostile files of issue 17's attack run. Every answer is below 500, every
refusal says why, and a refused upload leaves no row and no file behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import hostile
from tests.stack import ApiClient, Stack

pytestmark = pytest.mark.e2e

UPLOADER = ("uploader", "uploader-pass-1")
ENDPOINTS = ("/api/v1/datasets/", "/api/v1/models/", "/api/v1/fpga-reports/")
REPORT = (Path(__file__).resolve().parent.parent / "fixtures" / "vivado" / "pruned_cnn_csynth.rpt").read_bytes()
DEEP = '{"a": ' * 5000 + "1" + "}" * 5000


@pytest.fixture(scope="module")
def uploader(pg_stack: Stack) -> ApiClient:
    pg_stack.create_user(*UPLOADER)
    return ApiClient(pg_stack.base_url, *UPLOADER)


@pytest.fixture(scope="module")
def job_id(uploader: ApiClient) -> int:
    """A job of the uploader's to attach reports to (cancelled at once: only its id is needed)."""
    job = uploader.submit("mlp_sweep", {"trials": 3, "epochs": 1})
    uploader.post(f"/api/v1/jobs/{job['id']}/cancel/")
    return job["id"]


def _stored(stack: Stack, client: ApiClient) -> tuple[int, int, int, int]:
    lists = [client.get(f"{path}?page_size=1").json()["count"] for path in ENDPOINTS]
    # Files uploads keep (datasets/, models/): a job of another test still finishing on the shared stack may add
    # its artifacts meanwhile, and those are not what this test watches.
    media = stack.var_dir / "media"
    files = sum(1 for folder in ("datasets", "models") for p in (media / folder).rglob("*") if p.is_file())
    return (*lists, files)  # type: ignore[return-value]


HOSTILE = {
    "zeros.npz": hostile.zero_bomb_npz(),
    "huge-header.npz": hostile.huge_header_npz(),
    "bad-crc.npz": hostile.bad_crc_zip(),
    "false-size.npz": hostile.false_size_zip(),
    "bad-deflate.npz": hostile.corrupt_deflate_zip(),
    "wide.csv": ("0," * 10**6 + "1\n").encode() * 12,
    "pickle.npz": hostile.zip_of({"x.npy": hostile.npy_header((10, 2), "|O"), "y.npy": b""}),
    "not-a-zip.npz": b"PK\x03\x04" + b"\x00" * 100,
    "weights.pt": hostile.state_dict_bytes(),
    "report.zip": hostile.corrupt_deflate_zip(hostile.zip_of({"a_csynth.rpt": REPORT * 3}), "a_csynth.rpt"),
    "inf_csynth.rpt": REPORT.replace(
        b"|Total                |      100|   5414|", b"|Total                |      100|    inf|"
    ),
    "big_csynth.rpt": REPORT.replace(b"|     1044|     1044|", b"|     1e30|     1e30|"),
    "nul_csynth.rpt": REPORT.replace(b"'myproject'", b"'my\x00project'", 1),
    ("n" * 300) + ".npz": b"not an npz",
}
ARCHITECTURES = [
    json.dumps({"name": "mlp", "input_shape": [16000], "hidden": [16000], "num_classes": 2}),
    json.dumps({"name": "mlp", "input_shape": [100000], "hidden": [100000], "num_classes": 2}),
    DEEP,
    '{"name": "mlp", "input_shape": [4], "num_classes": 2, "x": "\\ud800"}',
    "[1, 2",
]


def _cases(endpoint: str, job_id: int) -> list[tuple[str, bytes, dict[str, str]]]:
    if endpoint.endswith("datasets/"):
        return [(name, content, {}) for name, content in HOSTILE.items() if not name.endswith(("rpt", ".zip"))]
    if endpoint.endswith("models/"):
        weights = HOSTILE["weights.pt"]
        return [("w.pt", weights, {"architecture": a}) for a in ARCHITECTURES] + [
            (name, content, {}) for name, content in HOSTILE.items() if name.endswith((".npz", ".pt"))
        ][:6]
    reports = [(n, c, {}) for n, c in HOSTILE.items() if n.endswith(("rpt", ".zip"))]
    return [(n, c, {"job": str(job_id)}) for n, c, _ in reports + [("bad-crc.zip", HOSTILE["bad-crc.npz"], {})]]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_hostile_files_are_refused_whole(pg_stack: Stack, uploader: ApiClient, job_id: int, endpoint: str) -> None:
    before = _stored(pg_stack, uploader)
    for name, content, data in _cases(endpoint, job_id):
        r = uploader.post(endpoint, files={"file": (name, content)}, data=data)
        assert 400 <= r.status_code < 500, (endpoint, name[:40], data.keys(), r.status_code, r.text[:300])
        assert r.json(), (endpoint, name)
    assert _stored(pg_stack, uploader) == before, "a refused upload left a row or a file behind"


@given(
    endpoint=st.sampled_from(ENDPOINTS),
    name=st.text(max_size=300),
    content=st.binary(max_size=2000) | st.sampled_from(sorted(HOSTILE.values(), key=len)[:6]),
    extra=st.dictionaries(st.sampled_from(["name", "architecture", "job", "trial"]), st.text(max_size=50)),
)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_multipart_bodies_get_no_server_error(
    pg_stack: Stack, uploader: ApiClient, endpoint: str, name: str, content: bytes, extra: dict[str, str]
) -> None:
    r = uploader.post(endpoint, files={"file": (name or "f", content)}, data=extra)
    assert r.status_code < 500, (endpoint, name, extra, r.status_code, r.text[:300])
