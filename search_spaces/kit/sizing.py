"""How big a kit architecture is, known from its arch dict before a single weight is allocated.

An uploaded model names its architecture; building it first and checking the weights after would let a 1 KB
file ask for a 100,000 × 100,000 layer (40 GB). :func:`arch_size` counts the layers from the dict, then builds
the network on PyTorch's ``meta`` device (shapes only, no storage) and runs one sample through it, so the
parameter and activation counts are exact for every family (``vgg``, ``resnet``, ``mobilenet``, ``mlp`` and
``pathlevel``) without a second copy of each family's layout. :func:`check_size` refuses what is over a limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from search_spaces.kit import tree_cells
from search_spaces.kit.models import ModelError, build_model, complete_arch

# More layers than this is no model the kit trains on two cores; it also bounds the cost of the meta build.
MAX_LAYERS = 1000


@dataclass(frozen=True)
class ArchSize:
    """``params``: numbers the model stores (parameters and buffers); ``activations``: numbers its layers output
    for one sample in a forward pass; ``layers``: layers with weights or structure (an upper bound)."""

    params: int
    activations: int
    layers: int


@dataclass(frozen=True)
class SizeLimits:
    max_params: int
    max_activations: int


def layer_count(arch: dict[str, Any]) -> int:
    """Layers of the complete ``arch`` (see :func:`.models.complete_arch`), counted from the dict alone."""
    name = arch["name"]
    if name == "mlp":
        return len(arch["hidden"]) + 1
    if name == "vgg":
        return len(arch["widths"]) * arch["convs_per_stage"] + len(arch["fc"]) + 1
    if name == "resnet":
        return 3 * len(arch["widths"]) * arch["blocks_per_stage"] + 2
    if name == "mobilenet":
        return 2 * len(arch["widths"]) + 2
    if name == "pathlevel":
        cells = (
            len(arch["widths"]) * arch["blocks_per_stage"] if arch["base"] == "resnet" else sum(arch["dense_layers"])
        )
        return cells * tree_cells.count_edges(arch["tree"]) + len(arch["widths"]) + len(arch["dense_layers"]) + 2
    raise ModelError(f"unknown architecture {name!r}")


def arch_size(arch: dict[str, Any]) -> ArchSize:
    """The size of the model ``arch`` describes; raises :class:`.models.ModelError` for a wrong dict or one with
    more than :data:`MAX_LAYERS` layers. Nothing the size of the model is allocated."""
    full = complete_arch(arch)
    layers = layer_count(full)
    if layers > MAX_LAYERS:
        raise ModelError(f"the {full['name']} has {layers:,} layers; the limit is {MAX_LAYERS:,}")
    with torch.device("meta"):
        model = build_model(full)
        sample = torch.zeros((1, *full["input_shape"]))
    params = sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    return ArchSize(params, _activations(model, sample), layers)


def check_size(arch: dict[str, Any], limits: SizeLimits) -> ArchSize:
    """:func:`arch_size`, refusing a model over ``limits`` with a :class:`.models.ModelError` that says by how much."""
    size = arch_size(arch)
    name = arch.get("name")
    if size.params > limits.max_params:
        raise ModelError(f"the {name} has {size.params:,} parameters; the limit is {limits.max_params:,}")
    if size.activations > limits.max_activations:
        raise ModelError(
            f"the {name} computes {size.activations:,} activations per sample; the limit is {limits.max_activations:,}"
        )
    return size


def _activations(model: nn.Module, sample: torch.Tensor) -> int:
    total = 0

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(sample)
    finally:
        for hook in hooks:
            hook.remove()
    return total
