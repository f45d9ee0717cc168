"""Model uploads: a state_dict loaded with weights_only=True into a built-in architecture, never a pickle."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile

from automl_site.jobs.models import ModelFile
from search_spaces.kit.models import build_model

pytestmark = pytest.mark.django_db

MLP = {"name": "mlp", "input_shape": [16], "num_classes": 5}


@pytest.fixture(autouse=True)
def media(tmp_path, settings):  # noqa: ANN001, ANN201
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _bytes(obj) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _upload(api, content: bytes, architecture: dict | None = MLP):  # noqa: ANN001, ANN202
    data = {"name": "tagger", "file": SimpleUploadedFile("m.pt", content)}
    if architecture is not None:
        data["architecture"] = json.dumps(architecture)
    return api.post("/api/v1/models/", data, format="multipart")


def test_a_state_dict_with_its_architecture_is_kept(alice_api, bob_api) -> None:  # noqa: ANN001
    model = build_model(MLP)
    r = _upload(alice_api, _bytes(model.state_dict()))
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["params"] == sum(p.numel() for p in model.parameters()) and body["architecture"]["name"] == "mlp"
    assert bob_api.get(f"/api/v1/models/{body['id']}/").status_code == 404
    assert bob_api.get("/api/v1/models/").json()["count"] == 0


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_without_running_it(alice_api, tmp_path) -> None:  # noqa: ANN001
    marker = tmp_path / "pwned"
    r = _upload(alice_api, pickle.dumps({"w": _RunsCode(marker)}))
    assert r.status_code == 400
    assert not marker.exists(), "the upload executed code"
    assert "pickle" in " ".join(r.json()["file"]).lower() or "tensor" in " ".join(r.json()["file"]).lower()
    assert ModelFile.objects.count() == 0


@pytest.mark.parametrize(
    "content, arch",
    [
        (b"not a torch file", MLP),
        (_bytes({"fc.weight": torch.zeros(3, 3)}), MLP),  # does not fit the architecture
        (_bytes(build_model(MLP).state_dict()), None),  # bare weights without an architecture
        (_bytes(build_model(MLP).state_dict()), {"name": "no_such_net", "input_shape": [16], "num_classes": 5}),
    ],
)
def test_bad_model_files_are_refused_with_a_message(alice_api, media, content, arch) -> None:  # noqa: ANN001
    r = _upload(alice_api, content, arch)
    assert r.status_code == 400, r.content
    assert r.json()["file"][0]
    assert ModelFile.objects.count() == 0
    assert not (media / "models").exists() or not list((media / "models").rglob("*.pt"))
