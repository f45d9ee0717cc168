"""Exact multiplication counts of 3×3 convolution layers: dense direct, dense Winograd, and sparse (only the
products whose two factors are both non-zero), measured on real data.

Liu et al. 2018 (Section 5) count the multiplications of the element-wise stage. A layer with C input and K
output channels on an h×w map costs

* dense direct: ``h·w · C·K · 9`` (every tap of every output, the padded ones included);
* dense Winograd F(m×m, 3×3): ``tiles · (m+2)² · C·K`` with ``tiles = ceil(h/m)·ceil(w/m)``; the transforms are
  additions (F(2×2, 3×3)) or amortised over channels and are not counted, as in the paper. Padding costs: on a
  7×7 map F(2×2, 3×3) needs 16 tiles, a 1.72× gain instead of the asymptotic 2.25×;
* sparse: a product is counted when both the weight and the activation it meets are non-zero. For a direct
  layer that is ``Σ_{c,r,s} #{k: W[k,c,r,s] ≠ 0} · #{outputs whose tap (r,s) reads a non-zero a[c]}``; for a
  Winograd-ReLU layer it is ``Σ_{c,p} #{k: W[k,c,p] ≠ 0} · #{tiles with ReLU(Bᵀ d B)[c,p] ≠ 0}``, per channel
  and Winograd-domain position p. Both are exact sums over the images given.

The product of a weight density and an activation density (the spec's "tiles × (m+2)² × C × K × weight
density × activation density") assumes the two are independent. They are not (a position whose weights
survive pruning is often one whose activations are often non-zero), so that estimate is reported beside the
exact count and never used for the headline figures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from search_spaces.base import Reporter, check_stop
from search_spaces.winograd.network import ConvLayer, conv_layers, conv_modules
from search_spaces.winograd.transforms import WinogradReLUConv2d, tile_grid


def dense_direct(layer: ConvLayer) -> int:
    """Multiplications of the layer as a dense direct 3×3 convolution, per image: ``h·w·C·K·9``."""
    return layer.h * layer.w * layer.c_in * layer.c_out * 9


def dense_winograd(layer: ConvLayer, m: int) -> int:
    """Multiplications of the layer's element-wise stage with dense F(m×m, 3×3), per image:
    ``ceil(h/m)·ceil(w/m)·(m+2)²·C·K`` (Lavin & Gray 2016, Section 4)."""
    th, tw = tile_grid(layer.h, layer.w, m)
    return th * tw * (m + 2) ** 2 * layer.c_in * layer.c_out


def direct_products(activation: torch.Tensor, weight: torch.Tensor) -> int:
    """Exact number of non-zero × non-zero products of a "same" 3×3 direct convolution over a batch.

    ``activation`` [N, C, h, w] is the layer's input, ``weight`` [K, C, 3, 3]. A zero-padded tap is a zero
    activation. Returns the sum over the batch."""
    nz = (activation != 0).sum(dim=0, dtype=torch.int64)  # [C, h, w]: non-zero activations over the batch
    h, w = nz.shape[1:]
    weights = (weight != 0).sum(dim=0, dtype=torch.int64)  # [C, 3, 3]: non-zero weights over k
    total = 0
    for r in range(3):
        for s in range(3):
            # Tap (r, s) of the output at (y, x) reads a[y + r - 1, x + s - 1]: the activations it ever reads
            # are one rectangle of the map (all of it but one edge row/column when the tap is off-centre).
            rows = slice(max(r - 1, 0), h + min(r - 1, 0))
            cols = slice(max(s - 1, 0), w + min(s - 1, 0))
            taps = nz[:, rows, cols].sum(dim=(1, 2))  # [C]
            total += int((taps * weights[:, r, s]).sum())
    return total


def winograd_products(transformed: torch.Tensor, weight: torch.Tensor) -> int:
    """Exact number of non-zero × non-zero products of a Winograd layer's element-wise stage over a batch.

    ``transformed`` [P, C, N, th, tw] are the Winograd-domain input activations (``ReLU(Bᵀ d B)`` for a
    Winograd-ReLU layer), ``weight`` [K, C, t, t] the Winograd-domain weights. Returns the sum over the batch."""
    p, c = transformed.shape[:2]
    tiles = (transformed != 0).reshape(p, c, -1).sum(dim=2).to(torch.float64)  # [P, C]
    weights = (weight != 0).reshape(weight.shape[0], c, p).sum(dim=0).t().to(torch.float64)  # [P, C]
    return int(round(float((tiles * weights).sum())))


@dataclass
class LayerCount:
    """One convolution's multiplications per image (averaged over the images counted) and its densities.

    ``multiplications`` is exact (non-zero × non-zero products; dense for a layer counted dense);
    ``independent_estimate`` is what multiplying the two densities would claim for the same layer."""

    name: str
    domain: str  # "direct" or "winograd"
    c_in: int
    c_out: int
    h: int
    w: int
    weight_density: float
    activation_density: float
    multiplications: float
    independent_estimate: float
    dense_direct: int
    dense_winograd: int
    counted_dense: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def count_network(
    model: nn.Module,
    x: torch.Tensor,
    m: int,
    *,
    dense_layers: tuple[str, ...] = (),
    batch_size: int = 250,
    reporter: Reporter | None = None,
) -> list[LayerCount]:
    """Count every 3×3 convolution of ``model`` on the images ``x`` (eval mode; the mode is restored).

    A spatial ``Conv2d`` is counted as a direct convolution on its input activations; a
    :class:`WinogradReLUConv2d` on its transformed, ReLU'd input tiles (Liu et al. 2018, Eq. 2). Layers named in
    ``dense_layers`` are counted as dense direct convolutions whatever their zeros. ``m`` is the tile size used
    for the dense Winograd figure of every layer. ``reporter.should_stop()`` is checked between batches."""
    layers = conv_layers(model, list(x.shape[1:]))
    modules = dict(conv_modules(model))
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        mod.register_forward_hook(lambda mod, inp, out, name=name: inputs.__setitem__(name, inp[0]))
        for name, mod in modules.items()
    ]
    products = {layer.name: 0 for layer in layers}
    nonzero = {layer.name: 0 for layer in layers}
    total = {layer.name: 0 for layer in layers}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(x), batch_size):
            if reporter is not None:
                check_stop(reporter)
            model(x[start : start + batch_size])
            for layer in layers:
                mod, act = modules[layer.name], inputs[layer.name]
                if isinstance(mod, WinogradReLUConv2d):
                    act = mod.transformed_input(act)
                    products[layer.name] += winograd_products(act, mod.weight)
                else:
                    products[layer.name] += direct_products(act, mod.weight)
                nonzero[layer.name] += int((act != 0).sum())
                total[layer.name] += act.numel()
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    n = len(x)
    counts = []
    for layer in layers:
        mod = modules[layer.name]
        winograd = isinstance(mod, WinogradReLUConv2d)
        w_density = int(torch.count_nonzero(mod.weight)) / mod.weight.numel()
        a_density = nonzero[layer.name] / max(total[layer.name], 1)
        dense = dense_winograd(layer, mod.m) if isinstance(mod, WinogradReLUConv2d) else dense_direct(layer)
        counted_dense = layer.name in dense_layers
        counts.append(
            LayerCount(
                name=layer.name,
                domain="winograd" if winograd else "direct",
                c_in=layer.c_in,
                c_out=layer.c_out,
                h=layer.h,
                w=layer.w,
                weight_density=w_density,
                activation_density=a_density,
                multiplications=float(dense) if counted_dense else products[layer.name] / n,
                independent_estimate=float(dense) if counted_dense else dense * w_density * a_density,
                dense_direct=dense_direct(layer),
                dense_winograd=dense_winograd(layer, m),
                counted_dense=counted_dense,
            )
        )
    return counts


def total(counts: list[LayerCount], key: str = "multiplications") -> float:
    """The sum of one figure over the layers."""
    return float(math.fsum(float(getattr(c, key)) for c in counts))
