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

A ``pathlevel`` network (tree cells in a residual or dense base) is different: there a residual sum or an add
merge ties channels across many layers, and cutting them identically everywhere is what makes its main widths
prunable at all. :mod:`.coupled` finds those ties channel by channel; its units have several producers and
consumers, and a layer's inputs may hold several units (see :class:`Layer` and :class:`Unit`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

CONV, DEPTHWISE, LINEAR = "conv", "depthwise", "linear"
Slot = tuple[int, int] | None  # a channel position: (unit, channel within the unit), or None when fixed
# Kit families whose channel boundaries this module knows (any other is refused rather than cut wrongly);
# ``pathlevel`` (a searched tree-cell network, whose widths its merges and residual sums tie) goes through
# :mod:`.coupled`.
FAMILIES = ("vgg", "mobilenet", "resnet", "mlp", "pathlevel")


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
    # Coupled channels (the pathlevel family, :mod:`.coupled`): a layer's inputs or outputs may hold several
    # units' channels and some fixed ones; ``in_fixed`` is then set and c_in = in_fixed + Σ counts[u] over
    # ``in_units`` (a unit listed twice appears twice, e.g. a DenseNet input that holds a tied channel twice).
    in_fixed: int | None = None
    in_units: tuple[int, ...] = ()
    out_fixed: int | None = None
    out_units: tuple[int, ...] = ()

    def in_parts(self) -> tuple[int, tuple[int, ...]]:
        """(fixed input channels, the units that cut the others)."""
        if self.in_fixed is not None:
            return self.in_fixed, self.in_units
        return (0, (self.in_unit,)) if self.in_unit is not None else (self.c_in, ())

    def out_parts(self) -> tuple[int, tuple[int, ...]]:
        """(fixed output channels, the units that cut the others)."""
        if self.out_fixed is not None:
            return self.out_fixed, self.out_units
        return (0, (self.out_unit,)) if self.out_unit is not None else (self.c_out, ())


@dataclass(frozen=True)
class Unit:
    """One channel boundary: ``producer``'s outputs (through ``followers``) feed ``consumer``'s inputs.

    A unit of coupled channels (:mod:`.coupled`) has several producers (every layer writing a channel that a
    residual sum or add merge ties) and consumers; ``producer`` / ``consumer`` are then the first of them."""

    index: int
    producer: str
    followers: tuple[str, ...]
    consumer: str
    channels: int
    producers: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    label: str = ""

    @property
    def name(self) -> str:
        """What reports call the unit: its producer, or which of its channels when it holds only some."""
        return self.label or self.producer


