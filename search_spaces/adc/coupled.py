"""Coupled channels: the prunable units of a ``pathlevel`` network (tree cells in a residual or dense base).

In a tree-cell network most widths are tied. ``x + cell(x)`` adds the cell's output channel j to its input
channel j, an add merge averages its branches' channel j, an identity or pooling edge passes channel j through,
and a depthwise convolution's channel j sees only its input j: cutting channel j anywhere means cutting it in
every tensor tied to it, or the sums no longer line up. So the units are found channel by channel. A symbolic
walk of the network's forward pass gives every channel of every tensor an id; the ties above merge ids
(union-find); a convolution or linear layer starts fresh ids for its outputs. A *class* of merged ids is one
channel that is cut as a whole, from every layer that reads or writes it, and the pruned network computes the
same function on the channels that stay as a network with the dropped ones zeroed at their producers.

Classes that no cut may touch are *fixed*: the image's channels, the classifier's outputs, and every channel
a 3×3 group convolution (``gconv3x3``, 1 < groups < channels) reads or writes, since its groups would have to
be cut evenly and it would need a new group count. A fixed channel taints its whole class: a group
convolution at the root of a residual cell fixes that stage's residual width.

A *unit* (one AMC action) is every non-fixed class that occurs in exactly the same places: the same layers'
and parameter-free edges' inputs and outputs, the same number of times. All channels of a unit are ranked
together and each layer's width is a sum of unit counts (plus its fixed channels), so the cost model stays a
function of the counts and each unit keeps at least one channel (no branch ever loses all of its channels).
What that gives, for a resnet base: each stage's residual width is one unit (its transition, or the stem, and
every cell's output layers write it; every cell's input layers, the next transition or the classifier read
it), split into one unit per share where a concat merge or a split feeds different branches different
channels; the width between an edge and its child node is its own unit when the child's branches are layers
(a branch's inner width); the width inside a separable convolution is its input's (the depthwise stage
follows the unit that feeds it). For a densenet base each cell's output is its own unit (a concatenation ties
nothing), as are the stem's and each transition's.

Least-squares reconstruction refits every layer that reads a cut unit (a 1×1 or K×K convolution, a separable
convolution's pointwise stage, the classifier) against the unpruned network's outputs; depthwise stages
(nothing to refit: each channel is its own), group convolutions (never cut) and parameter-free edges are left
alone. BatchNorm re-estimation applies to every BatchNorm as for the other families.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from search_spaces.adc.graph import Graph, Layer, Slot, Unit, _keep_masks, _kept
from search_spaces.kit import pathlevel as P

Site = tuple[list[int], list[int]]  # the channel ids of a layer's (or parameter-free edge's) input and output


class _Classes:
    """Union-find over channel ids, with the ids no cut may touch."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.fixed: set[int] = set()

    def new(self, n: int, *, fixed: bool = False) -> list[int]:
        ids = list(range(len(self.parent), len(self.parent) + n))
        self.parent.extend(ids)
        if fixed:
            self.fixed.update(ids)
        return ids

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def tie(self, xs: Sequence[int], ys: Sequence[int]) -> None:
        for a, b in zip(xs, ys, strict=True):
            ra, rb = self.find(a), self.find(b)
            if ra != rb:
                self.parent[rb] = ra


