"""Exact multiplication counts: dense formulas (with the padding cost on small maps), non-zero × non-zero products
in the direct and the Winograd domain, and a case where multiplying two densities gives the wrong answer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from search_spaces.winograd import counting, network
from search_spaces.winograd.network import ConvLayer
from search_spaces.winograd.transforms import WinogradReLUConv2d, tile_grid


def test_dense_counts_and_the_padding_cost_on_small_maps() -> None:
    small, large = ConvLayer("a", 32, 64, 7, 7), ConvLayer("b", 32, 64, 14, 14)
    assert counting.dense_direct(small) == 7 * 7 * 9 * 32 * 64
    assert counting.dense_winograd(small, 2) == 16 * 16 * 32 * 64  # 4×4 tiles of 4×4 cover 8×8 ⊃ 7×7
    assert counting.dense_direct(small) / counting.dense_winograd(small, 2) == pytest.approx(441 / 256)  # 1.72×
    assert counting.dense_direct(large) / counting.dense_winograd(large, 2) == pytest.approx(2.25)
    assert counting.dense_direct(large) / counting.dense_winograd(large, 4) == pytest.approx(14 * 14 * 9 / (16 * 36))


def _winograd_layout(per_tile_nonzero: list[list[int]], p: int) -> torch.Tensor:
    """Transformed activations [P, C=1, N=1, th=1, tw=len(tiles)] with the given non-zero positions per tile."""
    v = torch.zeros(p, 1, 1, 1, len(per_tile_nonzero))
    for tile, positions in enumerate(per_tile_nonzero):
        v[positions, 0, 0, 0, tile] = 1.0
    return v


def test_a_product_is_counted_only_where_both_factors_are_non_zero() -> None:
    """Two tiles, F(2×2, 3×3) (16 positions), one input and one output channel: activations are non-zero at
    positions 0–7 of both tiles. Weight and activation density are both 1/2, so the independence estimate is
    2 tiles × 16 × 1/2 × 1/2 = 8 products whichever positions survive; the truth is 0 or 16."""
    v = _winograd_layout([list(range(8)), list(range(8))], 16)
    disjoint = torch.zeros(1, 1, 4, 4)
    disjoint.view(-1)[8:] = 1.0  # weights only where the activations are zero
    aligned = torch.zeros(1, 1, 4, 4)
    aligned.view(-1)[:8] = 1.0  # weights exactly where they are not
    estimate = 2 * 16 * 0.5 * 0.5
    assert estimate == 8
    assert counting.winograd_products(v, disjoint) == 0
    assert counting.winograd_products(v, aligned) == 16


def test_winograd_products_match_a_brute_force_count() -> None:
    torch.manual_seed(0)
    p, c, n, th, tw, k = 16, 3, 2, 2, 3, 4
    v = torch.relu(torch.randn(p, c, n, th, tw))
    w = torch.randn(k, c, 4, 4) * (torch.rand(k, c, 4, 4) > 0.6)
    wf = w.reshape(k, c, p)
    brute = sum(
        int(v[q, ci, ni, i, j] != 0 and wf[ki, ci, q] != 0)
        for q in range(p)
        for ci in range(c)
        for ni in range(n)
        for i in range(th)
        for j in range(tw)
        for ki in range(k)
    )
    assert counting.winograd_products(v, w) == brute


@pytest.mark.parametrize(("h", "w"), [(5, 7), (1, 1), (2, 3)])
def test_direct_products_match_a_brute_force_count(h: int, w: int) -> None:
    torch.manual_seed(h + w)
    a = torch.relu(torch.randn(2, 3, h, w))
    wt = torch.randn(4, 3, 3, 3) * (torch.rand(4, 3, 3, 3) > 0.5)
    padded = F.pad(a, (1, 1, 1, 1))  # a padded tap reads a zero, so it is never counted
    brute = 0
    for y in range(h):
        for x in range(w):
            window = padded[:, :, y : y + 3, x : x + 3] != 0  # [N, C, 3, 3]
            brute += int((window.unsqueeze(1) & (wt != 0).unsqueeze(0)).sum())
    assert counting.direct_products(a, wt) == brute


def test_count_network_counts_each_layer_on_its_own_activations() -> None:
    """A two-layer Winograd-ReLU network: the first layer (spatial) counted dense on request, the second on its
    transformed, ReLU'd tiles; densities and the independence estimate as their definitions say."""
    torch.manual_seed(0)
    arch = network.winograd_arch(
        {"name": "vgg", "input_shape": [1, 7, 7], "num_classes": 3, "widths": [2, 3], "convs_per_stage": 1}, 2
    )
    model = network.build_winograd_relu(arch).eval()
    conv = model.get_submodule("features.stage2_1.conv")
    assert isinstance(conv, WinogradReLUConv2d)
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) > 0.5).float())
    x = torch.rand(5, 1, 7, 7)
    counts = counting.count_network(model, x, 2, dense_layers=("features.stage1_1.conv",), batch_size=2)
    first, second = counts
    assert first.counted_dense and first.multiplications == 7 * 7 * 9 * 1 * 2
    assert second.domain == "winograd" and (second.h, second.w, second.c_in, second.c_out) == (3, 3, 2, 3)
    captured = {}
    handle = conv.register_forward_hook(lambda mod, inp, out: captured.__setitem__("x", inp[0]))
    with torch.no_grad():
        model(x)
        v = conv.transformed_input(captured["x"])
    handle.remove()
    assert second.multiplications == counting.winograd_products(v, conv.weight) / 5
    assert second.activation_density == pytest.approx(float((v != 0).float().mean()))
    assert second.weight_density == pytest.approx(float((conv.weight != 0).float().mean()))
    th, tw = tile_grid(3, 3, 2)
    dense = th * tw * 16 * 2 * 3
    assert second.dense_winograd == dense
    assert second.independent_estimate == pytest.approx(dense * second.weight_density * second.activation_density)