@dataclass(frozen=True)
class Graph:
    """Every conv/linear layer of a model in forward order, and its prunable units."""

    family: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    units: tuple[Unit, ...]
    # Coupled channels only: per layer (and parameter-free edge) name, which (unit, channel) each of its input
    # and output positions is, ``None`` for a fixed one.
    maps: dict[str, tuple[tuple[Slot, ...], tuple[Slot, ...]]] = field(default_factory=dict, compare=False)

    def layer(self, name: str) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)

    @property
    def full_counts(self) -> list[int]:
        return [u.channels for u in self.units]

    @property
    def refit_layers(self) -> tuple[str, ...]:
        """The layers the least-squares reconstruction refits: each unit's consumer, or with coupled channels
        every layer (never a depthwise or grouped one) whose inputs some unit cuts, in forward order."""
        if not self.maps:
            return tuple(u.consumer for u in self.units)
        consumers = {name for u in self.units for name in u.consumers}
        return tuple(layer.name for layer in self.layers if layer.name in consumers)

    def dims(self, layer: Layer, counts: Sequence[int]) -> tuple[int, int]:
        """``(c_in, c_out)`` of ``layer`` when unit ``u`` keeps ``counts[u]`` channels."""
        (fixed_in, units_in), (fixed_out, units_out) = layer.in_parts(), layer.out_parts()
        return fixed_in + sum(counts[u] for u in units_in), fixed_out + sum(counts[u] for u in units_out)

    def kept_positions(
        self, name: str, keep: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The input and output positions of layer (or coupled parameter-free edge) ``name`` that stay when unit
        ``u`` keeps channels ``keep[u]``; ``None`` where none is cut."""
        if name in self.maps:
            ins, outs = self.maps[name]
            masks = _keep_masks(self.units, keep)
            return _kept(ins, masks, keep), _kept(outs, masks, keep)
        layer = self.layer(name)
        in_idx = keep[layer.in_unit] if layer.in_unit is not None else None
        out_idx = keep[layer.out_unit] if layer.out_unit is not None else None
        return (
            None if in_idx is None or len(in_idx) == layer.c_in else in_idx,
            None if out_idx is None or len(out_idx) == layer.c_out else out_idx,
        )

    def total(self, counts: Sequence[int], resource: Resource) -> float:
        """The resource (FLOPs, params, modelled latency) of the model pruned to ``counts``."""
        return resource.constant + sum(resource.per_layer(layer, *self.dims(layer, counts)) for layer in self.layers)

    def unit_layers(self, index: int) -> list[Layer]:
        """The layers whose size depends on unit ``index``."""
        return [layer for layer in self.layers if index in layer.in_parts()[1] or index in layer.out_parts()[1]]


def _keep_masks(units: Sequence[Unit], keep: Sequence[torch.Tensor]) -> list[list[bool]]:
    masks = []
    for unit, idx in zip(units, keep, strict=True):
        mask = [False] * unit.channels
        for k in idx.tolist():
            mask[k] = True
        masks.append(mask)
    return masks


def _kept(slots: Sequence[Slot], masks: list[list[bool]], keep: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """Positions of ``slots`` that stay (fixed ones always do); ``None`` when all stay."""
    stay = [p for p, slot in enumerate(slots) if slot is None or masks[slot[0]][slot[1]]]
    if len(stay) == len(slots):
        return None
    return torch.tensor(stay, dtype=torch.long, device=keep[0].device if keep else None)


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
    if arch["name"] == "pathlevel":
        from search_spaces.adc.coupled import coupled_graph

        return coupled_graph(model, arch, raw)
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
    pairs: list[_Pair] = []
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
    w = weight_layer(model, unit.consumer).weight.detach()
    return w.abs().sum(dim=tuple(d for d in range(w.dim()) if d != 1))


def select_channels(model: nn.Module, graph: Graph, counts: Sequence[int]) -> list[torch.Tensor]:
    """Per unit, the indices (ascending) of the ``counts[u]`` channels with the largest L1 importance."""
    keep = []
    for unit, n in zip(graph.units, counts, strict=True):
        importance = coupled_importance(model, graph, unit) if unit.consumers else channel_importance(model, unit)
        order = torch.argsort(importance, descending=True, stable=True)
        keep.append(torch.sort(order[:n]).values)
    return keep


def coupled_importance(model: nn.Module, graph: Graph, unit: Unit) -> torch.Tensor:
    """A coupled unit's channels ranked by all its consumers at once: per consumer, the L1 norm of its weights
    on each channel (summed where a channel is more than one of its inputs), as a share of that consumer's total
    on the unit so that a large layer does not outvote a small one; the shares are added up."""
    total = torch.zeros(unit.channels, dtype=torch.float64)
    for name in unit.consumers:
        w = weight_layer(model, name).weight.detach()
        l1 = w.abs().sum(dim=tuple(d for d in range(w.dim()) if d != 1)).double().cpu()
        positions = [(p, slot[1]) for p, slot in enumerate(graph.maps[name][0]) if slot and slot[0] == unit.index]
        share = torch.zeros(unit.channels, dtype=torch.float64)
        share.index_add_(0, torch.tensor([k for _, k in positions]), l1[[p for p, _ in positions]])
        total += share / share.sum() if share.sum() > 0 else share
    return total


def prune_model(model: nn.Module, graph: Graph, keep: Sequence[torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with only the ``keep[u]`` channels of each unit: every conv/linear layer and
    BatchNorm touched gets new tensors of the smaller shape, so the copy really is smaller and faster."""
    pruned = copy.deepcopy(model)
    for layer in graph.layers:
        in_idx, out_idx = graph.kept_positions(layer.name, keep)
        if in_idx is None and out_idx is None:
            continue
        old = weight_layer(pruned, layer.name)
        _replace(pruned, layer.name, _cut_layer(old, layer, in_idx, out_idx))
        if layer.bn is not None and out_idx is not None:
            _replace(pruned, layer.bn, _cut_bn(batch_norm(pruned, layer.bn), out_idx))
    if graph.family == "pathlevel":  # the cells' own record of their widths (split sizes, edges' c_in / c_out)
        from search_spaces.adc.coupled import fix_widths

        fix_widths(pruned, graph, keep)
    return pruned


def weight_layer(model: nn.Module, name: str) -> nn.Conv2d | nn.Linear:
    """Submodule ``name`` of ``model``, which the graph found to be a convolution or linear layer."""
    module = model.get_submodule(name)
    if not isinstance(module, nn.Conv2d | nn.Linear):
        raise TypeError(f"{name} is a {type(module).__name__}, not a Conv2d or Linear layer")
    return module


def batch_norm(model: nn.Module, name: str) -> _BatchNorm:
    """Submodule ``name`` of ``model``, which the graph found to be a BatchNorm."""
    module = model.get_submodule(name)
    if not isinstance(module, _BatchNorm):
        raise TypeError(f"{name} is a {type(module).__name__}, not a BatchNorm")
    return module


def conv_layer(model: nn.Module, name: str) -> nn.Conv2d:
    module = model.get_submodule(name)
    if not isinstance(module, nn.Conv2d):
        raise TypeError(f"{name} is a {type(module).__name__}, not a Conv2d")
    return module


def _pair(size: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d's kernel size, stride, padding or dilation (torch types them ``tuple[int, ...]``; they have 2)."""
    first, second = size
    return first, second


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


@torch.no_grad()
def _cut_layer(
    old: nn.Conv2d | nn.Linear, layer: Layer, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None
) -> nn.Module:
    w = old.weight.detach()
    if out_idx is not None:
        w = w.index_select(0, out_idx)
    if in_idx is not None and layer.kind != DEPTHWISE:  # a depthwise weight is C×1×k×k: its outputs are its inputs
        w = w.index_select(1, in_idx)
    bias = old.bias.detach() if old.bias is not None else None
    if bias is not None and out_idx is not None:
        bias = bias.index_select(0, out_idx)
    new: nn.Conv2d | nn.Linear
    if isinstance(old, nn.Linear):
        new = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    else:
        groups = w.shape[0] if layer.kind == DEPTHWISE else old.groups
        new = nn.Conv2d(
            w.shape[1] * groups,
            w.shape[0],
            _pair(old.kernel_size),
            stride=_pair(old.stride),
            padding=old.padding if isinstance(old.padding, str) else _pair(old.padding),
            dilation=_pair(old.dilation),
            groups=groups,
            bias=bias is not None,
            padding_mode=old.padding_mode,
        )
    new.weight.copy_(w)
    if bias is not None:
        not_none(new.bias, "the new layer's bias").copy_(bias)
    return new.to(device=w.device, dtype=w.dtype)


@torch.no_grad()
def _cut_bn(old: _BatchNorm, idx: torch.Tensor) -> nn.Module:
    new = type(old)(
        len(idx), eps=old.eps, momentum=old.momentum, affine=old.affine, track_running_stats=old.track_running_stats
    )
    if old.affine:
        new.weight.copy_(old.weight.index_select(0, idx))
        new.bias.copy_(old.bias.index_select(0, idx))
    if not old.track_running_stats:
        return new.to(device=idx.device)
    (mean, var, batches), (new_mean, new_var, new_batches) = _running_stats(old), _running_stats(new)
    new_mean.copy_(mean.index_select(0, idx))
    new_var.copy_(var.index_select(0, idx))
    new_batches.copy_(batches)
    return new.to(device=mean.device)


def _running_stats(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Running mean, running variance and batch count of a BatchNorm that tracks them."""
    return (
        not_none(bn.running_mean, "running mean"),
        not_none(bn.running_var, "running variance"),
        not_none(bn.num_batches_tracked, "batch count"),
    )


def not_none(tensor: torch.Tensor | None, what: str) -> torch.Tensor:
    """``tensor``, which torch types as optional (a bias, a BatchNorm's running statistics) but which is here."""
    if tensor is None:
        raise ValueError(f"the layer has no {what}")
    return tensor


def pruned_arch(arch: dict[str, Any], pruned: nn.Module) -> dict[str, Any]:
    """The kit architecture dict that :func:`search_spaces.kit.models.build_model` turns into ``pruned``'s shape."""
    from search_spaces.kit.models import complete_arch

    new = copy.deepcopy(complete_arch(arch))
    name = new["name"]
    if name == "vgg":
        widths = [m.out_channels for m in pruned.get_submodule("features").modules() if isinstance(m, nn.Conv2d)]
        new.pop("conv_widths", None)
        if new["convs_per_stage"] == 1:
            new["widths"] = widths
        else:
            new["conv_widths"] = widths
        classifier = pruned.get_submodule("classifier")
        new["fc"] = [m.out_features for m in classifier.modules() if isinstance(m, nn.Linear)][:-1]
    elif name == "mobilenet":
        features = pruned.get_submodule("features")
        new["stem"] = conv_layer(features, "stem.conv").out_channels
        new["widths"] = [
            conv_layer(block, "pw.conv").out_channels for n, block in features.named_children() if n != "stem"
        ]
        new["width_mult"] = 1.0
    elif name == "mlp":
        new["hidden"] = [m.out_features for m in pruned.modules() if isinstance(m, nn.Linear)][:-1]
    elif name == "resnet":
        modules = pruned.get_submodule("features").modules()
        new["mid_widths"] = [conv_layer(m, "conv1").out_channels for m in modules if hasattr(m, "conv1")]
    elif name == "pathlevel":
        from search_spaces.kit.pathlevel import pruned_widths

        new = pruned_widths(new, pruned)
    return complete_arch(new)
