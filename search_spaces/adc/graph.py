"""The prunable channel boundaries of a kit model, per-layer cost as a function of kept channels, and
physical channel pruning (new, smaller tensors; never masks).

A *unit* is one channel boundary AMC takes an action on (He et al. 2018, §3.2, "channel pruning"): the
output channels of a *producer* layer (and its BatchNorm) are the input channels of a *consumer* layer,
which is the layer whose input channels are ranked and whose weights are refit by least squares. A
depthwise convolution between them (MobileNet: ``pw_i → dw_{i+1} → pw_{i+1}``) is a *follower*: its
channels go with the unit, exactly, since each of its channels sees only itself.

What is not prunable, and why:

* the network's input channels and the classifier's outputs (fixed by the data);
* in a ResNet, every width tied to a residual sum (the stem, each block's output, the shortcuts): cutting
  one would need the same channels cut in every block of the stage. Only the inner width of each basic
  block (``conv1 → conv2``) is a unit, as in AMC's ResNet experiments;
* a grouped convolution that is not depthwise (``1 < groups < channels``) stops a chain: no kit family
  has one, and its groups would have to be cut evenly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

CONV, DEPTHWISE, LINEAR = "conv", "depthwise", "linear"
# Kit families whose channel boundaries this module knows; any other (e.g. a searched ``pathlevel`` cell
# network, whose widths are tied by its branches' merges) is refused rather than cut wrongly.
FAMILIES = ("vgg", "mobilenet", "resnet", "mlp")


@dataclass(frozen=True)
class Layer:
    """One convolution or linear layer at full width; ``in_unit``/``out_unit`` name the units that cut its
    input / output channels (``None``: fixed). ``in_hw``/``out_hw`` are its feature-map sizes (1×1 for linear)."""

    name: str
    kind: str
    c_in: int
    c_out: int
    kernel: int
    stride: int
    groups: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    bias: bool
    bn: str | None
    in_unit: int | None = None
    out_unit: int | None = None


@dataclass(frozen=True)
class Unit:
    """One channel boundary: ``producer``'s outputs (through ``followers``) feed ``consumer``'s inputs."""

    index: int
    producer: str
    followers: tuple[str, ...]
    consumer: str
    channels: int


@dataclass(frozen=True)
class Graph:
    """Every conv/linear layer of a model in forward order, and its prunable units."""

    family: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    units: tuple[Unit, ...]

    def layer(self, name: str) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)

    @property
    def full_counts(self) -> list[int]:
        return [u.channels for u in self.units]

    def dims(self, layer: Layer, counts: Sequence[int]) -> tuple[int, int]:
        """``(c_in, c_out)`` of ``layer`` when unit ``u`` keeps ``counts[u]`` channels."""
        c_in = counts[layer.in_unit] if layer.in_unit is not None else layer.c_in
        c_out = counts[layer.out_unit] if layer.out_unit is not None else layer.c_out
        return c_in, c_out

    def total(self, counts: Sequence[int], resource: Resource) -> float:
        """The resource (FLOPs, params, modelled latency) of the model pruned to ``counts``."""
        return resource.constant + sum(resource.per_layer(layer, *self.dims(layer, counts)) for layer in self.layers)

    def unit_layers(self, index: int) -> list[Layer]:
        """The layers whose size depends on unit ``index``."""
        return [layer for layer in self.layers if index in (layer.in_unit, layer.out_unit)]


# --- costs ----------------------------------------------------------------------------------------------


def layer_macs(layer: Layer, c_in: int, c_out: int) -> int:
    """Multiply-accumulates of one forward pass of one sample (what FlopCounterMode counts, halved)."""
    if layer.kind == LINEAR:
        return c_in * c_out
    groups = c_in if layer.kind == DEPTHWISE else layer.groups
    return layer.out_hw[0] * layer.out_hw[1] * layer.kernel * layer.kernel * (c_in // groups) * c_out


def layer_params(layer: Layer, c_in: int, c_out: int) -> int:
    """Weights, bias and the BatchNorm's scale and shift (running statistics are buffers, not parameters)."""
    if layer.kind == LINEAR:
        weights = c_in * c_out
    else:
        groups = c_in if layer.kind == DEPTHWISE else layer.groups
        weights = (c_in // groups) * c_out * layer.kernel * layer.kernel
    return weights + (c_out if layer.bias else 0) + (2 * c_out if layer.bn else 0)


@dataclass(frozen=True)
class Resource:
    """What the budget counts: a per-layer cost of ``(layer, c_in, c_out)`` plus a constant."""

    name: str
    per_layer: Callable[[Layer, int, int], float]
    constant: float = 0.0


FLOPS = Resource("flops", lambda layer, c_in, c_out: 2.0 * layer_macs(layer, c_in, c_out))
PARAMS = Resource("params", lambda layer, c_in, c_out: float(layer_params(layer, c_in, c_out)))


# --- finding the units --------------------------------------------------------------------------------

_Traced = tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]
_Pair = tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]