def _walk(model: nn.Module, input_channels: int) -> tuple[_Classes, dict[str, Site], set[str]]:
    """The forward pass of a kit pathlevel network on channel ids: every conv/linear layer's and parameter-free
    edge's input and output ids, with the residual sums and add merges tied; and the depthwise layers."""
    classes, sites, depthwise = _Classes(), {}, set()

    def conv(name: str, m: nn.Conv2d, x: list[int]) -> list[int]:
        if m.groups == m.in_channels == m.out_channels:  # depthwise: channel j sees only its input j
            sites[name] = (x, x)
            depthwise.add(name)
            return x
        y = classes.new(m.out_channels)
        if m.groups > 1:
            classes.fixed.update(x + y)
        sites[name] = (x, y)
        return y

    def node(prefix: str, n: P.TreeNode, x: list[int]) -> list[int]:
        branches = n.branch_list()
        inputs, start = [], 0
        for b in branches:
            if n.split == "split":
                inputs.append(x[start : start + b.edge.c_in])
                start += b.edge.c_in
            else:
                inputs.append(x)
        pairs = enumerate(zip(branches, inputs, strict=True))
        outs = [branch(f"{prefix}.branches.{k}", b, inp) for k, (b, inp) in pairs]
        if n.merge == "concat":
            return [c for out in outs for c in out]
        for out in outs[1:]:
            classes.tie(outs[0], out)
        return outs[0]

    def branch(prefix: str, b: P.Branch, x: list[int]) -> list[int]:
        edge = b.edge
        if isinstance(edge, P.SepConvOp):
            y = conv(f"{prefix}.edge.pw", edge.pw, conv(f"{prefix}.edge.dw", edge.dw, x))
        elif isinstance(edge, P.ConvOp):
            y = conv(f"{prefix}.edge.conv", edge.conv, x)
        else:  # identity or pooling: every channel passes through
            sites[f"{prefix}.edge"] = (x, x)
            y = x
        return node(f"{prefix}.child", b.child, y) if b.child is not None else y

    x = classes.new(input_channels, fixed=True)
    for name, block in model.get_submodule("features").named_children():
        prefix = f"features.{name}"
        if isinstance(block, P.ResidualCellBlock):
            classes.tie(x, node(f"{prefix}.cell", block.cell, x))
        elif isinstance(block, P.DenseCellLayer):
            x = x + node(f"{prefix}.cell", block.cell, x)
        else:  # the stem or a transition: conv, BatchNorm, ReLU (and pooling)
            for sub, m in block.named_modules(prefix=prefix):
                if isinstance(m, nn.Conv2d):
                    x = conv(sub, m, x)
    classifier = model.get_submodule("classifier")
    if not isinstance(classifier, nn.Linear):
        raise ValueError("a pathlevel network ends in one linear classifier")
    sites["classifier"] = (x, classes.new(classifier.out_features, fixed=True))
    return classes, sites, depthwise


def coupled_graph(model: nn.Module, arch: dict[str, Any], raw: list[dict[str, Any]]) -> Graph:
    """The layers (``raw``: every conv/linear layer's shape, as :func:`.graph.build_graph` traced them) and the
    coupled units of a kit pathlevel network (see the module docstring)."""
    classes, sites, depthwise = _walk(model, arch["input_shape"][0])
    missing = [r["name"] for r in raw if r["name"] not in sites]
    if missing:
        raise ValueError(f"not a kit pathlevel network: no channel map for {', '.join(missing)}")
    find = classes.find
    fixed = {find(v) for v in classes.fixed}
    while True:
        occurs: dict[int, Counter[tuple[str, int]]] = {}
        for name, (ins, outs) in sites.items():
            for side, ids in enumerate((ins, outs)):
                for v in ids:
                    occurs.setdefault(find(v), Counter())[(name, side)] += 1
        # Units in forward order of their first producer; a unit's channels in that producer's output order.
        unit_of: dict[frozenset[tuple[tuple[str, int], int]], int] = {}
        members: list[list[int]] = []
        seen: set[int] = set()
        for r in raw:
            for v in sites[r["name"]][1]:
                root = find(v)
                if root in fixed:
                    continue
                key = frozenset(occurs[root].items())
                if key not in unit_of:
                    unit_of[key] = len(members)
                    members.append([])
                if root not in seen:
                    seen.add(root)
                    members[unit_of[key]].append(root)
        slot = {root: (u, k) for u, roots in enumerate(members) for k, root in enumerate(roots)}
        maps = {
            name: (tuple(slot.get(find(v)) for v in ins), tuple(slot.get(find(v)) for v in outs))
            for name, (ins, outs) in sites.items()
        }
        roles = _roles(maps, [r["name"] for r in raw], depthwise, len(members))
        orphans = [u for u, (producers, _, consumers) in enumerate(roles) if not producers or not consumers]
        if not orphans:  # (cannot happen in a kit network: every channel is written by a layer and read by one)
            break
        fixed.update(root for u in orphans for root in members[u])
    layers = tuple(_layer(r, maps[r["name"]], members) for r in raw)
    units = []
    for u, (producers, followers, consumers) in enumerate(roles):
        units.append(
            Unit(
                u,
                producers[0],
                tuple(followers),
                consumers[0],
                len(members[u]),
                tuple(producers),
                tuple(consumers),
                _label(producers[0], maps[producers[0]][1], u),
            )
        )
    labels = Counter(unit.name for unit in units)
    if max(labels.values(), default=1) > 1:  # never expected; reports key policies by unit name
        units = [replace(unit, label=f"{unit.name}#{unit.index}") for unit in units]
    return Graph("pathlevel", tuple(arch["input_shape"]), layers, tuple(units), maps)


