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
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

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


def make_edge(kind: str, c_in: int, c_out: int) -> nn.Module:
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

    def __init__(self, edge: nn.Module, child: TreeNode | None) -> None:
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split == "split":
            sizes = T.split_list(self.c_in, len(self.branches))
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
                {"op": b.edge.kind, "child": b.child.to_json() if b.child is not None else None} for b in self.branches
            ],
        }


def build_node(node: T.Tree, c_in: int, c_out: int) -> TreeNode:
    """A freshly initialised cell for the JSON ``node`` mapping ``c_in`` to ``c_out`` channels."""
    branches = []
    for b, (i, o) in zip(node["branches"], T.branch_channels(node, c_in, c_out), strict=True):
        child = build_node(b["child"], o, o) if b["child"] is not None else None
        branches.append(Branch(make_edge(b["op"], i, o), child))
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

    def __init__(self, tree: T.Tree, channels: int) -> None:
        super().__init__()
        self.cell = build_node(tree, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cell(x)


class DenseCellLayer(nn.Module):
    """``concat(x, cell(x))`` (DenseNet layer whose composite function is the tree cell)."""

    def __init__(self, tree: T.Tree, channels: int, growth: int) -> None:
        super().__init__()
        self.cell = build_node(tree, channels, growth)

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
    for c_in, c_out in cell_widths(full):
        T.validate(full["tree"], c_in, c_out, max_depth=3)
    return full


def cell_widths(arch: dict[str, Any]) -> list[tuple[int, int]]:
    """``(in, out)`` channels of every cell of the network, in forward order."""
    if arch["base"] == "resnet":
        return [(w, w) for w in arch["widths"] for _ in range(arch["blocks_per_stage"])]
    widths, c = [], arch["stem"]
    for s, layers in enumerate(arch["dense_layers"]):
        if s > 0:
            c = max(1, c // 2)
        for _ in range(layers):
            widths.append((c, arch["growth"]))
            c += arch["growth"]
    return widths


def build_network(arch: dict[str, Any]) -> nn.Module:
    """The base network of ``arch`` with a freshly initialised cell in every block."""
    arch = complete(arch)
    c_img, size = arch["input_shape"][0], min(arch["input_shape"][1:])
    tree = arch["tree"]
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=conv_bn_relu(c_img, arch["stem"]))
    c = arch["stem"]
    if arch["base"] == "resnet":
        for s, width in enumerate(arch["widths"], start=1):
            if width != c or s > 1:  # a transition: widen, and halve the resolution after the first stage
                stride = 2 if s > 1 and size >= 4 else 1
                size //= stride
                layers[f"trans{s}"] = conv_bn_relu(c, width, stride=stride)
                c = width
            for b in range(1, arch["blocks_per_stage"] + 1):
                layers[f"stage{s}_{b}"] = ResidualCellBlock(tree, c)
    else:
        for s, count in enumerate(arch["dense_layers"], start=1):
            if s > 1:
                half = max(1, c // 2)
                trans: OrderedDict[str, nn.Module] = OrderedDict(conv=conv_bn_relu(c, half, kernel=1))
                if size >= 4:
                    trans["pool"] = nn.AvgPool2d(2)
                    size //= 2
                layers[f"trans{s}"] = nn.Sequential(trans)
                c = half
            for k in range(1, count + 1):
                layers[f"block{s}_{k}"] = DenseCellLayer(tree, c, arch["growth"])
                c += arch["growth"]
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
