"""Pruning in the Winograd domain: masks survive retraining, rounds only add zeros, the first convolution stays
spatial and dense, and a resumed job ends where an uninterrupted one does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from search_spaces.base import JobCancelled, JobInputs, MemoryReporter
from search_spaces.kit import datasets, pruning, trainer
from search_spaces.winograd import network
from search_spaces.winograd.search import WINOGRAD_RELU, WinogradConfig, load_checkpoint, run_winograd
from search_spaces.winograd.transforms import WinogradReLUConv2d

ARCH = {"name": "vgg", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [4, 8], "convs_per_stage": 1}
SETTINGS = WinogradConfig(
    widths=(4, 8), convs_per_stage=2, weight_density=(0.4,), rounds=2, epochs=1, retrain_epochs=1, batch_size=50
)


class KeepingReporter(MemoryReporter):
    """Keeps every checkpoint, not only the last."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoints: list[bytes] = []

    def save_checkpoint(self, state: bytes) -> None:
        super().save_checkpoint(state)
        self.checkpoints.append(state)


@pytest.fixture(scope="module")
def splits() -> datasets.Splits:
    return datasets.load("digits", seed=0, max_train=300)


def test_retraining_keeps_the_winograd_domain_masks(splits: datasets.Splits) -> None:
    trainer.set_seed(0)
    model = network.build_winograd_relu(network.winograd_arch(ARCH, 2))
    weights = network.prunable(model)
    assert list(weights) == ["features.stage2_1.conv.weight"]  # the first convolution is not pruned
    name = next(iter(weights))
    mask = pruning.group_mask(weights[name], "fine", 0.7)
    pruning.apply_masks(model, {name: mask})
    before = weights[name].detach().clone()
    trainer.train(model, splits.x_train, splits.y_train, epochs=1, lr=0.05, batch_size=50, masks={name: mask})
    after = network.prunable(model)[name].detach()
    assert torch.all(after[mask == 0] == 0)
    assert not torch.equal(after[mask == 1], before[mask == 1])  # the kept weights did train
    assert int(torch.count_nonzero(after)) == int(mask.sum()) == round(0.3 * mask.numel())


def test_rounds_only_add_zeros_and_reach_the_target(splits: datasets.Splits, tmp_path: Path) -> None:
    reporter = KeepingReporter()
    result = run_winograd(SETTINGS, JobInputs(dataset="digits", workdir=tmp_path), reporter, splits=splits)
    states = [load_checkpoint(blob) for blob in reporter.checkpoints]
    wrelu_masks = [s.masks[WINOGRAD_RELU] for s in states if s.masks[WINOGRAD_RELU]]
    assert len(wrelu_masks) == SETTINGS.rounds
    for earlier, later in zip(wrelu_masks, wrelu_masks[1:], strict=False):
        for name, mask in earlier.items():
            assert torch.all(later[name][mask == 0] == 0), f"{name}: a pruned weight came back"
    final = states[-1]
    model = network.build_winograd_relu(network.winograd_arch(final.arch, SETTINGS.tile_size))
    model.load_state_dict(final.weights[WINOGRAD_RELU])
    convs = network.conv_modules(model)
    first_conv = convs[0][1]
    assert isinstance(first_conv, torch.nn.Conv2d)  # spatial, and never pruned
    assert int(torch.count_nonzero(first_conv.weight)) == first_conv.weight.numel()
    for name, conv in convs[1:]:
        assert isinstance(conv, WinogradReLUConv2d)
        mask = final.masks[WINOGRAD_RELU][f"{name}.weight"]
        assert torch.all(conv.weight[mask == 0] == 0)
        assert float(mask.mean()) == pytest.approx(0.4, abs=0.01)
    last = reporter.trials[max(reporter.trials)]
    assert last["params"]["network"] == WINOGRAD_RELU and last["params"]["round"] == SETTINGS.rounds
    densities = last["metrics"]["layer_weight_density"]
    assert densities["features.stage1_1.conv"] == 1.0
    assert all(d == pytest.approx(0.4, abs=0.01) for n, d in densities.items() if n != "features.stage1_1.conv")
    assert result["multiplication_reduction"] == pytest.approx(
        result["multiplications"]["dense_direct"] / result["multiplications"]["winograd_relu_pruned"]
    )


def test_a_resumed_job_ends_where_an_uninterrupted_one_does(splits: datasets.Splits, tmp_path: Path) -> None:
    whole = run_winograd(SETTINGS, JobInputs(dataset="digits", workdir=tmp_path / "a"), MemoryReporter(), splits=splits)
    first = MemoryReporter(stop_after_trials=4)
    with pytest.raises(JobCancelled):
        run_winograd(SETTINGS, JobInputs(dataset="digits", workdir=tmp_path / "b"), first, splits=splits)
    second = MemoryReporter(checkpoint=first.checkpoint, completed=first.finished_trials())
    resumed = run_winograd(SETTINGS, JobInputs(dataset="digits", workdir=tmp_path / "b"), second, splits=splits)
    assert set(second.trials).isdisjoint(first.trials)
    for key in ("multiplication_reduction", "accuracy_loss_points", "spatial_reduction"):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-6), key


def test_the_spatial_baseline_is_compared_at_the_same_validation_accuracy() -> None:
    from search_spaces.winograd.report import spatial_at_same_accuracy

    rounds = [
        {"round": 0, "val_accuracy": 0.98, "multiplication_reduction": 1.5},
        {"round": 1, "val_accuracy": 0.97, "multiplication_reduction": 3.0},
        {"round": 2, "val_accuracy": 0.95, "multiplication_reduction": 6.0},
    ]
    assert spatial_at_same_accuracy(rounds, 0.965) == (rounds[1], True)
    assert spatial_at_same_accuracy(rounds, 0.95) == (rounds[2], True)
    assert spatial_at_same_accuracy(rounds, 0.99) == (rounds[0], False)  # never reached: its most accurate round


def test_a_checkpoint_of_the_old_layout_is_refused() -> None:
    from search_spaces.kit import checkpoint

    old = checkpoint.to_bytes({"format": "winograd_prune/1", "arch": "{}", "next_stage": 3, "rows": "[]"})
    with pytest.raises(checkpoint.CheckpointError, match=r"it is winograd_prune/1"):
        load_checkpoint(old)
