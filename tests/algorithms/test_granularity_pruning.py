"""Group masks of Mao et al. (arXiv:1705.08922) on hand-made tensors: shapes, exact sparsity, saliency order."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from search_spaces.kit.pruning import (
    GRANULARITIES,
    group_mask,
    group_saliency,
    group_size,
    mask_sparsity,
    prunable_weights,
    prune_and_retrain,
    sparsity_schedule,
)


def conv_weight(k: int = 4, c: int = 3, r: int = 3, s: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(k, c, r, s, generator=torch.Generator().manual_seed(seed))


def test_group_sizes_conv_and_linear() -> None:
    shape = (4, 3, 3, 2)
    assert [group_size(shape, g) for g in GRANULARITIES] == [1, 2, 6, 18]
    assert [group_size((5, 12), g, vector_size=4) for g in GRANULARITIES] == [1, 4, 12, 12]
    # cols = 10: blocks shrink to the largest divisor of 10 not above 4 (vector) and 16 (kernel).
    assert [group_size((5, 10), g, vector_size=4) for g in GRANULARITIES] == [1, 2, 10, 10]
    assert [group_size((8, 6, 1, 1), g) for g in GRANULARITIES] == [1, 1, 1, 6]
    with pytest.raises(ValueError):
        group_size(shape, "block")


def test_mask_is_constant_over_each_group() -> None:
    w = conv_weight()
    kernel = group_mask(w, "kernel", 0.5)
    assert torch.equal(kernel, kernel[:, :, :1, :1].expand_as(kernel))  # one value per R×S kernel
    filt = group_mask(w, "filter", 0.5)
    assert torch.equal(filt, filt[:, :1, :1, :1].expand_as(filt))  # one value per C×R×S filter
    vector = group_mask(w, "vector", 0.5)
    assert torch.equal(vector, vector[..., :1].expand_as(vector))  # one value per kernel row of S
    assert not torch.equal(vector, vector[:, :, :1, :].expand_as(vector))  # rows within a kernel differ
    fine = group_mask(w, "fine", 0.5)
    assert fine.shape == w.shape and set(fine.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
def test_exact_sparsity_reached(granularity: str, sparsity: float) -> None:
    w = conv_weight(k=8, c=4, r=3, s=4)  # 8 filters, 32 kernels, 96 rows, 384 weights: all divisible by 4
    mask = group_mask(w, granularity, sparsity)
    assert (mask == 0).float().mean().item() == pytest.approx(sparsity, abs=1e-9)
    lin = torch.randn(8, 32)
    lin_mask = group_mask(lin, granularity, sparsity, vector_size=4)
    assert (lin_mask == 0).float().mean().item() == pytest.approx(sparsity, abs=1e-9)


def test_lowest_norm_kernels_are_removed() -> None:
    k, c = 3, 4
    scale = torch.arange(k * c, dtype=torch.float32).roll(5).reshape(k, c, 1, 1) + 1.0
    w = torch.ones(k, c, 3, 3) * scale
    w[0, 0, 0, 0] *= -1  # the sign does not matter to a norm
    mask = group_mask(w, "kernel", 0.5)
    kept = mask[:, :, 0, 0]
    pruned_scales = sorted(scale[kept == 0].flatten().tolist())
    assert pruned_scales == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_lowest_norm_filters_are_removed() -> None:
    w = torch.stack([torch.full((2, 3, 3), v) for v in (0.3, -5.0, 0.1, 2.0)])
    mask = group_mask(w, "filter", 0.5)
    assert mask[:, 0, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_l1_and_l2_saliency_rank_differently() -> None:
    # group A = [3, 0, 0, 0]: L1 3, L2 3;  group B = [1, 1, 1, 1]: L1 4, L2 2 (both divided by 4).
    w = torch.tensor([[3.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    assert group_saliency(w, "vector", "l1", vector_size=4).tolist() == [0.75, 1.0]
    assert group_saliency(w, "vector", "l2", vector_size=4).tolist() == [0.75, 0.5]
    assert group_mask(w, "vector", 0.5, "l1", vector_size=4).tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]]
    assert group_mask(w, "vector", 0.5, "l2", vector_size=4).tolist() == [[1, 1, 1, 1, 0, 0, 0, 0]]


def test_one_group_always_survives() -> None:
    w = conv_weight(k=2)
    mask = group_mask(w, "filter", 0.99)
    assert int(mask[:, 0, 0, 0].sum()) == 1


def test_earlier_mask_is_kept() -> None:
    w = torch.arange(1.0, 9.0).reshape(1, 8)
    keep = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]])  # the two largest were pruned before
    mask = group_mask(w, "fine", 0.5, keep=keep)
    assert mask.tolist() == [[0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]]


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3)
        self.conv2 = nn.Conv2d(4, 8, 3)
        self.fc = nn.Linear(8 * 4 * 4, 16)
        self.out = nn.Linear(16, 3)


def test_prunable_weights_leave_the_classifier_dense() -> None:
    assert list(prunable_weights(TinyNet())) == ["conv1.weight", "conv2.weight", "fc.weight"]


def test_dense_first_conv_leaves_the_first_convolution_whole() -> None:
    net = TinyNet()
    assert list(prunable_weights(net, dense_first_conv=True)) == ["conv2.weight", "fc.weight"]
    before = net.conv1.weight.detach().clone()
    masks = prune_and_retrain(net, granularity="kernel", sparsity=0.75, dense_first_conv=True)
    assert "conv1.weight" not in masks and torch.equal(net.conv1.weight, before)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))  # the first layer is no convolution
    assert list(prunable_weights(mlp, dense_first_conv=True)) == ["0.weight"]


def test_sparsity_schedule_is_linear() -> None:
    assert sparsity_schedule(0.9, 3) == pytest.approx([0.3, 0.6, 0.9])


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_prune_and_retrain_keeps_masks(granularity: str) -> None:
    torch.manual_seed(0)
    net = TinyNet()
    seen: list[float] = []

    def retrain(step: int, masks: dict[str, torch.Tensor]) -> None:
        seen.append(mask_sparsity(masks))
        with torch.no_grad():  # "training" that would regrow every weight: the masks must win
            for p in prunable_weights(net).values():
                p.add_(1.0)

    masks = prune_and_retrain(net, granularity=granularity, sparsity=0.75, prune_steps=3, retrain=retrain)
    assert seen == pytest.approx([0.25, 0.5, 0.75], abs=1e-9)
    for name, weight in prunable_weights(net).items():
        assert torch.equal(weight == 0, masks[name] == 0)
