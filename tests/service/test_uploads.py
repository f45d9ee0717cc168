"""Uploads cannot run code and are checked whole: datasets (.npz / .csv)."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from automl_site.jobs.models import Dataset

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(tmp_path, settings):  # noqa: ANN001, ANN201
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _npz(**arrays) -> bytes:  # noqa: ANN003
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _upload(api, name: str, content: bytes):  # noqa: ANN001, ANN202
    return api.post(
        "/api/v1/datasets/", {"name": "mine", "file": SimpleUploadedFile(name, content)}, format="multipart"
    )


def test_a_good_npz_is_kept_with_its_shape_and_balance(alice_api, media) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    r = _upload(
        alice_api, "jets.npz", _npz(x=rng.normal(size=(60, 16)).astype(np.float32), y=np.repeat(np.arange(3), 20))
    )
    assert r.status_code == 201, r.content
    data = r.json()
    assert data["modality"] == "tabular" and data["input_shape"] == [16] and data["num_classes"] == 3
    assert data["class_counts"] == [20, 20, 20] and len(data["sha256"]) == 64
    stored = Dataset.objects.get(pk=data["id"])
    assert stored.file.path.startswith(str(media)) and stored.size_bytes > 0
    # and a job can use it
    job = alice_api.post("/api/v1/jobs/", {"kind": "mlp_sweep", "dataset": str(data["id"])}, format="json")
    assert job.status_code == 201, job.content


def test_a_good_csv_is_kept(alice_api) -> None:  # noqa: ANN001
    rows = "\n".join(f"{i * 0.1},{i % 7},{i % 2}" for i in range(40))
    r = _upload(alice_api, "t.csv", f"a,b,label\n{rows}\n".encode())
    assert r.status_code == 201, r.content
    assert r.json()["num_classes"] == 2 and r.json()["input_shape"] == [2]


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("evil.npz", _npz(x=np.array([{"a": 1}] * 20, dtype=object), y=np.zeros(20, dtype=int)), "pickle"),
        ("evil.npz", pickle.dumps({"x": 1}), ""),
        ("fake.npz", b"this is not a zip file at all", ""),
        ("labels.npz", _npz(x=np.zeros((20, 4)), y=np.full(20, 0.5)), ""),
        ("short.npz", _npz(x=np.zeros((20, 4)), y=np.zeros(19, dtype=int)), ""),
        ("nan.npz", _npz(x=np.full((20, 4), np.nan), y=np.arange(20) % 2), ""),
        ("one-class.npz", _npz(x=np.zeros((20, 4)), y=np.zeros(20, dtype=int)), ""),
        ("data.exe", b"MZ...", "npz"),
    ],
)
def test_bad_uploads_are_refused_and_nothing_is_written(alice_api, media, name, content, needle) -> None:  # noqa: ANN001
    r = _upload(alice_api, name, content)
    assert r.status_code == 400, r.content
    message = " ".join(r.json()["file"]).lower()
    assert message and needle in message
    assert Dataset.objects.filter(owner__username="alice").count() == 0
    assert not list((media / "datasets").rglob("*")) if (media / "datasets").exists() else True


def test_an_oversized_upload_is_refused(alice_api, settings) -> None:  # noqa: ANN001
    settings.AUTOML = {**settings.AUTOML, "MAX_UPLOAD_BYTES": 1000}
    r = _upload(alice_api, "big.npz", _npz(x=np.zeros((200, 16)), y=np.arange(200) % 2))
    assert r.status_code == 400 and "limit" in " ".join(r.json()["file"])


def test_datasets_list_has_builtins_and_only_own_uploads(alice_api, bob_api) -> None:  # noqa: ANN001
    _upload(alice_api, "a.npz", _npz(x=np.zeros((20, 4)), y=np.arange(20) % 2))
    alice_names = {d["builtin"] or d["name"] for d in alice_api.get("/api/v1/datasets/").json()["results"]}
    bob_names = {d["builtin"] or d["name"] for d in bob_api.get("/api/v1/datasets/").json()["results"]}
    assert {"digits", "wine", "jets_synthetic"} <= bob_names
    assert "mine" in alice_names and "mine" not in bob_names
    mine = next(d for d in alice_api.get("/api/v1/datasets/").json()["results"] if d["name"] == "mine")
    assert bob_api.get(f"/api/v1/datasets/{mine['id']}/").status_code == 404
    r = bob_api.post("/api/v1/jobs/", {"kind": "mlp_sweep", "dataset": str(mine["id"])}, format="json")
    assert r.status_code == 400 and "dataset" in r.json()
