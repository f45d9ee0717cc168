"""A kit CNN as the graph of layers hls4ml's PyTorch frontend converts in ``io_stream``, merges included.

hls4ml 1.3 traces a model with ``torch.fx`` and converts, per node: ``Conv2d`` (its ``groups`` ignored, see
below), ``ReLU``, ``MaxPool2d``/``AvgPool2d`` whose pool equals its stride (``nnet_pooling_stream.h`` asserts
it), a two-input ``add`` (``Merge``) and a two-input channel ``cat`` (``Concatenate``), ``Flatten``,
``Linear`` and ``Softmax``; a stream read by several layers gets a ``Clone`` stage (the ``clone_output``
pass). :func:`to_hls_cnn` walks a kit network (VGG, MobileNet, ResNet, or a ``pathlevel`` network of tree
cells) and writes it as a :class:`LayerGraph` of exactly those layers, computing the same function:

* BatchNorm is folded into the convolution before it (exact in eval mode);
* a grouped or depthwise convolution becomes the dense convolution of the same function, zero outside its
  groups: hls4ml's frontend would read its weights as dense, and a zero weight needs no multiplier (hls4ml
  counts it in ``n_zeros``); the zeros are held (:attr:`LayerGraph.structural`) when the sweep prunes;
* the mean of a pathlevel add node's N branches: the 1/N is folded into each branch's last convolution
  before its ReLU (``ReLU(z)/N = ReLU(z/N)``), and where a branch ends in an identity edge, a 1×1 diagonal
  ``scale`` convolution; N-way adds and concats are chained two at a time;
* a split node's channel share: a 1×1 ``select`` convolution (a one at each chosen channel);
* the global average pool: an ``AvgPool2d`` over the whole remaining image (no ``AdaptiveAvgPool2d``
  handler), and a ``Softmax`` over the last dimension (io_stream needs ``dim=-1``).

What cannot be converted raises :class:`~search_spaces.hls.config.SweepError` naming the layer: a pooling
whose pool differs from its stride (the pathlevel ``maxpool3x3``/``avgpool3x3`` edges: 3×3 at stride 1).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from search_spaces.hls.config import SweepError

# ``select`` and ``scale`` convolutions wire channels (weights 0, 1 or 1/N): they are not among the weighted layers,
# so they keep hls4ml's default configuration and are not searched or pruned.
_SINGLE = ("gap", "flatten", "softmax")


class LayerGraph(nn.Module):
    """Layers and two-input merges in topological order; ``forward`` runs them, and ``torch.fx`` traces that
    into the flat graph hls4ml converts (module nodes by their names, ``add``/``cat`` nodes numbered by fx)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[str, str, tuple[str, ...]]] = []  # (output, "module" | "add" | "cat", inputs)
        self.weighted: list[str] = []
        # A grouped convolution written dense: 1 where a weight belongs to a group, 0 where it must stay zero.
        self.structural: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {"input": x}
        for name, op, inputs in self.steps:
            if op == "module":
                env[name] = self.get_submodule(name)(env[inputs[0]])
            elif op == "add":
                env[name] = env[inputs[0]] + env[inputs[1]]
            else:
                env[name] = torch.cat([env[inputs[0]], env[inputs[1]]], dim=1)
        return env[self.steps[-1][0]]


