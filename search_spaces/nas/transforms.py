"""Path-level transformations on a built network that keep its function (paper §3).

Each function changes one node of one cell in place; :func:`apply_to_network` applies a JSON op (see
:mod:`search_spaces.kit.tree_cells`) to every cell of a network, so the network and its JSON tree stay in step.
All transformed networks compute the same outputs as before (in eval mode, up to float rounding), except when an
identity edge becomes a pooling layer, which the reference accepts as not function-preserving.

* :func:`replicate_and_add` — a leaf edge becomes N copies of itself whose outputs are averaged; copies 2..N get
  their weights perturbed (``noise``), or the copies would receive equal gradients and stay equal forever;
* :func:`split_and_concat` — a leaf edge's output channels (filters, BatchNorm entries) are shared out among
  2 branches whose outputs are concatenated; channel-wise edges (identity, pooling) split their input instead;
* :func:`insert_node` — a leaf node with an identity edge goes between a branch's edge and its child;
* :func:`identity_to_layer` — an identity edge becomes a layer initialised to the identity (Net2DeeperNet:
  centre-tap / unit kernels, BatchNorm set to undo its own normalisation, ReLU of a non-negative input), its kernel
  perturbed by ``noise`` too, so two identity edges replaced alike do not stay twins.

``noise`` is the reference's ``trans_noise_config`` (han-cai/PathLevel-EAS ``apply_noise``): Gaussian noise of
standard deviation ``noise × std(W)`` added to each convolution weight ``W`` (BatchNorm untouched); the reference
uses 6e-3 (:data:`NOISE_RATIO`), which leaves the network's outputs within about 1e-3 of the parent's. ``noise=0``
keeps every transformation exact.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from search_spaces.kit import pathlevel as N
from search_spaces.kit import tree_cells as T

NOISE_RATIO = 6e-3  # the reference's "wider" and "deeper" noise: normal, 6e-3 of the weights' std


def node_at(cell: N.TreeNode, path: list[int]) -> N.TreeNode:
    node = cell
    for i in path:
        child = node.branch(i).child
        if child is None:
            raise T.TreeError(f"branch path {path} ends before a node")
        node = child
    return node


def replicate_and_add(
    node: N.TreeNode, n: int, *, noise: float = 0.0, generator: torch.Generator | None = None
) -> None:
    """Leaf ``node``'s edge replicated into ``n`` branches merged by add (mean: each output scaled by 1/n); copies
    2..n get ``noise`` (see the module docstring), as the reference's ``set_merge_type`` does."""
    _check_leaf(node)
    edge = node.branch(0).edge
    copies = [copy.deepcopy(edge) for _ in range(n)]
    for c in copies[1:]:
        perturb(c, noise, generator)
    node.branches = nn.ModuleList([N.Branch(c, None) for c in copies])
    node.merge, node.split = "add", "copy"


@torch.no_grad()
def perturb(module: nn.Module, ratio: float, generator: torch.Generator | None = None) -> None:
    """Add N(0, (ratio·std W)²) to every convolution weight W of ``module`` (the reference's ``apply_noise``)."""
    if ratio <= 0:
        return
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight
            scale = float(w.std()) if w.numel() > 1 else float(w.abs().mean())
            w.add_(torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device) * (ratio * scale))


def split_and_concat(node: N.TreeNode, n: int = 2) -> None:
    """Leaf ``node``'s edge split into ``n`` branches merged by concat, each holding its share of the filters."""
    _check_leaf(node)
    edge = node.branch(0).edge
    if edge.kind == "gconv3x3":
        raise T.TreeError("split-and-concat of a group convolution is not supported")
    outs = T.split_list(edge.c_out, n)
    split = T.concat_split_type(edge.kind)
    parts, start = [], 0
    for size in outs:
        if split == "split":
            part = N.make_edge(edge.kind, size, size)
        else:
            part = N.make_edge(edge.kind, edge.c_in, size)
            _copy_output_slice(edge, part, start, start + size)
        parts.append(N.Branch(part.train(node.training), None))
        start += size
    node.branches = nn.ModuleList(parts)
    node.merge, node.split = "concat", split


@torch.no_grad()
def _copy_output_slice(src: N.Edge, dst: N.Edge, lo: int, hi: int) -> None:
    """Filters ``lo:hi`` of ``src`` (its output channels) into ``dst``; a depthwise stage is copied whole."""
    if isinstance(src, N.SepConvOp) and isinstance(dst, N.SepConvOp):
        dst.dw.weight.copy_(src.dw.weight)
        dst.pw.weight.copy_(src.pw.weight[lo:hi])
    elif isinstance(src, N.ConvOp) and isinstance(dst, N.ConvOp):
        dst.conv.weight.copy_(src.conv.weight[lo:hi])
    else:
        raise TypeError(f"cannot copy the filters of a {src.kind} edge into a {dst.kind} edge")
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst.bn, name).copy_(getattr(src.bn, name)[lo:hi])
    _running_stats(dst.bn)[2].copy_(_running_stats(src.bn)[2])


def insert_node(node: N.TreeNode, branch: int) -> None:
    """A leaf node with an identity edge inserted between branch ``branch``'s edge and its child."""
    b = node.branch(branch)
    width = b.edge.c_out
    inserted = N.TreeNode(None, None, width, width, [N.Branch(N.make_edge("identity", width, width), b.child)])
    b.child = inserted.train(node.training)


