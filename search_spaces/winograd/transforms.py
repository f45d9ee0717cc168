"""Winograd's minimal filtering F(m×m, 3×3) as PyTorch operations, and the Winograd-ReLU layer.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), Eq. 8: one m×m output tile
of a 3×3 correlation is computed from an (m+2)×(m+2) input tile ``d`` as

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A,

and Liu, Pool, Han, Dally, "Efficient Sparse-Winograd Convolutional Neural Networks" (ICLR 2018), Eq. 2,
move both the weights and the ReLU into the Winograd domain:

    Y = Aᵀ [ W ⊙ ReLU(Bᵀ d B) ] A,

where ``W`` is an (m+2)×(m+2) tile learned directly (no G), so pruning ``W`` and the ReLU's zeros are not
filled in again by a transform. Adjacent input tiles overlap by 2 (stride m); output tiles do not overlap.

Shapes: ``t = m + 2`` is the tile side and ``P = t²`` the number of Winograd-domain positions per tile; a
map of h×w outputs is covered by ``ceil(h/m)·ceil(w/m)`` tiles (the input is zero-padded by 1 on the top
and left, as for a "same" 3×3 convolution, and by as much as the last tile needs on the bottom and right;
the surplus outputs are cropped). Transformed activations are laid out ``[P, C, N, th, tw]``.

The implementation is differentiable PyTorch: the input transform is a few strided sums along each axis
(Bᵀ is small and mostly zeros; its backward pass is written out), the element-wise products summed over
input channels are P batched matrix products (one per position), and the output transform is one matrix
product with ``Aᵀ ⊗ Aᵀ``. It computes every product; the sparsity is counted (:mod:`search_spaces.winograd.counting`),
not skipped, so it is not faster than ``conv2d`` on a CPU.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TILE_SIZES = (2, 4)

# F(2×2, 3×3): Lavin & Gray 2016, Eq. 7 (4×4 input tiles).
_F2 = {
    "BT": [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    "G": [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
    "AT": [[1, 1, 1, 0], [0, 1, -1, -1]],
}
# F(4×4, 3×3): Lavin & Gray 2016, Section 4.2 (6×6 input tiles, interpolation points 0, ±1, ±2, ∞).
_F4 = {
    "BT": [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    "G": [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    "AT": [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
}


def _check_m(m: int) -> None:
    if m not in TILE_SIZES:
        raise ValueError(f"tile size m must be one of {TILE_SIZES} (F(m×m, 3×3)); got {m}")


@lru_cache(maxsize=8)
def _matrices64(m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _check_m(m)
    table = _F2 if m == 2 else _F4
    return tuple(torch.tensor(table[k], dtype=torch.float64) for k in ("BT", "G", "AT"))  # type: ignore[return-value]


def winograd_matrices(
    m: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Bᵀ, G, Aᵀ)`` of F(m×m, 3×3): shapes (t×t), (t×3), (m×t) with t = m + 2 (Lavin & Gray 2016)."""
    return tuple(a.to(device=device, dtype=dtype) for a in _matrices64(m))  # type: ignore[return-value]


def tile_grid(h: int, w: int, m: int) -> tuple[int, int]:
    """Tiles ``(th, tw)`` that cover an h×w output map with m×m output tiles: ``ceil(h/m), ceil(w/m)``."""
    return math.ceil(h / m), math.ceil(w / m)


def _strided(x: torch.Tensor, dim: int, start: int, step: int, count: int) -> torch.Tensor:
    """The view ``x[..., start : start + step·count : step, ...]`` along ``dim``."""
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, start + step * (count - 1) + 1, step)
    return x[tuple(index)]


