"""The training kit's reference architectures, model files and FLOP counting."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from search_spaces.kit import counting
from search_spaces.kit.datasets import BUILTIN
from search_spaces.kit.models import (
    ARCHITECTURES,
    ModelError,
    build_model,
    complete_arch,
    default_arch,
    load_model,
    save_model,
)

IMAGE_SHAPES = [[1, 8, 8], [1, 28, 28], [3, 32, 32]]


def _arch(name: str, shape: list[int], num_classes: int = 10, **extra: object) -> dict[str, object]:
    return {"name": name, "input_shape": shape, "num_classes": num_classes, **extra}


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_family_builds_runs_and_backpropagates(name: str, shape: list[int]) -> None:
    torch.manual_seed(0)
    model = build_model(_arch(name, shape, num_classes=7))
    out = model(torch.rand(4, *shape))
    assert out.shape == (4, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mlp_default_is_the_hls4ml_jet_tagger() -> None:
    model = build_model(default_arch("mlp", BUILTIN["jets_synthetic"]))
    linears = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears == [(16, 64), (64, 32), (32, 32), (32, 5)]
    assert sum(p.numel() for p in model.parameters()) == 16 * 64 + 64 + 64 * 32 + 32 + 32 * 32 + 32 + 32 * 5 + 5
    assert any(isinstance(m, nn.ReLU) for m in model.modules())


def test_vgg_widths_and_mobilenet_width_multiplier_are_honoured() -> None:
    vgg = build_model(_arch("vgg", [1, 28, 28], widths=[8, 12], convs_per_stage=2, fc=[20]))
    convs = [m.out_channels for m in vgg.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [8, 8, 12, 12]
    assert [m.out_features for m in vgg.modules() if isinstance(m, nn.Linear)] == [20, 10]
    half = build_model(_arch("mobilenet", [1, 28, 28], width_mult=0.5))
    depthwise = [m for m in half.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert [m.in_channels for m in depthwise] == [8, 16, 32]
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_named_modules_meet_conv_and_linear_layers_in_forward_order(name: str) -> None:
    """Pruning code walks ``named_modules()``; it must see the layers in the order they compute."""
    model = build_model(_arch(name, [3, 16, 16], blocks_per_stage=2) if name == "resnet" else _arch(name, [3, 16, 16]))
    declared = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    executed: list[str] = []
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.register_forward_hook(lambda *_, n=n: executed.append(n))
    model(torch.rand(2, 3, 16, 16))
    assert executed == declared and len(declared) >= 3


def test_default_arch_is_complete_and_json_serialisable() -> None:
    arch = default_arch("vgg", BUILTIN["digits"])
    assert arch == {
        "name": "vgg",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "widths": [16, 32, 64],
        "convs_per_stage": 1,
        "fc": [],
    }
    assert json.loads(json.dumps(arch)) == arch
    assert complete_arch(arch) == arch


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        (_arch("transformer", [1, 8, 8]), "unknown architecture"),
        (_arch("vgg", [1, 8, 8], widht=[4]), "no parameter widht"),
        (_arch("vgg", [16]), "image input"),
        (_arch("vgg", [1, 8, 8], widths=[]), "widths"),
        (_arch("vgg", [1, 8, 8], widths=[4, "8"]), "widths"),
        (_arch("mlp", [16], num_classes=1), "num_classes"),
        (_arch("mlp", [16], hidden=[0]), "hidden"),
        (_arch("mlp", [16], batchnorm="yes"), "batchnorm"),
        (_arch("mobilenet", [1, 8, 8], strides=[1, 2]), "stride"),
        (_arch("mobilenet", [1, 8, 8], width_mult=0), "width_mult"),
        ({"input_shape": [16], "num_classes": 3}, "unknown architecture"),
        ({"name": "mlp", "num_classes": 3}, "input_shape"),
    ],
)
def test_bad_architectures_get_clear_errors(arch: dict[str, object], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        build_model(arch)


# --- files --------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    arch = default_arch("resnet", BUILTIN["digits"])
    model = build_model(arch)
    model(torch.rand(8, 1, 8, 8))  # move BatchNorm running statistics away from their defaults
    model.eval()
    path = tmp_path / "model.pt"
    save_model(model, arch, path)
    loaded, loaded_arch = load_model(path)
    x = torch.rand(5, 1, 8, 8)
    assert loaded_arch == arch and not loaded.training
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_bare_state_dict_needs_an_architecture(tmp_path: Path) -> None:
    arch = _arch("mlp", [16], num_classes=5)
    model = build_model(arch)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelError, match="architecture"):
        load_model(path)
    loaded, full = load_model(path, architecture=arch)
    assert full["hidden"] == [64, 32, 32]
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(build_model(_arch("mlp", [16], num_classes=5)).state_dict(), path)
    with pytest.raises(ModelError, match="do not fit"):
        load_model(path, architecture=_arch("mlp", [16], num_classes=5, hidden=[10]))


class _Boom:
    """Unpickling this runs ``touch <marker>``: what a malicious model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickles_are_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    boom = _Boom(marker)
    files = {
        "torch_zip.pt": lambda p: torch.save(boom, p),
        "nested.pt": lambda p: torch.save({"arch": _arch("mlp", [16]), "state_dict": {"w": boom}}, p),
        "legacy.pt": lambda p: torch.save(boom, p, _use_new_zipfile_serialization=False),
        "plain.pkl": lambda p: p.write_bytes(pickle.dumps(boom)),
    }
    for name, write in files.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(ModelError, match="arbitrary pickle"):
            load_model(path, architecture=_arch("mlp", [16]))
    assert not marker.exists()
    # Control: the same object really would have run when unpickled without the guard.
    pickle.loads(pickle.dumps(boom))
    assert marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"PK\x03\x04" + bytes(50)])
def test_corrupt_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ModelError):
        load_model(path)


def test_non_tensor_payloads_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ModelError, match="state_dict"):
        load_model(path, architecture=_arch("mlp", [16]))


# --- counting -----------------------------------------------------------------------------------------


def test_count_matches_hand_computed_conv_and_linear() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    )
    conv_macs = 8 * 8 * 4 * (1 * 3 * 3)  # output positions × output channels × kernel volume
    linear_macs = 256 * 10
    params = (4 * 9 + 4) + (4 + 4) + (256 * 10 + 10)
    assert counting.count(model, (1, 8, 8)) == {
        "params": params,
        "macs": conv_macs + linear_macs,
        "flops": 2 * (conv_macs + linear_macs),
    }


def test_count_depthwise_and_strided_convolutions() -> None:
    depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
    assert counting.count(depthwise, (4, 6, 6))["macs"] == 6 * 6 * 4 * 9
    strided = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)
    assert counting.count(strided, (2, 8, 8))["macs"] == 4 * 4 * 3 * 2 * 9


def test_count_of_the_jet_tagger_and_model_state_untouched() -> None:
    model = build_model(default_arch("mlp", BUILTIN["jets_synthetic"]))
    assert counting.count(model, (16,))["macs"] == 16 * 64 + 64 * 32 + 32 * 32 + 32 * 5
    cnn = build_model(default_arch("vgg", BUILTIN["digits"]))
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    cnn.train()
    counting.count(cnn, (1, 8, 8))
    assert cnn.training
    for key, value in cnn.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