@torch.no_grad()
def identity_to_layer(
    node: N.TreeNode, branch: int, kind: str, *, noise: float = 0.0, generator: torch.Generator | None = None
) -> None:
    """Identity edge ``branch`` of ``node`` replaced by primitive ``kind`` initialised as the identity.

    The BatchNorm gets running statistics (0, 1) and scale sqrt(1 + eps), so in eval mode it is exactly the
    identity; :func:`calibrate` later sets the statistics from data so training-mode BatchNorm is close to it
    too (the reference code's ``set_non_ready_layers``). Pooling cannot be the identity and is not. The identity
    kernels get ``noise`` (the reference's "deeper" noise).
    """
    b = node.branch(branch)
    if b.edge.kind != "identity":
        raise T.TreeError("only an identity edge is replaced by a layer")
    width = b.edge.c_in
    new = N.make_edge(kind, width, width).train(node.training)  # a new module must not flip eval mode
    if isinstance(new, N.SepConvOp):
        new.dw.weight.zero_()
        new.dw.weight[:, 0, new.dw.kernel_size[0] // 2, new.dw.kernel_size[1] // 2] = 1.0
        new.pw.weight.copy_(torch.eye(width).view(width, width, 1, 1))
    elif isinstance(new, N.ConvOp):
        _identity_kernel(new.conv)
    perturb(new, noise, generator)
    if isinstance(new, N.ConvOp | N.SepConvOp):  # the edges with a BatchNorm
        running_mean, running_var, _ = _running_stats(new.bn)
        running_mean.zero_()
        running_var.fill_(1.0)
        new.bn.weight.fill_((1.0 + new.bn.eps) ** 0.5)
        new.bn.bias.zero_()
        _set_identity_init(new.bn, True)  # calibrate() looks for this flag
    b.edge = new


def _running_stats(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``bn``'s running mean, running variance and batch count (every edge's BatchNorm tracks them)."""
    if bn.running_mean is None or bn.running_var is None or bn.num_batches_tracked is None:
        raise ValueError("the BatchNorm keeps no running statistics")
    return bn.running_mean, bn.running_var, bn.num_batches_tracked


def _set_identity_init(bn: nn.BatchNorm2d, flag: bool) -> None:
    # torch's stubs type Module.__setattr__ as taking only Tensor | Module, but any plain attribute is accepted.
    bn.identity_init = flag  # type: ignore[assignment]


def _identity_kernel(conv: nn.Conv2d) -> None:
    conv.weight.zero_()
    per_group = conv.in_channels // conv.groups
    centre = (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2)
    for j in range(conv.out_channels):  # output j reads input j, which sits in the same group when in == out
        conv.weight[j, j % per_group, centre[0], centre[1]] = 1.0


def _check_leaf(node: N.TreeNode) -> None:
    if node.merge is not None or len(node.branches) != 1 or node.branch(0).child is not None:
        raise T.TreeError("only a leaf node gets a merge scheme")


def apply_to_cell(cell: N.TreeNode, op: T.Op, *, noise: float = 0.0, generator: torch.Generator | None = None) -> None:
    """Apply one JSON transformation ``op`` (see :func:`.tree.apply`) to ``cell`` in place."""
    node = node_at(cell, list(op["path"]))
    kind = op["type"]
    if kind == "set_merge":
        if op["merge"] == "add":
            replicate_and_add(node, int(op["branches"]), noise=noise, generator=generator)
        else:
            split_and_concat(node, int(op["branches"]))
    elif kind == "insert_node":
        insert_node(node, int(op["branch"]))
    elif kind == "replace_identity":
        if op["op"] != "identity":
            identity_to_layer(node, int(op["branch"]), op["op"], noise=noise, generator=generator)
    else:
        raise T.TreeError(f"unknown transformation {kind!r}")


def apply_to_network(
    net: nn.Module, ops: list[T.Op], *, noise: float = 0.0, generator: torch.Generator | None = None
) -> None:
    """Apply ``ops`` in order to every cell of ``net`` (in place); the weights are inherited, perturbed by ``noise``
    where a copy or an identity layer would otherwise be a twin (draws from ``generator``, for reproducibility)."""
    for op in ops:
        for cell in N.cells(net):
            apply_to_cell(cell, op, noise=noise, generator=generator)


@torch.no_grad()
def calibrate(net: nn.Module, x: torch.Tensor) -> int:
    """Give identity-initialised BatchNorms the statistics of their input on batch ``x``.

    Sets running mean m and variance v and the affine scale sqrt(v + eps) and shift m, so the layer stays the
    identity in eval mode and is close to it with batch statistics. Returns how many BatchNorms it set.
    """
    flagged = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d) and getattr(m, "identity_init", False)]
    if not flagged:
        return 0
    seen: dict[nn.Module, Any] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, _out: seen.__setitem__(mod, inp[0].detach())) for m in flagged]
    was_training = net.training
    net.eval()
    try:
        net(x)
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    for bn in flagged:
        inp = seen[bn]
        mean = inp.mean(dim=(0, 2, 3))
        var = inp.var(dim=(0, 2, 3), unbiased=False)
        running_mean, running_var, _ = _running_stats(bn)
        running_mean.copy_(mean)
        running_var.copy_(var)
        bn.weight.copy_((var + bn.eps).sqrt())
        bn.bias.copy_(mean)
        _set_identity_init(bn, False)
    return len(flagged)