def _trace(model: nn.Module, input_shape: Sequence[int]) -> list[_Traced]:
    """Leaf modules in execution order with their input and output shapes (one sample, eval mode)."""
    seen: list[_Traced] = []
    hooks = []
    for name, module in model.named_modules():
        if not list(module.children()):
            hooks.append(
                module.register_forward_hook(
                    lambda m, inp, out, name=name: seen.append((name, m, tuple(inp[0].shape), tuple(out.shape)))
                )
            )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return seen


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def build_graph(model: nn.Module, arch: dict[str, Any]) -> Graph:
    """The layers and prunable units of a kit model (see the module docstring for what is prunable)."""
    if arch["name"] not in FAMILIES:
        raise ValueError(f"channel pruning supports {', '.join(FAMILIES)} models, not {arch['name']}")
    trace = _trace(model, arch["input_shape"])
    raw: list[dict[str, Any]] = []
    for i, (name, m, in_shape, out_shape) in enumerate(trace):
        if not isinstance(m, nn.Conv2d | nn.Linear):
            continue
        nxt = trace[i + 1][1] if i + 1 < len(trace) else None
        width = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        bn = trace[i + 1][0] if isinstance(nxt, nn.BatchNorm1d | nn.BatchNorm2d) and nxt.num_features == width else None
        if isinstance(m, nn.Conv2d):
            kind = DEPTHWISE if _is_depthwise(m) else CONV
            raw.append(
                {
                    "name": name,
                    "kind": kind,
                    "c_in": m.in_channels,
                    "c_out": m.out_channels,
                    "kernel": m.kernel_size[0],
                    "stride": m.stride[0],
                    "groups": m.groups,
                    "in_hw": (in_shape[2], in_shape[3]),
                    "out_hw": (out_shape[2], out_shape[3]),
                    "bias": m.bias is not None,
                    "bn": bn,
                }
            )
        else:
            raw.append(
                {
                    "name": name,
                    "kind": LINEAR,
                    "c_in": m.in_features,
                    "c_out": m.out_features,
                    "kernel": 1,
                    "stride": 1,
                    "groups": 1,
                    "in_hw": (1, 1),
                    "out_hw": (1, 1),
                    "bias": m.bias is not None,
                    "bn": bn,
                }
            )
    pairs = _resnet_pairs(model, raw) if arch["name"] == "resnet" else _chain_pairs(raw)
    units, in_unit, out_unit = [], {}, {}
    for index, (producer, followers, consumer) in enumerate(pairs):
        units.append(
            Unit(index, producer["name"], tuple(f["name"] for f in followers), consumer["name"], producer["c_out"])
        )
        out_unit[producer["name"]] = index
        in_unit[consumer["name"]] = index
        for f in followers:
            in_unit[f["name"]] = out_unit[f["name"]] = index
    layers = tuple(Layer(**r, in_unit=in_unit.get(r["name"]), out_unit=out_unit.get(r["name"])) for r in raw)
    return Graph(arch["name"], tuple(arch["input_shape"]), layers, tuple(units))


def _chain_pairs(raw: list[dict[str, Any]]) -> list[_Pair]:
    """Sequential families (vgg, mobilenet, mlp): each non-depthwise layer feeds the next one, through any
    depthwise layers between them; a grouped (non-depthwise) convolution breaks the chain."""
    pairs = []
    for i, producer in enumerate(raw):
        if producer["kind"] == DEPTHWISE or producer["groups"] > 1:
            continue
        followers, j = [], i + 1
        while j < len(raw) and raw[j]["kind"] == DEPTHWISE:
            followers.append(raw[j])
            j += 1
        if j < len(raw) and raw[j]["groups"] == 1:
            pairs.append((producer, followers, raw[j]))
    return pairs


def _resnet_pairs(model: nn.Module, raw: list[dict[str, Any]]) -> list[_Pair]:
    by_name = {r["name"]: r for r in raw}
    pairs = []
    for name, m in model.named_modules():
        if hasattr(m, "conv1") and hasattr(m, "conv2") and f"{name}.conv1" in by_name:
            pairs.append((by_name[f"{name}.conv1"], [], by_name[f"{name}.conv2"]))
    return pairs


# --- channel counts -----------------------------------------------------------------------------------


def min_count(channels: int, min_keep: float, round_to: int) -> int:
    """Fewest channels a unit may keep: ``ceil(min_keep · channels)``, up to a multiple of ``round_to``."""
    n = max(1, math.ceil(min_keep * channels - 1e-9))
    n = math.ceil(n / round_to) * round_to
    return min(n, channels)


def allowed_floor(value: float, channels: int, lowest: int, round_to: int) -> int:
    """The largest allowed count ≤ ``value`` (multiples of ``round_to``, or all channels), at least ``lowest``."""
    if value >= channels:
        return channels
    n = int(math.floor(value / round_to + 1e-9)) * round_to
    return max(lowest, min(n, channels))


