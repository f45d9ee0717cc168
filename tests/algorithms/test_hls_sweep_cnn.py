"""hls4ml_sweep on a convolutional input model: kit CNNs (VGG, MobileNet, ResNet, pathlevel cells with add and
concat merges) converted in io_stream with hls4ml's PyTorch frontend, emulated bit-accurately, read back and
estimated; layers it cannot convert refused at submit, naming the layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from search_spaces.base import DataShape, JobInputs, MemoryReporter
from search_spaces.hls.graph import to_hls_cnn
from search_spaces.hls.network import emulation_samples
from search_spaces.hls4ml_sweep import Hls4mlSweep
from search_spaces.kit import datasets, trainer
from search_spaces.kit.models import build_model, complete_arch, save_model

pytest.importorskip("hls4ml")
DIGITS = DataShape("image", (1, 8, 8), 10)


def _leaf(op: str) -> dict:
    return {"op": op, "child": None}


# A cell with every merge the search makes: replicate-and-add (a mean over a separable convolution and an
# identity edge that leads to a node) and a split-free concat of a 1×1 and a group convolution.
MERGED_TREE = {
    "split": "copy",
    "merge": "add",
    "branches": [
        _leaf("sep3x3"),
        {
            "op": "identity",
            "child": {"split": "copy", "merge": "concat", "branches": [_leaf("conv1x1"), _leaf("gconv3x3")]},
        },
    ],
}
FAMILIES = {
    "vgg": {"name": "vgg", "widths": [4, 8], "fc": [6]},
    "mobilenet": {"name": "mobilenet", "stem": 8, "widths": [8, 16], "strides": [1, 2]},
    "resnet": {"name": "resnet", "widths": [8, 16]},
    "pathlevel_resnet": {"name": "pathlevel", "stem": 8, "widths": [8, 16], "tree": MERGED_TREE},
    "pathlevel_split": {
        "name": "pathlevel",
        "stem": 8,
        "widths": [8],
        "tree": {"split": "split", "merge": "concat", "branches": [_leaf("identity"), _leaf("conv1x1")]},
    },
    "pathlevel_densenet": {
        "name": "pathlevel",
        "base": "densenet",
        "stem": 8,
        "growth": 6,
        "dense_layers": [2, 2],
        "tree": {"split": "copy", "merge": "concat", "branches": [_leaf("sep3x3"), _leaf("conv1x1")]},
    },
}


def _arch(family: str) -> dict:
    return complete_arch({**FAMILIES[family], "input_shape": [1, 8, 8], "num_classes": 10})


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_kit_cnn_becomes_a_graph_hls4ml_converts_with_the_same_outputs(family: str) -> None:
    """BatchNorm folded, grouped convolutions written dense, the add nodes' mean folded or a scale layer, split
    shares as select layers: the float function is unchanged, and the graph holds only layers hls4ml converts."""
    torch.manual_seed(0)
    model = build_model(_arch(family))
    model.train()
    model(torch.rand(32, 1, 8, 8))  # BatchNorm statistics that are not the identity
    model.eval()
    graph, weighted = to_hls_cnn(model, (1, 8, 8))
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(graph(x), torch.softmax(model(x), dim=1), atol=1e-5)
    allowed = (torch.nn.Conv2d, torch.nn.ReLU, torch.nn.MaxPool2d, torch.nn.AvgPool2d, torch.nn.Flatten)
    allowed += (torch.nn.Linear, torch.nn.Softmax)
    assert all(isinstance(m, allowed) for m in graph.children())
    assert all(m.groups == 1 for m in graph.children() if isinstance(m, torch.nn.Conv2d))
    for name, mask in graph.structural.items():  # a grouped convolution's zeros lie outside its groups
        assert torch.all(graph.get_submodule(name).weight[mask == 0] == 0)
    merges = {op for _, op, _ in graph.steps if op != "module"}
    assert merges == {"resnet": {"add"}, "pathlevel_resnet": {"add", "cat"}}.get(family, merges)
    assert weighted[-1].startswith("fc") and all(n in dict(graph.named_children()) for n in weighted)


def _trained(path: Path, arch: dict) -> dict:
    trainer.set_seed(0)
    model = build_model(arch)
    splits = datasets.load("digits", seed=0)
    trainer.train(model, splits.x_train, splits.y_train, epochs=6, lr=0.01, batch_size=64, seed=0, optimizer="adam")
    save_model(model, arch, path)
    return arch


def _trained_vgg(path: Path) -> dict:
    return _trained(path, complete_arch({"name": "vgg", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [4, 8]}))


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


def test_a_pathlevel_network_with_merges_is_swept_with_fixed_point_near_float(tmp_path: Path) -> None:
    """The add and concat merges reach the project as hls4ml merge stages, are read back and estimated, and the
    16-bit emulation of the whole graph stays within 2 points of the float network."""
    arch = _trained(tmp_path / "cell.pt", _arch("pathlevel_resnet"))
    kind = Hls4mlSweep()
    assert not kind.input_model_problems(arch, DIGITS)
    config = kind.validate(
        {"n_trials": 2, "total_bits": [16], "integer_bits": [6], "reuse_factors": [1, 2], "strategies": ["Latency"]}
    )
    reporter = MemoryReporter()
    inputs = JobInputs(dataset="digits", model_path=tmp_path / "cell.pt", model_arch=arch, workdir=tmp_path)
    result = kind.run(config, inputs, reporter)
    complete = [t["metrics"] for t in reporter.trials.values() if t["state"] == "complete"]
    assert len(complete) == 2 and result["compiles"] == 1
    assert result["float_accuracy"] > 0.5
    for m in complete:
        assert abs(m["fixed_accuracy"] - m["float_accuracy"]) <= 0.02
    for _, report in reporter.fpga_reports:  # the per-stage estimate rows live in each report
        rows = report["raw"]["layers"]
        assert [row["kind"] for row in rows].count("merge") == 6  # per cell: the add node's mean, concat, residual
        assert all(row["latency_cycles"] > 0 for row in rows if row["kind"] == "merge")
        assert report["io_type"] == "io_stream" and report["dsp"] > 0
    assert result["output_arch"] == arch


@pytest.mark.parametrize("op", ["maxpool3x3", "avgpool3x3"])
def test_a_cell_hls4ml_cannot_convert_is_refused_naming_the_layer(op: str) -> None:
    tree = {"split": "copy", "merge": "add", "branches": [_leaf("conv1x1"), _leaf(op)]}
    arch = {"name": "pathlevel", "input_shape": [1, 8, 8], "num_classes": 10, "tree": tree}
    problems = Hls4mlSweep().input_model_problems(arch, DIGITS)
    assert len(problems) == 1
    assert "features.stage1_1.cell.branches.1.edge" in problems[0] and op in problems[0]
    assert "hls4ml_sweep cannot convert this pathlevel" in problems[0]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_kit_cnn_is_accepted_at_submit(family: str) -> None:
    assert Hls4mlSweep().input_model_problems(_arch(family), DIGITS) == []


@pytest.mark.parametrize(
    ("shape", "widths", "expected"), [((1, 8, 8), [16, 32, 64], 500), ((1, 28, 28), [16, 32, 64], 130)]
)
def test_the_emulated_subset_shrinks_with_the_work_per_image(shape: tuple, widths: list, expected: int) -> None:
    """A 28x28 VGG emulates ~112 ms an image on 2 busy cores: 130 images (15 s) beside its 34 s compile."""
    arch = complete_arch({"name": "vgg", "input_shape": list(shape), "num_classes": 10, "widths": widths})
    stack, _ = to_hls_cnn(build_model(arch).eval(), shape)
    assert abs(emulation_samples(stack, shape) - expected) <= 5
