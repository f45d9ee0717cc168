"""Group masks at four granularities and the iterative prune → retrain schedule.

Mao et al., "Exploring the Regularity of Sparse Structure in Convolutional Neural Networks"
(arXiv:1705.08922), Section 3 and Figure 1: a conv weight of shape (K, C, R, S) is pruned in groups of

* ``fine``   (0-D) — single weights;
* ``vector`` (1-D) — one row of a kernel: the S weights ``W[k, c, r, :]``. The paper allows a row or a
  column; we take the row because it is contiguous in PyTorch's row-major layout, so a group is one
  run of the flattened tensor and one entry of the sparse format (see :mod:`search_spaces.granularity.storage`);
* ``kernel`` (2-D) — one R×S kernel ``W[k, c, :, :]``;
* ``filter`` (3-D) — one whole C×R×S filter ``W[k, :, :, :]``.

A fully-connected weight of shape (rows = outputs, cols = inputs) gets the analogues (our choice; the
paper defines the groups for conv layers): ``fine`` single weights; ``vector`` a run of ``vector_size``
consecutive inputs of one row; ``kernel`` a run of ``vector_size ** 2`` consecutive inputs of one row
(a "row block" with as many weights as a ``vector_size``×``vector_size`` kernel); ``filter`` a whole
row, i.e. all inputs of one output neuron, as a filter is all inputs of one output channel. When
``cols`` is not a multiple of the block size, the block shrinks to the largest divisor of ``cols`` not
above it, so every group of a layer has the same size and lies inside one row.

In every case a layer's groups are equal-sized contiguous runs of ``weight.flatten()``, in order, so
``weight.reshape(n_groups, group_size)`` lists them. The saliency of a group is its L1 or L2 norm
divided by the group size; the lowest-saliency groups of each layer are pruned until the layer reaches
its target sparsity (counted in weights).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
from torch import nn

GRANULARITIES: tuple[str, ...] = ("fine", "vector", "kernel", "filter")
NORMS: tuple[str, ...] = ("l1", "l2")
Granularity = Literal["fine", "vector", "kernel", "filter"]
Norm = Literal["l1", "l2"]
Masks = dict[str, torch.Tensor]


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def group_size(shape: Iterable[int], granularity: str, *, vector_size: int = 4) -> int:
    """Number of weights in one group of a weight of ``shape`` at ``granularity`` (Mao et al., Fig. 1).

    Conv (K, C, R, S): fine 1, vector S, kernel R·S, filter C·R·S. Linear (rows, cols): fine 1, vector
    ``vector_size`` (or the largest divisor of cols below it), kernel ``vector_size²`` (likewise), filter
    cols. A 1×1 convolution therefore has vector = kernel = fine, as its kernels are single weights.
    """
    shape = tuple(int(d) for d in shape)
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; one of {GRANULARITIES}")
    if granularity == "fine":
        return 1
    if len(shape) == 4:
        _, c, r, s = shape
        return {"vector": s, "kernel": r * s, "filter": c * r * s}[granularity]
    if len(shape) == 2:
        cols = shape[1]
        limit = {"vector": vector_size, "kernel": vector_size**2, "filter": cols}[granularity]
        return _largest_divisor_at_most(cols, limit)
    raise ValueError(f"cannot group a weight of shape {shape}; expected (K, C, R, S) or (rows, cols)")


def group_saliency(weight: torch.Tensor, granularity: str, norm: str = "l1", *, vector_size: int = 4) -> torch.Tensor:
    """Saliency of each group, in flattened order: ‖group‖₁ / |group| or ‖group‖₂ / |group|.

    Mao et al. rank groups by their norm normalised by the group size (Section 3), so groups of a
    different size would compare fairly; within one layer all groups have the same size.
    """
    g = group_size(weight.shape, granularity, vector_size=vector_size)
    groups = weight.detach().reshape(-1, g).float()
    if norm == "l1":
        total = groups.abs().sum(dim=1)
    elif norm == "l2":
        total = groups.pow(2).sum(dim=1).sqrt()
    else:
        raise ValueError(f"unknown norm {norm!r}; one of {NORMS}")
    return total / g


def groups_to_prune(n_groups: int, sparsity: float) -> int:
    """How many of a layer's ``n_groups`` equal groups to remove to reach ``sparsity`` (in weights).

    Rounded to the nearest group; at least one group always stays, so no layer is cut off entirely.
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return min(int(round(sparsity * n_groups)), n_groups - 1)