def _roles(
    maps: dict[str, tuple[tuple[Slot, ...], tuple[Slot, ...]]], names: list[str], depthwise: set[str], n_units: int
) -> list[tuple[list[str], list[str], list[str]]]:
    """Per unit, in forward order: the layers writing it, the depthwise ones passing it on, the layers reading it
    (a layer both reads and writes a unit when a residual sum ties its output to its input)."""
    roles: list[tuple[list[str], list[str], list[str]]] = [([], [], []) for _ in range(n_units)]
    for name in names:
        ins, outs = maps[name]
        in_units = {s[0] for s in ins if s is not None}
        out_units = {s[0] for s in outs if s is not None}
        for u in sorted(in_units | out_units):
            if name in depthwise:
                roles[u][1].append(name)
            else:
                if u in out_units:
                    roles[u][0].append(name)
                if u in in_units:
                    roles[u][2].append(name)
    return roles


def _layer(r: dict[str, Any], maps: tuple[tuple[Slot, ...], tuple[Slot, ...]], members: list[list[int]]) -> Layer:
    def parts(slots: tuple[Slot, ...]) -> tuple[int, tuple[int, ...]]:
        counts = Counter(s[0] for s in slots if s is not None)
        units = tuple(u for u in sorted(counts) for _ in range(counts[u] // len(members[u])))
        return sum(1 for s in slots if s is None), units

    (in_fixed, in_units), (out_fixed, out_units) = parts(maps[0]), parts(maps[1])
    single_in = in_units[0] if len(in_units) == 1 and in_fixed == 0 else None
    single_out = out_units[0] if len(out_units) == 1 and out_fixed == 0 else None
    return Layer(
        **r,
        in_unit=single_in,
        out_unit=single_out,
        in_fixed=in_fixed,
        in_units=in_units,
        out_fixed=out_fixed,
        out_units=out_units,
    )


def _label(producer: str, outs: tuple[Slot, ...], u: int) -> str:
    """``producer`` alone when the unit is all of its outputs, else with the positions, e.g. ``…conv[0:4]``."""
    positions = [p for p, s in enumerate(outs) if s is not None and s[0] == u]
    if len(positions) == len(outs):
        return ""
    if positions == list(range(positions[0], positions[-1] + 1)):
        return f"{producer}[{positions[0]}:{positions[-1] + 1}]"
    return f"{producer}[{len(positions)} of {len(outs)}]"


def fix_widths(pruned: nn.Module, graph: Graph, keep: Sequence[torch.Tensor]) -> None:
    """After the tensors are cut: every edge's and node's record of its widths (``c_in``/``c_out``, which also
    sizes a split) set to what the cut left, so the network runs and :func:`.pathlevel.pruned_widths` reads it."""
    masks = _keep_masks(graph.units, keep)

    def fix(node: P.TreeNode, prefix: str) -> None:
        for k, b in enumerate(node.branch_list()):
            edge = b.edge
            if isinstance(edge, P.SepConvOp):
                edge.c_in, edge.c_out = edge.dw.in_channels, edge.pw.out_channels
            elif isinstance(edge, P.ConvOp):
                edge.c_in, edge.c_out = edge.conv.in_channels, edge.conv.out_channels
            else:
                slots = graph.maps[f"{prefix}.branches.{k}.edge"][0]
                kept = _kept(slots, masks, keep)
                edge.c_in = edge.c_out = len(slots) if kept is None else len(kept)
            if b.child is not None:
                fix(b.child, f"{prefix}.branches.{k}.child")
        branches = node.branch_list()
        ins = [b.edge.c_in for b in branches]
        outs = [b.child.c_out if b.child is not None else b.edge.c_out for b in branches]
        node.c_in = sum(ins) if node.split == "split" else ins[0]
        node.c_out = sum(outs) if node.merge == "concat" else outs[0]

    for name, module in pruned.named_modules():
        if isinstance(module, P.ResidualCellBlock | P.DenseCellLayer):
            fix(module.cell, f"{name}.cell")
