"""Winograd F(m×m, 3×3) in PyTorch equals direct convolution, forwards and backwards, and the Winograd-ReLU layer
computes Aᵀ[W ⊙ ReLU(Bᵀ d B)]A tile by tile (Liu et al. 2018, Eq. 2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from search_spaces.winograd.transforms import (
    WinogradReLUConv2d,
    input_transform,
    tile_grid,
    winograd_conv2d,
    winograd_matrices,
)

SIZES = [(7, 7), (5, 9), (1, 1), (13, 14), (8, 8), (3, 2)]


@pytest.mark.parametrize("m", [2, 4])
def test_matrices_have_the_shapes_of_f_m_3(m: int) -> None:
    bt, g, at = winograd_matrices(m, dtype=torch.float64)
    t = m + 2
    assert bt.shape == (t, t) and g.shape == (t, 3) and at.shape == (m, t)
    # A 1-D F(m, 3): Aᵀ[(G g) ⊙ (Bᵀ d)] is the correlation of d (length t) with g (length 3).
    d, k = torch.randn(t, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    direct = torch.stack([(d[i : i + 3] * k).sum() for i in range(m)])
    torch.testing.assert_close(at @ ((g @ k) * (bt @ d)), direct, rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_winograd_convolution_equals_conv2d_in_float64(m: int, h: int, w: int) -> None:
    gen = torch.Generator().manual_seed(h * 100 + w)
    x = torch.randn(3, 4, h, w, dtype=torch.float64, generator=gen)
    g = torch.randn(5, 4, 3, 3, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(winograd_conv2d(x, g, m), F.conv2d(x, g, padding=1), rtol=0, atol=1e-11)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize(("h", "w"), [(7, 7), (5, 9), (3, 2)])
def test_winograd_convolution_has_the_gradients_of_conv2d(m: int, h: int, w: int) -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, h, w, dtype=torch.float64, generator=gen)
    g = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=gen)
    upstream = torch.randn(2, 4, h, w, dtype=torch.float64, generator=gen)
    grads = []
    for conv in (lambda a, b: winograd_conv2d(a, b, m), lambda a, b: F.conv2d(a, b, padding=1)):
        xa, ga = x.clone().requires_grad_(), g.clone().requires_grad_()
        (conv(xa, ga) * upstream).sum().backward()
        grads.append((xa.grad, ga.grad))
    (wx, wg), (dx, dg) = grads
    torch.testing.assert_close(wx, dx, rtol=0, atol=1e-10)
    torch.testing.assert_close(wg, dg, rtol=0, atol=1e-10)


@pytest.mark.parametrize("m", [2, 4])
def test_the_input_transform_backward_passes_gradcheck(m: int) -> None:
    x = torch.randn(2, 2, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: input_transform(a, m), (x,))


def _reference_winograd_relu(x: torch.Tensor, weight: torch.Tensor, m: int) -> torch.Tensor:
    """Eq. 2 of Liu et al. one tile at a time: Y = Aᵀ[Σ_c W[k,c] ⊙ ReLU(Bᵀ d_c B)]A."""
    bt, _, at = winograd_matrices(m, dtype=x.dtype)
    n, c, h, w = x.shape
    th, tw = tile_grid(h, w, m)
    t = m + 2
    padded = torch.zeros(n, c, th * m + 2, tw * m + 2, dtype=x.dtype)
    padded[:, :, 1 : h + 1, 1 : w + 1] = x
    out = torch.zeros(n, weight.shape[0], th * m, tw * m, dtype=x.dtype)
    for i in range(th):
        for j in range(tw):
            d = padded[:, :, i * m : i * m + t, j * m : j * m + t]  # [N, C, t, t]
            v = torch.relu(bt @ d @ bt.T)
            mm = torch.einsum("kcab,ncab->nkab", weight, v)
            out[:, :, i * m : (i + 1) * m, j * m : (j + 1) * m] = at @ mm @ at.T
    return out[:, :, :h, :w]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize(("h", "w"), [(7, 7), (6, 5), (1, 1)])
def test_the_winograd_relu_layer_is_eq_2_tile_by_tile(m: int, h: int, w: int) -> None:
    torch.manual_seed(0)
    layer = WinogradReLUConv2d(3, 4, m).double()
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _reference_winograd_relu(x, layer.weight, m), rtol=0, atol=1e-11)


@pytest.mark.parametrize("m", [2, 4])
def test_the_winograd_relu_layer_passes_gradcheck(m: int) -> None:
    torch.manual_seed(1)
    layer = WinogradReLUConv2d(2, 3, m).double()
    x = torch.randn(2, 2, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, wt: torch.func.functional_call(layer, {"weight": wt}, (a,)), (x, layer.weight)
    )


def test_a_tile_size_other_than_2_or_4_is_refused() -> None:
    with pytest.raises(ValueError, match="tile size"):
        WinogradReLUConv2d(1, 1, 3)