def group_mask(
    weight: torch.Tensor,
    granularity: str,
    sparsity: float,
    norm: str = "l1",
    *,
    vector_size: int = 4,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """A 0/1 mask of ``weight``'s shape that prunes the lowest-saliency groups to ``sparsity``.

    The mask is constant over each group (over each R×S for ``kernel``, each C×R×S for ``filter``).
    ``keep``, an earlier mask, is honoured: groups it pruned stay pruned (the iterative schedule of
    Mao et al. keeps the mask between prune steps) and count towards the sparsity. Ties in saliency go
    to the group that comes first in flattened order, so masks are deterministic.
    """
    g = group_size(weight.shape, granularity, vector_size=vector_size)
    saliency = group_saliency(weight, granularity, norm, vector_size=vector_size)
    n_groups = saliency.numel()
    if keep is not None:
        kept_before = keep.detach().reshape(-1, g).amax(dim=1) > 0
        saliency = torch.where(kept_before, saliency, torch.full_like(saliency, -1.0))
    n_prune = groups_to_prune(n_groups, sparsity)
    order = torch.argsort(saliency, stable=True)
    alive = torch.ones(n_groups, dtype=torch.bool, device=weight.device)
    alive[order[:n_prune]] = False
    if keep is not None:
        alive &= kept_before
    return alive.repeat_interleave(g).reshape(weight.shape).to(weight.dtype)


def prunable_weights(model: nn.Module, *, dense_first_conv: bool = False) -> dict[str, torch.Tensor]:
    """The weights that are pruned: every Conv2d and Linear weight except the output layer's.

    The last Linear (the classifier) stays dense: its rows are the classes, so filter-level pruning
    would delete whole classes, and its few weights barely change the storage. Its weights are still
    counted in the storage model, stored dense. With ``dense_first_conv`` the first layer stays dense too
    when it is a convolution: on one input channel its kernels are its filters (no regularity to choose),
    it holds a tiny share of the weights, and every later layer sees what it loses (Han et al. 2015 keep
    84% of AlexNet's first convolution, the most of any layer).
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if layers and isinstance(layers[-1][1], nn.Linear):
        layers = layers[:-1]
    if dense_first_conv and layers and isinstance(layers[0][1], nn.Conv2d):
        layers = layers[1:]
    return {f"{name}.weight" if name else "weight": m.weight for name, m in layers}


def counted_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every Conv2d and Linear weight: what the storage model counts (biases and norms left out)."""
    return {
        f"{name}.weight" if name else "weight": m.weight
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    }


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the pruned weights in place."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))


def prune_model(
    model: nn.Module,
    granularity: str,
    sparsity: float,
    norm: str = "l1",
    *,
    vector_size: int = 4,
    masks: Masks | None = None,
    dense_first_conv: bool = False,
) -> Masks:
    """Prune every prunable layer of ``model`` to ``sparsity`` at ``granularity``; return the new masks.

    Each layer reaches the same target sparsity (Mao et al. prune per layer). Earlier ``masks`` are
    kept. The weights are zeroed in place. ``dense_first_conv``: see :func:`prunable_weights`.
    """
    new: Masks = {}
    for name, weight in prunable_weights(model, dense_first_conv=dense_first_conv).items():
        keep = masks.get(name) if masks else None
        new[name] = group_mask(weight, granularity, sparsity, norm, vector_size=vector_size, keep=keep)
    apply_masks(model, new)
    return new


def sparsity_schedule(target: float, prune_steps: int) -> list[float]:
    """Sparsity after each prune step: raised linearly, ``target·i/prune_steps`` for i = 1…prune_steps.

    Iterative pruning (Han et al., 2015, used by Mao et al.): prune a little, retrain, prune more.
    """
    if prune_steps < 1:
        raise ValueError("prune_steps must be at least 1")
    return [target * (i + 1) / prune_steps for i in range(prune_steps)]


def prune_and_retrain(
    model: nn.Module,
    *,
    granularity: str,
    sparsity: float,
    norm: str = "l1",
    prune_steps: int = 1,
    vector_size: int = 4,
    retrain: Callable[[int, Masks], None] | None = None,
    dense_first_conv: bool = False,
) -> Masks:
    """Iterative pruning: for each step of :func:`sparsity_schedule`, prune with the mask kept, retrain.

    ``retrain(step, masks)`` trains ``model`` with ``masks`` held (the kit trainer re-applies them after
    every optimiser step). Returns the final masks.
    """
    masks: Masks | None = None
    for step, level in enumerate(sparsity_schedule(sparsity, prune_steps)):
        masks = prune_model(
            model, granularity, level, norm, vector_size=vector_size, masks=masks, dense_first_conv=dense_first_conv
        )
        if retrain is not None:
            retrain(step, masks)
            apply_masks(model, masks)
    assert masks is not None
    return masks


def mask_sparsity(masks: Masks) -> float:
    """Fraction of zeros over all masked weights."""
    total = sum(m.numel() for m in masks.values())
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    return zeros / total if total else 0.0
