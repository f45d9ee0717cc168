"""Least-squares reconstruction of the layer after a channel cut, and BatchNorm re-estimation.

AMC's channel pruning (He et al. 2018, §3.2, after He, Zhang & Sun 2017 "Channel Pruning"): drop the
consumer layer's weakest input channels, then refit its remaining weights so its outputs on sampled
feature-map points match the unpruned layer's: ``min_W' ||X_S W'ᵀ − X Wᵀ||²``. The reference samples 10
points per image from 60 calibration batches. Because the target is a linear function of the same
inputs, the Gram matrix ``G = XᵀX`` of the sampled inputs holds everything needed: for a kept column set
``S``, ``W'ᵀ = (G_SS + λI)⁻¹ G_S: Wᵀ``. ``G`` is collected once per consumer on the unpruned network, so
each episode only solves small systems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.adc.graph import LINEAR, Graph, not_none, weight_layer

RIDGE = 1e-5  # relative to the mean diagonal of G_SS: keeps the solve stable when channels are collinear


@dataclass
class ConsumerStats:
    """The sampled inputs of one consumer layer, as the Gram matrix of its (patch) columns.

    ``group`` columns belong to each input channel (k·k for a convolution, 1 for a linear layer); with
    ``bias`` the last column is a constant 1 so that the bias is refit too.
    """

    gram: torch.Tensor
    group: int
    bias: bool
    rows: int


def sample_inputs(
    module: nn.Conv2d | nn.Linear, x: torch.Tensor, points: int, generator: torch.Generator
) -> torch.Tensor:
    """Rows of the consumer's input as its weights see them: ``points`` random im2col patches per image
    for a convolution (all of them if the map is smaller), the input vector for a linear layer."""
    if isinstance(module, nn.Linear):
        return x.reshape(len(x), -1)
    if isinstance(module.padding, str):
        raise ValueError(f"cannot sample the patches of a convolution with padding={module.padding!r}")
    cols = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride)
    n, d, positions = cols.shape
    if positions <= points:
        return cols.transpose(1, 2).reshape(-1, d)
    pick = torch.stack([torch.randperm(positions, generator=generator)[:points] for _ in range(n)])
    return torch.gather(cols, 2, pick.unsqueeze(1).expand(n, d, points)).transpose(1, 2).reshape(-1, d)


@torch.no_grad()
def collect_stats(
    model: nn.Module, graph: Graph, batches: Sequence[torch.Tensor], *, points: int = 10, seed: int = 0
) -> list[ConsumerStats]:
    """Per refit layer (:attr:`.graph.Graph.refit_layers`: each unit's consumer, or every layer reading a coupled
    unit), the Gram matrix of its sampled inputs over the calibration ``batches``."""
    generator = torch.Generator().manual_seed(seed)
    consumers = {name: index for index, name in enumerate(graph.refit_layers)}
    grams: dict[int, torch.Tensor] = {}
    rows: dict[int, int] = {}

    def hook(module: nn.Conv2d | nn.Linear, inputs: tuple[torch.Tensor, ...], index: int) -> None:
        x = sample_inputs(module, inputs[0].detach().float().cpu(), points, generator).double()
        if module.bias is not None:
            x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
        grams[index] = grams.get(index, 0) + x.T @ x
        rows[index] = rows.get(index, 0) + len(x)

    handles = []
    for name, index in consumers.items():
        module = weight_layer(model, name)  # the hook is called with this same module
        handles.append(module.register_forward_hook(lambda _m, i, _o, m=module, index=index: hook(m, i, index)))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(batch)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    stats = []
    for name, index in consumers.items():
        layer = graph.layer(name)
        group = 1 if layer.kind == LINEAR else layer.kernel * layer.kernel
        stats.append(ConsumerStats(grams[index], group, layer.bias, rows[index]))
    return stats


def kept_columns(stats: ConsumerStats, keep: torch.Tensor) -> torch.Tensor:
    """Column indices of the kept input channels (and the bias column)."""
    cols = (keep.long().unsqueeze(1) * stats.group + torch.arange(stats.group)).reshape(-1)
    if stats.bias:
        cols = torch.cat([cols, torch.tensor([stats.gram.shape[0] - 1])])
    return cols


def full_weight(module: nn.Conv2d | nn.Linear, bias: bool) -> torch.Tensor:
    """The layer's weights as a (outputs × columns) matrix, the bias as the last column."""
    w = module.weight.detach().reshape(module.weight.shape[0], -1).double().cpu()
    if bias:
        w = torch.cat([w, not_none(module.bias, "bias").detach().double().cpu().unsqueeze(1)], dim=1)
    return w


def least_squares(stats: ConsumerStats, weight: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The refit weights on the kept columns (outputs × kept columns): ``(G_SS + λI)⁻¹ G_S: Wᵀ``, transposed."""
    cols = kept_columns(stats, keep)
    g_ss = stats.gram.index_select(0, cols).index_select(1, cols)
    rhs = stats.gram.index_select(0, cols) @ weight.T
    ridge = RIDGE * float(g_ss.diagonal().mean().clamp_min(1e-12))
    solution = torch.linalg.solve(g_ss + ridge * torch.eye(len(cols), dtype=g_ss.dtype), rhs)
    return solution.T


def reconstruction_error(
    stats: ConsumerStats, weight: torch.Tensor, keep: torch.Tensor, new_weight: torch.Tensor
) -> float:
    """``||X_S W'ᵀ − X Wᵀ||² / rows`` from the Gram matrix alone (W' on the kept columns)."""
    cols = kept_columns(stats, keep)
    full = torch.zeros_like(weight)
    full[:, cols] = new_weight
    diff = full - weight
    return float(torch.einsum("oi,ij,oj->", diff, stats.gram, diff) / stats.rows)


@torch.no_grad()
def reconstruct(
    pruned: nn.Module, original: nn.Module, graph: Graph, stats: Sequence[ConsumerStats], keep: Sequence[torch.Tensor]
) -> None:
    """Refit every consumer of ``pruned`` by least squares against the original network's layer outputs; one
    none of whose input channels were cut keeps its weights (a refit would only add the ridge's noise)."""
    for name, st in zip(graph.refit_layers, stats, strict=True):
        _refit(pruned, original, graph, name, st, keep)


def _refit(
    pruned: nn.Module, original: nn.Module, graph: Graph, name: str, stats: ConsumerStats, keep: Sequence[torch.Tensor]
) -> None:
    layer = graph.layer(name)
    kept_in, kept_out = graph.kept_positions(name, keep)
    if kept_in is None:
        return
    target = weight_layer(pruned, name)
    weight = full_weight(weight_layer(original, name), layer.bias)
    if kept_out is not None:  # this layer's own outputs are cut by another unit: refit only the kept ones
        weight = weight.index_select(0, kept_out.cpu())
    solved = least_squares(stats, weight, kept_in.cpu())
    if layer.bias:
        target_bias = not_none(target.bias, "bias")
        target_bias.copy_(solved[:, -1].to(target_bias.dtype))
        solved = solved[:, :-1]
    target.weight.copy_(solved.reshape(target.weight.shape).to(target.weight.dtype))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Re-estimate every BatchNorm's running mean and variance as the plain average over ``batches``
    (after pruning, the statistics the original network learned no longer describe the layer's inputs)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or not batches:
        return
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch counts the same
    was_training = model.training
    model.train()
    try:
        for batch in batches:
            model(batch)
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        model.train(was_training)