class _TileTransform(torch.autograd.Function):
    """One axis of the input transform: ``out[a, ..., i, ...] = Σ_u Bᵀ[a, u] · x[..., u + m·i, ...]`` for the
    ``n_tiles`` overlapping windows of length t along ``dim``; the new axis ``a`` goes in front.

    Bᵀ is small and mostly zeros, so the transform is a few strided adds; the backward pass is the transposed
    sum into strided views of one zero tensor. (Autograd through slices would fill a full-size zero tensor per
    slice, and a strided depthwise ``conv2d`` has a slow backward on the CPU: both cost several times more.)
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, coefficients: tuple[tuple[int, int, float], ...], m: int, dim: int, n_tiles: int
    ) -> torch.Tensor:
        shape = list(x.shape)
        t = m + 2
        ctx.meta = (coefficients, m, dim, n_tiles, shape)
        out = x.new_zeros([t, *shape[:dim], n_tiles, *shape[dim + 1 :]])
        for a, u, c in coefficients:
            out[a].add_(_strided(x, dim, u, m, n_tiles), alpha=c)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        coefficients, m, dim, n_tiles, shape = ctx.meta
        grad_x = grad.new_zeros(shape)
        for a, u, c in coefficients:
            _strided(grad_x, dim, u, m, n_tiles).add_(grad[a], alpha=c)
        return grad_x, None, None, None, None


@lru_cache(maxsize=8)
def _bt_coefficients(m: int) -> tuple[tuple[int, int, float], ...]:
    bt = _matrices64(m)[0]
    t = m + 2
    return tuple((a, u, float(bt[a, u])) for a in range(t) for u in range(t) if bt[a, u] != 0)


def input_transform(x: torch.Tensor, m: int) -> torch.Tensor:
    """``Bᵀ d B`` for every (m+2)×(m+2) tile ``d`` of the zero-padded map ``x`` [N, C, h, w] (Lavin & Gray 2016,
    Eq. 8's V): returns ``[P, C, N, th, tw]`` with P = (m+2)², position p = a·(m+2) + b for ``(Bᵀ d B)[a, b]``.

    Positions lead so that the element-wise stage is one batched matrix product over positions without a copy.
    """
    _check_m(m)
    n, c, h, w = x.shape
    th, tw = tile_grid(h, w, m)
    t = m + 2
    # One row/column of zeros before (the "same" padding of a 3×3 conv), and enough after for the last tile.
    padded = F.pad(x.transpose(0, 1), (1, tw * m + 2 - w - 1, 1, th * m + 2 - h - 1))  # [C, N, hp, wp]
    coefficients = _bt_coefficients(m)
    # d B along the columns (the axis b in front), then Bᵀ (d B) along the rows (the axis a in front).
    columns = _TileTransform.apply(padded, coefficients, m, 3, tw)  # [b, C, N, hp, tw]
    both = _TileTransform.apply(columns, coefficients, m, 3, th)  # [a, b, C, N, th, tw]
    return both.reshape(t * t, c, n, th, tw)


def weight_transform(g: torch.Tensor, m: int) -> torch.Tensor:
    """``G g Gᵀ`` for every 3×3 kernel of a spatial weight g [K, C, 3, 3] (Lavin & Gray 2016, Eq. 8's U):
    returns the Winograd-domain weight [K, C, t, t]."""
    if g.shape[-2:] != (3, 3):
        raise ValueError(f"F(m×m, 3×3) needs 3×3 kernels; got {tuple(g.shape[-2:])}")
    _, gm, _ = winograd_matrices(m, dtype=g.dtype, device=g.device)
    return torch.einsum("ar,kcrs,bs->kcab", gm, g, gm)


def elementwise_product(v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``M[p, k] = Σ_c W[k, c, p] · V[p, c]`` per tile: the element-wise product of Eq. 8 summed over input
    channels, as P batched matrix products over channels (one per Winograd-domain position p).

    ``v`` is [P, C, N, th, tw] (:func:`input_transform`), ``weight`` is [K, C, t, t]; returns [P, K, N, th, tw]."""
    p, c, n, th, tw = v.shape
    k = weight.shape[0]
    w = weight.reshape(k, c, p).permute(2, 0, 1)  # [P, K, C]
    out = torch.bmm(w, v.reshape(p, c, n * th * tw))  # [P, K, N·T]
    return out.view(p, k, n, th, tw)


def output_transform(mm: torch.Tensor, m: int, h: int, w: int) -> torch.Tensor:
    """``Aᵀ M A`` for every tile of ``mm`` [P, K, N, th, tw] (Lavin & Gray 2016, Eq. 8), the m×m output tiles
    laid side by side and cropped to h×w: returns [N, K, h, w]."""
    p, k, n, th, tw = mm.shape
    _, _, at = winograd_matrices(m, dtype=mm.dtype, device=mm.device)
    # (Aᵀ M A)[i, j] = Σ_{a,b} Aᵀ[i,a] Aᵀ[j,b] M[a,b]: one matrix (Aᵀ ⊗ Aᵀ) of shape [m², P].
    both = torch.einsum("ia,jb->ijab", at, at).reshape(m * m, p)
    y = (both @ mm.reshape(p, -1)).view(m, m, k, n, th, tw)
    y = y.permute(3, 2, 4, 0, 5, 1).reshape(n, k, th * m, tw * m)
    return y[:, :, :h, :w]


def winograd_conv2d(x: torch.Tensor, g: torch.Tensor, m: int) -> torch.Tensor:
    """A "same" 3×3 correlation (``F.conv2d(x, g, padding=1)``, no bias) computed with F(m×m, 3×3):
    ``Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A`` per tile (Lavin & Gray 2016, Eq. 8). Dense Winograd, for tests and counts."""
    h, w = x.shape[-2:]
    return output_transform(elementwise_product(input_transform(x, m), weight_transform(g, m)), m, h, w)


class WinogradReLUConv2d(nn.Module):
    """The Winograd-ReLU layer (Liu et al. 2018, Eq. 2): ``Y = Aᵀ[W ⊙ ReLU(Bᵀ d B)]A``.

    ``weight`` [K, C, t, t] lives in the Winograd domain, one (m+2)×(m+2) tile per output/input channel pair,
    and is trained (and pruned) there directly; there is no spatial kernel and no G. The ReLU acts on the
    transformed input tiles, so the layer's input should be a pre-activation (the previous layer's BatchNorm
    output); the network has no spatial ReLU before it. No bias: a BatchNorm follows.

    The initial weights are Gaussian with variance 2·9/32 over the fan-in P·C, as in the reference code
    (``xingyul/sparse-winograd-cnn``, ``winograd_conv.py``, which uses that factor for F(2×2, 3×3)).
    """

    def __init__(self, in_channels: int, out_channels: int, m: int = 2) -> None:
        super().__init__()
        _check_m(m)
        self.in_channels, self.out_channels, self.m = in_channels, out_channels, m
        t = m + 2
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, t, t))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        t = self.m + 2
        std = math.sqrt(2.0 * 9.0 / 32.0 / (t * t * self.in_channels))
        with torch.no_grad():
            self.weight.normal_(0.0, std)

    def transformed_input(self, x: torch.Tensor) -> torch.Tensor:
        """``ReLU(Bᵀ d B)`` for every tile of ``x``: the Winograd-domain activations [P, C, N, th, tw] that meet
        the weights (their zeros are the activation sparsity the paper exploits)."""
        return torch.relu(input_transform(x, self.m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return output_transform(elementwise_product(self.transformed_input(x), self.weight), self.m, h, w)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, F({self.m}×{self.m}, 3×3)"