def allowed_round(value: float, channels: int, lowest: int, round_to: int) -> int:
    """The allowed count nearest ``value`` (AMC rounds channel counts to multiples of 8)."""
    n = int(round(value / round_to)) * round_to
    if channels - value < abs(n - value):
        n = channels
    return max(lowest, min(n, channels))


# --- pruning ------------------------------------------------------------------------------------------


def channel_importance(model: nn.Module, unit: Unit) -> torch.Tensor:
    """L1 norm of the consumer's weights on each input channel: AMC's magnitude criterion."""
    w = model.get_submodule(unit.consumer).weight.detach()
    return w.abs().sum(dim=tuple(d for d in range(w.dim()) if d != 1))


def select_channels(model: nn.Module, graph: Graph, counts: Sequence[int]) -> list[torch.Tensor]:
    """Per unit, the indices (ascending) of the ``counts[u]`` channels with the largest L1 importance."""
    keep = []
    for unit, n in zip(graph.units, counts, strict=True):
        order = torch.argsort(channel_importance(model, unit), descending=True, stable=True)
        keep.append(torch.sort(order[:n]).values)
    return keep


def prune_model(model: nn.Module, graph: Graph, keep: Sequence[torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with only the ``keep[u]`` channels of each unit: every conv/linear layer and
    BatchNorm touched gets new tensors of the smaller shape, so the copy really is smaller and faster."""
    pruned = copy.deepcopy(model)
    for layer in graph.layers:
        in_idx = keep[layer.in_unit] if layer.in_unit is not None else None
        out_idx = keep[layer.out_unit] if layer.out_unit is not None else None
        if in_idx is None and out_idx is None:
            continue
        old = pruned.get_submodule(layer.name)
        _replace(pruned, layer.name, _cut_layer(old, layer, in_idx, out_idx))
        if layer.bn is not None and out_idx is not None:
            _replace(pruned, layer.bn, _cut_bn(pruned.get_submodule(layer.bn), out_idx))
    return pruned


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


@torch.no_grad()
def _cut_layer(old: nn.Module, layer: Layer, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> nn.Module:
    w = old.weight.detach()
    if out_idx is not None:
        w = w.index_select(0, out_idx)
    if in_idx is not None and layer.kind != DEPTHWISE:  # a depthwise weight is C×1×k×k: its outputs are its inputs
        w = w.index_select(1, in_idx)
    bias = old.bias.detach() if old.bias is not None else None
    if bias is not None and out_idx is not None:
        bias = bias.index_select(0, out_idx)
    new: nn.Module
    if isinstance(old, nn.Linear):
        new = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    else:
        groups = w.shape[0] if layer.kind == DEPTHWISE else old.groups
        new = nn.Conv2d(
            w.shape[1] * groups,
            w.shape[0],
            old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            dilation=old.dilation,
            groups=groups,
            bias=bias is not None,
            padding_mode=old.padding_mode,
        )
    new.weight.copy_(w)
    if bias is not None:
        new.bias.copy_(bias)
    return new.to(device=w.device, dtype=w.dtype)


@torch.no_grad()
def _cut_bn(old: nn.Module, idx: torch.Tensor) -> nn.Module:
    new = type(old)(
        len(idx), eps=old.eps, momentum=old.momentum, affine=old.affine, track_running_stats=old.track_running_stats
    )
    if old.affine:
        new.weight.copy_(old.weight.index_select(0, idx))
        new.bias.copy_(old.bias.index_select(0, idx))
    if old.track_running_stats:
        new.running_mean.copy_(old.running_mean.index_select(0, idx))
        new.running_var.copy_(old.running_var.index_select(0, idx))
        new.num_batches_tracked.copy_(old.num_batches_tracked)
    return new.to(device=old.running_mean.device if old.track_running_stats else idx.device)


def pruned_arch(arch: dict[str, Any], pruned: nn.Module) -> dict[str, Any]:
    """The kit architecture dict that :func:`search_spaces.kit.models.build_model` turns into ``pruned``'s shape."""
    from search_spaces.kit.models import complete_arch

    new = copy.deepcopy(complete_arch(arch))
    name = new["name"]
    if name == "vgg":
        widths = [m.out_channels for m in pruned.features.modules() if isinstance(m, nn.Conv2d)]
        new.pop("conv_widths", None)
        if new["convs_per_stage"] == 1:
            new["widths"] = widths
        else:
            new["conv_widths"] = widths
        new["fc"] = [m.out_features for m in pruned.classifier.modules() if isinstance(m, nn.Linear)][:-1]
    elif name == "mobilenet":
        new["stem"] = pruned.features.stem.conv.out_channels
        new["widths"] = [block.pw.conv.out_channels for n, block in pruned.features.named_children() if n != "stem"]
        new["width_mult"] = 1.0
    elif name == "mlp":
        new["hidden"] = [m.out_features for m in pruned.modules() if isinstance(m, nn.Linear)][:-1]
    elif name == "resnet":
        new["mid_widths"] = [m.conv1.out_channels for m in pruned.features.modules() if hasattr(m, "conv1")]
    return complete_arch(new)