class _Builder:
    """Adds layers to a :class:`LayerGraph`, running each on a zero image to know the shapes."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.graph = LayerGraph()
        self.values: dict[str, torch.Tensor] = {"input": torch.zeros(1, *input_shape)}
        self.counts: dict[str, int] = {}
        self.merges = 0

    def shape(self, name: str) -> torch.Size:
        return self.values[name].shape

    def layer(self, prefix: str, module: nn.Module, source: str, *, weighted: bool = False) -> str:
        """Add ``module`` reading ``source``; named ``prefix`` and its count (``gap``, ``flatten`` and
        ``softmax`` come once and keep the bare name)."""
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        name = prefix if prefix in _SINGLE else f"{prefix}{self.counts[prefix]}"
        self.graph.add_module(name, module.eval())
        self.graph.steps.append((name, "module", (source,)))
        with torch.no_grad():
            self.values[name] = module(self.values[source])
        if weighted:
            self.graph.weighted.append(name)
        return name

    def merge(self, op: str, a: str, b: str) -> str:
        if a == b:  # one stream twice: hls4ml's clone pass rewires one input of a layer per stream
            b = self.layer("scale", _diagonal(int(self.shape(b)[1]), 1.0), b)
        self.merges += 1
        name = f"_{op}{self.merges}"
        self.graph.steps.append((name, op, (a, b)))
        with torch.no_grad():
            x, y = self.values[a], self.values[b]
            self.values[name] = x + y if op == "add" else torch.cat([x, y], dim=1)
        return name

    def conv(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, source: str, *, relu: bool, scale: float = 1.0) -> str:
        dense, mask = dense_conv(conv)
        if bn is not None:
            dense = fold_bn2d(dense, bn)
        if dense.bias is None:  # hls4ml writes a bias for every convolution; the sweep reads it
            dense.bias = nn.Parameter(torch.zeros(dense.out_channels))
        if scale != 1.0:
            with torch.no_grad():
                dense.weight.mul_(scale)
                if dense.bias is not None:
                    dense.bias.mul_(scale)
        name = self.layer("conv", dense, source, weighted=True)
        if mask is not None:
            self.graph.structural[name] = mask
        return self.layer("crelu", nn.ReLU(), name) if relu else name


def dense_conv(conv: nn.Conv2d) -> tuple[nn.Conv2d, torch.Tensor | None]:
    """``conv`` with ``groups = 1`` and the same function (zero between groups), and the 0/1 mask of the
    weights that belong to a group (None for a dense convolution)."""
    if conv.groups == 1:
        return copy.deepcopy(conv), None
    groups, c_in, c_out = conv.groups, conv.in_channels, conv.out_channels
    per_in, per_out = c_in // groups, c_out // groups
    dense = nn.Conv2d(
        c_in,
        c_out,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
    )
    mask = torch.zeros_like(dense.weight)
    with torch.no_grad():
        dense.weight.zero_()
        for g in range(groups):
            rows, cols = slice(g * per_out, (g + 1) * per_out), slice(g * per_in, (g + 1) * per_in)
            dense.weight[rows, cols] = conv.weight[rows]
            mask[rows, cols] = 1.0
        if conv.bias is not None and dense.bias is not None:
            dense.bias.copy_(conv.bias)
    return dense, mask


def fold_bn2d(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d with a bias equal to ``conv`` followed by ``bn`` in eval mode (exact)."""
    if bn.running_mean is None or bn.running_var is None:
        raise SweepError("a BatchNorm without running statistics cannot be folded")
    folded = copy.deepcopy(conv)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded.weight.mul_(scale[:, None, None, None])
        folded.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return folded


def _diagonal(channels: int, value: float) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels)[:, :, None, None] * value)
    return conv


