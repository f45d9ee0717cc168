"""The chain pathlevel_nas → granularity_sweep at the algorithm level: Mao et al.'s group masks on a found tree-cell
network, whose edges include depthwise (separable), pointwise, 1×1 and 3×3 group convolutions and pooling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from search_spaces.base import DataShape, JobInputs, MemoryReporter
from search_spaces.granularity_sweep import GranularitySweep
from search_spaces.kit import datasets, pruning
from search_spaces.kit import tree_cells as T
from search_spaces.kit.models import build_model, complete_arch, load_model, save_model

KIND = GranularitySweep()
# A residual cell with every kind of weight the family has: sep3x3 (depthwise 3×3 + pointwise 1×1) followed by a
# split-and-concat of an identity and an average pool, a 3×3 group convolution, and conv1x1 → sep5x5.
TREE = {
    "split": "copy",
    "merge": "add",
    "branches": [
        {
            "op": "sep3x3",
            "child": {
                "split": "split",
                "merge": "concat",
                "branches": [{"op": "identity", "child": None}, {"op": "avgpool3x3", "child": None}],
            },
        },
        {"op": "gconv3x3", "child": None},
        {"op": "conv1x1", "child": T.leaf("sep5x5")},
    ],
}


@pytest.fixture(scope="module")
def pathlevel_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    info = datasets.BUILTIN["digits"]
    arch = complete_arch(
        {"name": "pathlevel", "input_shape": list(info.input_shape), "num_classes": info.num_classes}
        | {"stem": 8, "widths": [8], "tree": TREE}
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("parent") / "pathlevel.pt"
    save_model(build_model(arch), arch, path)
    return path, arch


def _run(model_path: Path, tmp_path: Path, **overrides: object) -> tuple[dict, MemoryReporter]:
    reporter = MemoryReporter()
    inputs = JobInputs(
        dataset="digits",
        model_path=model_path,
        workdir=tmp_path,
        optuna_storage=f"sqlite:///{tmp_path / 'optuna.sqlite3'}",
        study_name="pathlevel",
    )
    return KIND.run(KIND.validate({**KIND.tiny_config, **overrides}), inputs, reporter), reporter


def test_the_tiny_config_runs_on_a_saved_pathlevel_model(pathlevel_model: tuple[Path, dict], tmp_path: Path) -> None:
    path, arch = pathlevel_model
    info = datasets.BUILTIN["digits"]
    assert not KIND.input_model_problems(arch, DataShape(info.modality, tuple(info.input_shape), info.num_classes))
    result, reporter = _run(path, tmp_path)
    assert reporter.progress_values[-1][0] == 1.0
    assert result["dense_model"] == "input model"
    from search_spaces.granularity.sweep import SweepConfig

    grid = SweepConfig.from_config(KIND.validate(KIND.tiny_config)).trial_count
    assert result["trials"]["complete"] + result["trials"]["pruned"] == grid
    assert result["output_arch"] == arch
    produced = {name: p for name, p, _ in reporter.artifacts}[result["output_model"]]
    _, stored = load_model(produced)
    assert stored == arch


@pytest.mark.parametrize("granularity", ["fine", "vector", "kernel", "filter"])
def test_every_granularity_masks_depthwise_and_group_convolutions_in_whole_groups(
    pathlevel_model: tuple[Path, dict], tmp_path: Path, granularity: str
) -> None:
    path, _ = pathlevel_model
    result, reporter = _run(path, tmp_path, sparsity_grid=[0.5], granularities=[granularity])
    assert reporter.trials[0]["metrics"]["granularity"] == granularity
    best = result["best_by_granularity"][granularity]
    model, _ = load_model(tmp_path / best["model"])
    weights = pruning.prunable_weights(model, dense_first_conv=True)  # the stem convolution stays dense
    kinds = {"depthwise": 0, "grouped": 0}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d) or f"{name}.weight" not in weights:
            continue
        if module.groups > 1:
            kinds["depthwise" if module.groups == module.in_channels else "grouped"] += 1
        w = module.weight.detach()
        size = pruning.group_size(w.shape, granularity)
        groups = w.reshape(-1, size)
        zero = (groups == 0).all(dim=1)
        assert zero.any(), name  # every pruned layer lost some groups
        assert not zero.all(), name  # and kept some
        # A pruned group is all zeros; a kept one (retrained with the mask held) has no forced zeros.
        assert int((groups == 0).sum()) == int(zero.sum()) * size, name
    assert kinds["depthwise"] >= 2 and kinds["grouped"] >= 1
