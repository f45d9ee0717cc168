"""hls4ml_sweep on a convolutional input model: the kit's VGG converted in io_stream with hls4ml's PyTorch
frontend, emulated bit-accurately, read back and estimated; kit CNNs it cannot convert refused at submit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from search_spaces.base import DataShape, JobInputs, MemoryReporter
from search_spaces.hls.convert import to_hls_cnn
from search_spaces.hls.network import emulation_samples
from search_spaces.hls4ml_sweep import Hls4mlSweep
from search_spaces.kit import datasets, trainer
from search_spaces.kit.models import build_model, complete_arch, default_arch, save_model

pytest.importorskip("hls4ml")
DIGITS = DataShape("image", (1, 8, 8), 10)


def _trained_vgg(path: Path) -> dict:
    arch = complete_arch({"name": "vgg", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [4, 8]})
    trainer.set_seed(0)
    model = build_model(arch)
    splits = datasets.load("digits", seed=0)
    trainer.train(model, splits.x_train, splits.y_train, epochs=6, lr=0.01, batch_size=64, seed=0, optimizer="adam")
    save_model(model, arch, path)
    return arch


def test_the_kit_vgg_becomes_a_stack_hls4ml_converts_with_the_same_outputs() -> None:
    arch = complete_arch({"name": "vgg", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [4, 8], "fc": [6]})
    torch.manual_seed(0)
    model = build_model(arch)
    model.train()
    model(torch.randn(32, 1, 8, 8))  # BatchNorm statistics that are not the identity
    model.eval()
    stack, weighted = to_hls_cnn(model, (1, 8, 8))
    assert weighted == ["conv1", "conv2", "fc1", "fc2"]
    assert "gap" in dict(stack.named_children())  # the adaptive pool as an AvgPool2d over the 2×2 image
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(stack(x), torch.softmax(model(x), dim=1), atol=1e-5)


def test_a_vgg_input_model_is_swept_in_io_stream_with_fixed_point_near_float(tmp_path: Path) -> None:
    arch = _trained_vgg(tmp_path / "vgg.pt")
    kind = Hls4mlSweep()
    assert not kind.input_model_problems(arch, DIGITS)
    config = kind.validate(
        {"n_trials": 3, "total_bits": [16], "integer_bits": [6], "reuse_factors": [1, 2], "strategies": ["Latency"]}
    )
    reporter = MemoryReporter()
    result = kind.run(
        config, JobInputs(dataset="digits", model_path=tmp_path / "vgg.pt", model_arch=arch, workdir=tmp_path), reporter
    )
    complete = [t for t in reporter.trials.values() if t["state"] == "complete"]
    assert len(complete) == 3 and result["compiles"] == 1  # one set of numerics: one compile
    assert result["float_accuracy"] > 0.5
    for trial in complete:
        m = trial["metrics"]
        assert m["io_type"] == "io_stream"
        assert set(m["reuse_factor"]) == {"conv1", "conv2", "fc1"}
        assert abs(m["fixed_accuracy"] - m["float_accuracy"]) <= 0.02  # 16 bits: within 2 points of float
    reports = [fields for _, fields in reporter.fpga_reports]
    assert len(reports) == 3 and all(r["io_type"] == "io_stream" and r["dsp"] > 0 for r in reports)
    first = reports[0]
    assert first["latency_cycles"] >= 100  # the first conv reads the padded 10×10 image a pixel per cycle
    assert result["output_arch"]["name"] == "vgg"
    assert "io_stream" in result["estimate_note"] and "io_stream" in first["raw"]["note"]
    assert np.isfinite(result["pareto"][0]["latency_ns"])


@pytest.mark.parametrize(
    ("family", "layer"),
    [("mobilenet", "features.block1.dw.conv"), ("resnet", "features.stage1_1"), ("pathlevel", "tree cells")],
)
def test_kit_cnns_it_cannot_convert_are_refused_naming_the_layer(family: str, layer: str) -> None:
    info = datasets.BUILTIN["digits"]
    arch = default_arch(family, info) if family != "pathlevel" else {"name": "pathlevel", "input_shape": [1, 8, 8]}
    problems = Hls4mlSweep().input_model_problems(arch, DIGITS)
    assert problems and layer in problems[0] and family in problems[0] and "hls4ml_sweep" in problems[0]


@pytest.mark.parametrize(
    ("shape", "widths", "expected"), [((1, 8, 8), [16, 32, 64], 500), ((1, 28, 28), [16, 32, 64], 130)]
)
def test_the_emulated_subset_shrinks_with_the_work_per_image(shape: tuple, widths: list, expected: int) -> None:
    """A 28x28 VGG emulates ~112 ms an image on 2 busy cores: 130 images (15 s) beside its 34 s compile."""
    arch = complete_arch({"name": "vgg", "input_shape": list(shape), "num_classes": 10, "widths": widths})
    stack, _ = to_hls_cnn(build_model(arch).eval(), shape)
    assert abs(emulation_samples(stack, shape) - expected) <= 5