def _select(c_in: int, start: int, size: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, size, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for j in range(size):
            conv.weight[j, start + j] = 1.0
    return conv


def _units(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """The layers of ``module`` in forward order, by qualified name: Sequentials opened, blocks with a
    ``forward`` of their own (residual, dense, tree cells) kept whole."""
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            yield from _units(child, path + ".")
        else:
            yield path, child


def to_hls_cnn(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[LayerGraph, list[str]]:
    """The kit CNN ``model`` (eval mode) as a :class:`LayerGraph` ending in a softmax, and its weighted layers
    in forward order (convolutions ``convN``, then linear layers ``fcN``). Raises
    :class:`~search_spaces.hls.config.SweepError` naming the first layer hls4ml cannot convert."""
    b = _Builder(input_shape)
    out = _sequence(b, model, "input", "")
    if not any(n.startswith("conv") for n in b.graph.weighted) or not any(n.startswith("fc") for n in b.graph.weighted):
        raise SweepError("a convolutional network needs a Conv2d and a Linear layer")
    b.layer("softmax", nn.Softmax(dim=-1), out)
    b.graph.eval()
    return b.graph, list(b.graph.weighted)


def _sequence(b: _Builder, module: nn.Module, source: str, prefix: str) -> str:
    from search_spaces.kit import models, pathlevel

    pending: tuple[nn.Conv2d, nn.BatchNorm2d | None] | None = None
    x = source

    def flush(relu: bool = False) -> None:
        nonlocal pending, x
        if pending is not None:
            x = b.conv(pending[0], pending[1], x, relu=relu)
            pending = None

    for path, unit in _units(module, prefix):
        if isinstance(unit, nn.Conv2d):
            flush()
            pending = (unit, None)
        elif isinstance(unit, nn.BatchNorm2d):
            if pending is None or pending[1] is not None:
                raise SweepError(f"layer {path}: a BatchNorm2d not right after a Conv2d cannot be folded")
            pending = (pending[0], unit)
        elif isinstance(unit, nn.ReLU):
            if pending is not None:
                flush(relu=True)
            else:
                x = b.layer("crelu" if len(b.shape(x)) == 4 else "relu", nn.ReLU(), x)
        elif isinstance(unit, nn.MaxPool2d | nn.AvgPool2d):
            flush()
            x = _pool(b, unit, x, path)
        elif isinstance(unit, nn.AdaptiveAvgPool2d):
            flush()
            if unit.output_size not in (1, (1, 1)):
                raise SweepError(f"layer {path}: only a global AdaptiveAvgPool2d (output size 1) can be converted")
            h, w = b.shape(x)[-2:]
            if h > 1 or w > 1:
                x = b.layer("gap", nn.AvgPool2d((int(h), int(w))), x)
        elif isinstance(unit, nn.Flatten):
            flush()
            x = b.layer("flatten", nn.Flatten(), x)
        elif isinstance(unit, nn.Linear):
            flush()
            linear = nn.Linear(unit.in_features, unit.out_features)
            linear.load_state_dict(unit.state_dict())
            x = b.layer("fc", linear, x, weighted=True)
        elif isinstance(unit, nn.Identity):
            continue
        elif isinstance(unit, models.BasicBlock):
            flush()
            x = _basic_block(b, unit, x, path)
        elif isinstance(unit, pathlevel.ResidualCellBlock):
            flush()
            x = b.merge("add", x, _node(b, unit.cell, x, 1.0, path + ".cell"))
        elif isinstance(unit, pathlevel.DenseCellLayer):
            flush()
            x = b.merge("cat", x, _node(b, unit.cell, x, 1.0, path + ".cell"))
        else:
            raise SweepError(
                f"layer {path} is a {type(unit).__name__}; hls4ml_sweep converts Conv2d (grouped too), BatchNorm2d, "
                "ReLU, pooling with pool size = stride, a global average pool, Linear, residual and dense blocks and "
                "pathlevel tree cells"
            )
    flush()
    return x


def _pool(b: _Builder, unit: nn.MaxPool2d | nn.AvgPool2d, x: str, path: str) -> str:
    kernel, stride, padding = (_pair(v) for v in (unit.kernel_size, unit.stride or unit.kernel_size, unit.padding))
    if kernel != stride or padding != (0, 0):
        raise SweepError(
            f"layer {path} pools {kernel[0]}×{kernel[1]} at stride {stride[0]}"
            + (" with padding" if padding != (0, 0) else "")
            + "; hls4ml's io_stream pooling needs the pool size to equal the stride and no padding"
        )
    if isinstance(unit, nn.MaxPool2d):
        return b.layer("pool", nn.MaxPool2d(kernel, stride), x)
    return b.layer("pool", nn.AvgPool2d(kernel, stride), x)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _basic_block(b: _Builder, block: Any, x: str, path: str) -> str:
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` of the kit's ResNet: the add before the last ReLU."""
    out = b.conv(block.conv1, block.bn1, x, relu=True)
    out = b.conv(block.conv2, block.bn2, out, relu=False)
    shortcut = x
    if len(block.shortcut):
        conv, bn = block.shortcut.get_submodule("conv"), block.shortcut.get_submodule("bn")
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise SweepError(f"layer {path}.shortcut is not a 1×1 Conv2d and its BatchNorm2d")
        shortcut = b.conv(conv, bn, x, relu=False)
    return b.layer("crelu", nn.ReLU(), b.merge("add", out, shortcut))


def _node(b: _Builder, node: Any, x: str, scale: float, path: str) -> str:
    """A pathlevel tree node: its branches' inputs (copied, or each a ``select`` of its channels), the branches
    with ``scale`` pushed to their ends (an add node's mean: ``scale / N`` each), merged two at a time."""
    branches = node.branch_list()
    if node.split == "split":
        inputs, start = [], 0
        for branch in branches:
            size = branch.edge.c_in
            inputs.append(b.layer("select", _select(node.c_in, start, size), x))
            start += size
    else:
        inputs = [x] * len(branches)
    share = scale / len(branches) if node.merge == "add" else scale
    outs = [
        _branch(b, branch, inp, share, f"{path}.branches.{i}")
        for i, (branch, inp) in enumerate(zip(branches, inputs, strict=True))
    ]
    merged = outs[0]
    for out in outs[1:]:
        merged = b.merge("add" if node.merge == "add" else "cat", merged, out)
    return merged


def _branch(b: _Builder, branch: Any, x: str, scale: float, path: str) -> str:
    if branch.child is not None:
        return _node(b, branch.child, _edge(b, branch.edge, x, 1.0, path + ".edge"), scale, path + ".child")
    return _edge(b, branch.edge, x, scale, path + ".edge")


def _edge(b: _Builder, edge: Any, x: str, scale: float, path: str) -> str:
    from search_spaces.kit import pathlevel

    if isinstance(edge, pathlevel.ConvOp):
        return b.conv(edge.conv, edge.bn, x, relu=True, scale=scale)
    if isinstance(edge, pathlevel.SepConvOp):
        depthwise = b.conv(edge.dw, None, x, relu=False)
        return b.conv(edge.pw, edge.bn, depthwise, relu=True, scale=scale)
    if edge.kind == "identity":
        return x if math.isclose(scale, 1.0) else b.layer("scale", _diagonal(edge.c_in, scale), x)
    raise SweepError(
        f"layer {path} is a {edge.kind} edge (3×3 pooling at stride 1); hls4ml's io_stream pooling needs the pool "
        "size to equal the stride"
    )


def kernel_shape(module: nn.Module) -> tuple[int, int]:
    """(``n_in``, ``n_out``) of the dense product kernel hls4ml builds for a layer (a conv: its window)."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return kh * kw * module.in_channels, module.out_channels
    assert isinstance(module, nn.Linear)
    return module.in_features, module.out_features
