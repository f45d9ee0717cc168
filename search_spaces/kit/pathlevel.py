"""Tree cells as PyTorch modules, inside a small residual or dense base network built from JSON.

Edges are post-activation layers (weight → BatchNorm → ReLU) or parameter-free ops. Every cell's input is the
output of a ReLU, a sum or concatenation of such outputs, or a pooling of them, so it is non-negative; that is
what lets an identity-initialised layer ending in ReLU act as the identity (identity → layer, Net2DeeperNet).

The arch dict (also the kit's ``"pathlevel"`` model family) is::

    {"input_shape": [C, H, W], "num_classes": K, "base": "resnet" | "densenet", "stem": 16,
     "widths": [16, 32], "blocks_per_stage": 1,      # resnet: block = x + cell(x), cells C → C
     "growth": 12, "dense_layers": [3, 3],           # densenet: layer = concat(x, cell(x)), cells C → growth
     "tree": <cell JSON, see .tree_cells>}

Every block holds its own cell with its own weights; all cells share the tree.

A channel-pruned network (``adc_prune``) has widths the stage pattern cannot say; three optional keys, absent
from the defaults (so existing arch dicts are unchanged), carry them: ``edge_widths`` (one list per cell, in
forward order, of every edge's ``[in, out]`` channels depth-first: an edge, its child's edges, the next branch;
a node's input and output widths follow from its split and merge), ``stem_transition`` (resnet: the first stage
starts with a transition convolution although ``stem`` equals its width) and ``trans_widths`` (densenet: each
transition's output width instead of half its input). :func:`pruned_widths` reads them off a built network.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, TypeAlias

import torch
from torch import nn

from search_spaces.kit import tree_cells as T

DEFAULT_ARCH: dict[str, Any] = {
    "base": "resnet",
    "stem": 16,
    "widths": [16, 32],
    "blocks_per_stage": 1,
    "growth": 12,
    "dense_layers": [3, 3],
    "tree": T.leaf("sep3x3"),
}


def gconv_groups(c_in: int, c_out: int) -> int:
    """Groups of a 3×3 group convolution: up to 4, dividing both widths."""
    return math.gcd(math.gcd(c_in, c_out), 4)


class ConvOp(nn.Sequential):
    """``kind`` ∈ conv1x1, gconv3x3: convolution (no bias), BatchNorm, ReLU."""

    conv: nn.Conv2d  # the submodules, declared for the type checker (nn.Module.__getattr__ is untyped)
    bn: nn.BatchNorm2d

    def __init__(self, kind: str, c_in: int, c_out: int) -> None:
        k = 1 if kind == "conv1x1" else 3
        groups = gconv_groups(c_in, c_out) if kind == "gconv3x3" else 1
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False),
                bn=nn.BatchNorm2d(c_out),
                relu=nn.ReLU(),
            )
        )
        self.kind, self.c_in, self.c_out = kind, c_in, c_out


class SepConvOp(nn.Sequential):
    """Depthwise-separable K×K convolution: depthwise K×K, pointwise 1×1, BatchNorm, ReLU."""

    dw: nn.Conv2d
    pw: nn.Conv2d
    bn: nn.BatchNorm2d

    def __init__(self, kind: str, c_in: int, c_out: int) -> None:
        k = int(kind[3])
        super().__init__(
            OrderedDict(
                dw=nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False),
                pw=nn.Conv2d(c_in, c_out, 1, bias=False),
                bn=nn.BatchNorm2d(c_out),
                relu=nn.ReLU(),
            )
        )
        self.kind, self.c_in, self.c_out = kind, c_in, c_out


class ParamFreeOp(nn.Module):
    """identity, 3×3 max pooling or 3×3 average pooling (stride 1, same size)."""

    def __init__(self, kind: str, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_in != c_out:
            raise T.TreeError(f"{kind} cannot map {c_in} to {c_out} channels")
        self.kind, self.c_in, self.c_out = kind, c_in, c_out
        if kind == "maxpool3x3":
            self.pool: nn.Module = nn.MaxPool2d(3, stride=1, padding=1)
        elif kind == "avgpool3x3":
            self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        else:
            self.pool = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


Edge: TypeAlias = ConvOp | SepConvOp | ParamFreeOp  # what make_edge builds: every edge has kind, c_in, c_out


def make_edge(kind: str, c_in: int, c_out: int) -> Edge:
    """A freshly initialised edge of primitive ``kind`` (see :data:`.tree.PRIMITIVES`)."""
    if kind in ("conv1x1", "gconv3x3"):
        return ConvOp(kind, c_in, c_out)
    if kind.startswith("sep"):
        return SepConvOp(kind, c_in, c_out)
    if kind in T.CHANNELWISE:
        return ParamFreeOp(kind, c_in, c_out)
    raise T.TreeError(f"unknown primitive {kind!r}")


class Branch(nn.Module):
    """An edge followed by an optional child node (declared in forward order, for hooks and pruning)."""

    def __init__(self, edge: Edge, child: TreeNode | None) -> None:
        super().__init__()
        self.edge = edge
        self.child = child

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.edge(x)
        return self.child(x) if self.child is not None else x


class TreeNode(nn.Module):
    """A node of a tree cell: split the input among the branches, run them, merge (mean or concat)."""

    def __init__(self, split: str | None, merge: str | None, c_in: int, c_out: int, branches: list[Branch]) -> None:
        super().__init__()
        self.split, self.merge, self.c_in, self.c_out = split, merge, c_in, c_out
        self.branches = nn.ModuleList(branches)

    def branch(self, i: int) -> Branch:
        """Branch ``i``, typed (``self.branches`` is a plain ModuleList of :class:`Branch` modules)."""
        b = self.branches[i]
        if not isinstance(b, Branch):
            raise TypeError(f"branch {i} is a {type(b).__name__}, not a Branch")
        return b

    def branch_list(self) -> list[Branch]:
        return [self.branch(i) for i in range(len(self.branches))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split == "split":  # each edge takes its share (split_list of c_in unless channel-pruned)
            sizes = [b.edge.c_in for b in self.branch_list()]
            inputs = list(torch.split(x, sizes, dim=1))
        else:
            inputs = [x] * len(self.branches)
        outs = [b(inp) for b, inp in zip(self.branches, inputs, strict=True)]
        if self.merge == "concat":
            return torch.cat(outs, dim=1)
        if self.merge == "add":
            # Mean = each branch scaled by 1/N, then summed: replicate-and-add keeps the function.
            return torch.stack(outs).sum(dim=0) / len(outs)
        return outs[0]

    def to_json(self) -> T.Tree:
        return {
            "split": self.split,
            "merge": self.merge,
            "branches": [
                {"op": b.edge.kind, "child": b.child.to_json() if b.child is not None else None}
                for b in self.branch_list()
            ],
        }


def build_node(node: T.Tree, c_in: int, c_out: int, pairs: list[list[int]] | None = None) -> TreeNode:
    """A freshly initialised cell for the JSON ``node`` mapping ``c_in`` to ``c_out`` channels; ``pairs``, when
    given, are its edges' explicit ``[in, out]`` widths in depth-first order (a channel-pruned cell, checked by
    :func:`.tree_cells.check_widths`; ``c_out`` must then be what they produce)."""
    if pairs is None:
        pairs = T.edge_widths(node, c_in, c_out)
    elif T.check_widths(node, c_in, iter(pairs)) != c_out:
        raise T.TreeError(f"the edge widths do not map {c_in} to {c_out} channels")
    return _build_node(node, c_in, iter(pairs))


def _build_node(node: T.Tree, c_in: int, pairs: Iterator[list[int]]) -> TreeNode:
    branches = []
    for b in node["branches"]:
        i, o = next(pairs)
        child = _build_node(b["child"], o, pairs) if b["child"] is not None else None
        branches.append(Branch(make_edge(b["op"], i, o), child))
    outs = [br.child.c_out if br.child is not None else br.edge.c_out for br in branches]
    c_out = sum(outs) if node["merge"] == "concat" else outs[0]
    return TreeNode(node["split"], node["merge"], c_in, c_out, branches)


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            bn=nn.BatchNorm2d(c_out),
            relu=nn.ReLU(),
        )
    )


class ResidualCellBlock(nn.Module):
    """``x + cell(x)`` (PyramidNet-style block whose residual branch is the tree cell)."""

    def __init__(self, tree: T.Tree, channels: int, pairs: list[list[int]] | None = None) -> None:
        super().__init__()
        self.cell = build_node(tree, channels, channels, pairs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cell(x)


class DenseCellLayer(nn.Module):
    """``concat(x, cell(x))`` (DenseNet layer whose composite function is the tree cell)."""

    def __init__(self, tree: T.Tree, channels: int, growth: int, pairs: list[list[int]] | None = None) -> None:
        super().__init__()
        if pairs is not None:  # a channel-pruned layer adds what its edges produce
            growth = T.check_widths(tree, channels, iter(pairs))
        self.cell = build_node(tree, channels, growth, pairs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.cell(x)], dim=1)


def complete(arch: dict[str, Any]) -> dict[str, Any]:
    """``arch`` with :data:`DEFAULT_ARCH` filled in and checked (raises :class:`.tree.TreeError`)."""
    full = {**DEFAULT_ARCH, **arch}
    if full["base"] not in ("resnet", "densenet"):
        raise T.TreeError("base must be resnet or densenet")
    for key in ("stem", "blocks_per_stage", "growth"):
        value = full[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
            raise T.TreeError(f"{key} must be an integer in 1..4096")
    for key in ("widths", "dense_layers"):
        value = full[key]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in value)
        ):
            raise T.TreeError(f"{key} must be a non-empty list of integers in 1..4096")
    T.validate(full["tree"], max_depth=3)
    _check_pruned_widths(full)
    layout(full)  # every cell's widths fit its tree (and the explicit widths, if any, fit together)
    return full


def _check_pruned_widths(arch: dict[str, Any]) -> None:
    """The optional keys of a channel-pruned network (see the module docstring) are well-formed."""
    if "stem_transition" in arch and (arch["base"] != "resnet" or not isinstance(arch["stem_transition"], bool)):
        raise T.TreeError("stem_transition is true or false, and only for the resnet base")
    if "trans_widths" in arch:
        value, stages = arch["trans_widths"], len(arch["dense_layers"])
        if (
            arch["base"] != "densenet"
            or not isinstance(value, list)
            or len(value) != stages - 1
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in value)
        ):
            raise T.TreeError(f"trans_widths (densenet only) lists one width in 1..4096 per transition ({stages - 1})")
    if "edge_widths" in arch:
        value, n_cells = arch["edge_widths"], _n_cells(arch)
        edges = T.count_edges(arch["tree"])
        if (
            not isinstance(value, list)
            or len(value) != n_cells
            or not all(isinstance(cell, list) and len(cell) == edges for cell in value)
        ):
            raise T.TreeError(f"edge_widths lists, for each of the {n_cells} cells, one [in, out] per edge ({edges})")


def _n_cells(arch: dict[str, Any]) -> int:
    if arch["base"] == "resnet":
        return len(arch["widths"]) * arch["blocks_per_stage"]
    return sum(arch["dense_layers"])


def layout(arch: dict[str, Any]) -> tuple[list[tuple[int, int, list[list[int]]]], dict[int, int]]:
    """Every cell's ``(in, out, edge widths)`` in forward order, and the output width of each stage's transition
    (by stage number; a resnet's first stage has one only when it changes the width or ``stem_transition``).

    Default widths come from the stage widths (resnet) or the growth rate and halving transitions (densenet);
    a channel-pruned network's explicit ``edge_widths`` / ``trans_widths`` replace them. Raises
    :class:`.tree.TreeError` when a cell's widths do not fit its tree or its block."""
    tree, explicit = arch["tree"], arch.get("edge_widths")
    cells_: list[tuple[int, int, list[list[int]]]] = []
    trans: dict[int, int] = {}

    def cell(c_in: int, c_out: int) -> int:
        if explicit is None:
            T.validate(tree, c_in, c_out, max_depth=3)
            cells_.append((c_in, c_out, T.edge_widths(tree, c_in, c_out)))
            return c_out
        pairs = explicit[len(cells_)]
        out = T.check_widths(tree, c_in, iter(pairs))
        cells_.append((c_in, out, [list(p) for p in pairs]))
        return out

    c = arch["stem"]
    if arch["base"] == "resnet":
        for s, width in enumerate(arch["widths"], start=1):
            if width != c or s > 1 or arch.get("stem_transition"):
                trans[s] = c = width
            for _ in range(arch["blocks_per_stage"]):
                if cell(c, c) != c:
                    raise T.TreeError(f"a residual cell must map its {c} channels to {c}")
    else:
        for s, count in enumerate(arch["dense_layers"], start=1):
            if s > 1:
                trans[s] = c = arch["trans_widths"][s - 2] if "trans_widths" in arch else max(1, c // 2)
            for _ in range(count):
                c += cell(c, arch["growth"])
    return cells_, trans


def cell_widths(arch: dict[str, Any]) -> list[tuple[int, int]]:
    """``(in, out)`` channels of every cell of the network, in forward order."""
    return [(c_in, c_out) for c_in, c_out, _ in layout(arch)[0]]


def build_network(arch: dict[str, Any]) -> nn.Module:
    """The base network of ``arch`` with a freshly initialised cell in every block."""
    arch = complete(arch)
    c_img, size = arch["input_shape"][0], min(arch["input_shape"][1:])
    tree = arch["tree"]
    cell_plan, transitions = layout(arch)
    pairs = iter(edges for _, _, edges in cell_plan)
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=conv_bn_relu(c_img, arch["stem"]))
    c = arch["stem"]
    if arch["base"] == "resnet":
        for s, width in enumerate(arch["widths"], start=1):
            if s in transitions:  # a transition: widen, and halve the resolution after the first stage
                stride = 2 if s > 1 and size >= 4 else 1
                size //= stride
                layers[f"trans{s}"] = conv_bn_relu(c, width, stride=stride)
                c = width
            for b in range(1, arch["blocks_per_stage"] + 1):
                layers[f"stage{s}_{b}"] = ResidualCellBlock(tree, c, next(pairs))
    else:
        for s, count in enumerate(arch["dense_layers"], start=1):
            if s > 1:
                half = transitions[s]
                trans: OrderedDict[str, nn.Module] = OrderedDict(conv=conv_bn_relu(c, half, kernel=1))
                if size >= 4:
                    trans["pool"] = nn.AvgPool2d(2)
                    size //= 2
                layers[f"trans{s}"] = nn.Sequential(trans)
                c = half
            for k in range(1, count + 1):
                layer = DenseCellLayer(tree, c, arch["growth"], next(pairs))
                layers[f"block{s}_{k}"] = layer
                c += layer.cell.c_out
    pool = nn.Sequential(OrderedDict(avg=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten()))
    return nn.Sequential(
        OrderedDict(features=nn.Sequential(layers), pool=pool, classifier=nn.Linear(c, arch["num_classes"]))
    )


def cells(net: nn.Module) -> Iterator[TreeNode]:
    """The root node of every cell of ``net``, in forward order."""
    for module in net.modules():
        if isinstance(module, ResidualCellBlock | DenseCellLayer):
            yield module.cell


def network_tree(net: nn.Module) -> T.Tree:
    """The cell tree of ``net`` (read from its first cell; all cells share it)."""
    return next(cells(net)).to_json()


def node_edge_widths(node: TreeNode) -> list[list[int]]:
    """``[in, out]`` of every edge of ``node``, depth-first (the order of ``edge_widths``)."""
    pairs: list[list[int]] = []
    for b in node.branch_list():
        pairs.append([b.edge.c_in, b.edge.c_out])
        if b.child is not None:
            pairs.extend(node_edge_widths(b.child))
    return pairs


def pruned_widths(arch: dict[str, Any], net: nn.Module) -> dict[str, Any]:
    """``arch`` (complete) with the stem, stage, transition and edge widths of the built ``net``, which has its
    structure but maybe fewer channels; the optional keys appear only where the defaults would say otherwise,
    so an unpruned network gives ``arch`` back."""
    new = {k: v for k, v in arch.items() if k not in ("edge_widths", "stem_transition", "trans_widths")}
    features = net.get_submodule("features")
    new["stem"] = _conv(features, "stem.conv").out_channels
    roots = list(cells(net))
    if arch["base"] == "resnet":
        new["widths"] = [roots[s * arch["blocks_per_stage"]].c_in for s in range(len(arch["widths"]))]
        if hasattr(features, "trans1") and new["stem"] == new["widths"][0]:
            new["stem_transition"] = True
    else:
        convs = [_conv(features, f"trans{s}.conv.conv") for s in range(2, len(arch["dense_layers"]) + 1)]
        if any(conv.out_channels != max(1, conv.in_channels // 2) for conv in convs):
            new["trans_widths"] = [conv.out_channels for conv in convs]
    widths = [node_edge_widths(cell) for cell in roots]
    try:
        default_cells = [edges for _, _, edges in layout(new)[0]]
    except T.TreeError:
        default_cells = None
    if widths != default_cells:
        new["edge_widths"] = widths
    complete(new)
    return new


def _conv(module: nn.Module, path: str) -> nn.Conv2d:
    conv = module.get_submodule(path)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"{path} is a {type(conv).__name__}, not a Conv2d")
    return conv
