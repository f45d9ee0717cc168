"""The two networks a ``winograd_prune`` job compares: the kit's spatial VGG and its Winograd-ReLU twin.

Both are built from one kit ``vgg`` architecture dict (stages of 3×3 convolutions, 2×2 max-pooling after each
stage, global average pooling, a classifier head; see :mod:`search_spaces.kit.models`):

* the **spatial** network is the kit's ``vgg`` itself: conv → BatchNorm → ReLU per layer. It is the dense
  direct baseline, the dense Winograd baseline (the same weights computed with F(m×m, 3×3) give the same
  outputs, Lavin & Gray 2016, Eq. 8) and, pruned in place, the spatially pruned baseline;
* the **Winograd-ReLU** network has the same widths, but every 3×3 convolution after the first is a
  :class:`~search_spaces.winograd.transforms.WinogradReLUConv2d` (Liu et al. 2018, Eq. 2 and Figure 1c),
  followed by BatchNorm and no spatial ReLU: the non-linearity is the ReLU on the next layer's transformed
  input tiles. The first convolution stays spatial, as in the paper (its single input channel leaves little
  to gain, and its input is the image rather than a ReLU output), followed by BatchNorm only; one spatial ReLU
  before the global pooling ends the feature extractor, as in the reference code (``gap_relu``). Max-pooling
  commutes with the moved ReLU (both are monotone), so it stays where it was.

The Winograd-ReLU network is not a transform of a trained spatial network: its ReLUs sit elsewhere, so it is
trained from scratch (the paper does the same).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search_spaces.kit import models
from search_spaces.winograd.transforms import WinogradReLUConv2d

ARCH_NAME = "winograd_relu_vgg"
FORMAT = "winograd_relu_vgg/1"


@dataclass(frozen=True)
class ConvLayer:
    """One 3×3 convolution as the counting sees it: its module name, channels and output map size (the same
    as its input map: "same" padding, stride 1)."""

    name: str
    c_in: int
    c_out: int
    h: int
    w: int


def spatial_arch(arch: dict[str, Any]) -> dict[str, Any]:
    """The complete kit ``vgg`` architecture ``arch`` (checked); anything else is refused with ModelError."""
    full = models.complete_arch(arch)
    if full["name"] != "vgg":
        raise models.ModelError(f"winograd_prune works on the kit's vgg networks; this one is a {full['name']}")
    return full


def winograd_arch(arch: dict[str, Any], m: int) -> dict[str, Any]:
    """The Winograd-ReLU twin's architecture: the vgg dict with its name changed and the tile size added."""
    full = copy.deepcopy(spatial_arch(arch))
    full["name"] = ARCH_NAME
    full["tile_size"] = int(m)
    return full


def _conv_widths(arch: dict[str, Any]) -> list[int]:
    return list(arch.get("conv_widths") or [w for w in arch["widths"] for _ in range(arch["convs_per_stage"])])


def build_spatial(arch: dict[str, Any]) -> nn.Module:
    """The kit's vgg for ``arch`` (freshly initialised)."""
    return models.build_model(spatial_arch(arch))


def build_winograd_relu(arch: dict[str, Any]) -> nn.Module:
    """The Winograd-ReLU network for a :func:`winograd_arch` dict (freshly initialised); module names follow the
    kit's vgg (``features.stage{s}_{k}.conv``), so masks and layer tables line up between the two networks."""
    if arch.get("name") != ARCH_NAME:
        raise models.ModelError(f"not a {ARCH_NAME} architecture: {arch.get('name')!r}")
    m = int(arch["tile_size"])
    base = spatial_arch({k: v for k, v in arch.items() if k != "tile_size"} | {"name": "vgg"})
    c_in, size = base["input_shape"][0], min(base["input_shape"][1:])
    widths, per_stage = _conv_widths(base), base["convs_per_stage"]
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    for s in range(1, len(base["widths"]) + 1):
        for k in range(1, per_stage + 1):
            width = widths[(s - 1) * per_stage + k - 1]
            first = s == 1 and k == 1
            conv: nn.Module = (
                nn.Conv2d(c_in, width, 3, padding=1, bias=False) if first else WinogradReLUConv2d(c_in, width, m)
            )
            stages[f"stage{s}_{k}"] = nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(width)))
            c_in = width
        if size >= 2:  # the kit's vgg pools the same way (an 8×8 input runs out of resolution first)
            stages[f"pool{s}"] = nn.MaxPool2d(2)
            size //= 2
    stages["relu"] = nn.ReLU()
    head = models.build_model(base).get_submodule("classifier")  # the spatial network's head (fresh weights)
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(stages),
            pool=nn.Sequential(OrderedDict(avg=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten())),
            classifier=head,
        )
    )


Conv = nn.Conv2d | WinogradReLUConv2d


def conv_modules(model: nn.Module) -> list[tuple[str, Conv]]:
    """Every 3×3 convolution of ``model`` (spatial ``Conv2d`` or Winograd-ReLU) in forward order."""
    return [(n, mod) for n, mod in model.named_modules() if isinstance(mod, nn.Conv2d | WinogradReLUConv2d)]


def prunable(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights that are pruned: every convolution's but the first (kept spatial and dense, as in the paper);
    keys are parameter names, as the kit trainer's masks take them."""
    return {f"{name}.weight": mod.weight for name, mod in conv_modules(model)[1:]}


@torch.no_grad()
def conv_layers(model: nn.Module, input_shape: list[int] | tuple[int, ...]) -> list[ConvLayer]:
    """The geometry of each convolution of ``model``, read from one forward pass of a zero sample."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        mod.register_forward_hook(lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(inp[0].shape)))
        for name, mod in conv_modules(model)
    ]
    was_training = model.training
    model.eval()
    try:
        first = next(model.parameters())
        model(torch.zeros((1, *input_shape), dtype=first.dtype, device=first.device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    layers = []
    for name, mod in conv_modules(model):
        _, c, h, w = shapes[name]
        out_channels = mod.out_channels
        layers.append(ConvLayer(name, int(c), int(out_channels), int(h), int(w)))
    return layers


def save_winograd_relu(model: nn.Module, arch: dict[str, Any], path: Path) -> None:
    """Write the Winograd-ReLU network as plain tensors and plain containers, readable with
    ``torch.load(weights_only=True)``; rebuild it with :func:`load_winograd_relu`. It is not a kit architecture,
    so no other job kind takes it as input."""
    payload = {"format": FORMAT, "arch": copy.deepcopy(arch), "state_dict": models.cpu_state(model)}
    torch.save(payload, Path(path))


def load_winograd_relu(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The network :func:`save_winograd_relu` wrote (CPU, eval mode) and its architecture."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise models.ModelError(f"not a {ARCH_NAME} model file")
    model = build_winograd_relu(payload["arch"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload["arch"]
