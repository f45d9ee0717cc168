"""Reference architectures, built from a plain JSON ``arch`` dict, and a model file that cannot run code.

Four families, all small enough to train on two CPU cores:

* ``vgg``: stages of 3×3 convolution + BatchNorm + ReLU followed by 2×2 max-pooling (Simonyan &
  Zisserman 2015), narrowed for 8×8 to 32×32 inputs;
* ``resnet``: a CIFAR-style ResNet of basic blocks (He et al. 2016, §4.2) with configurable widths;
* ``mobilenet``: depthwise-separable blocks, a 3×3 depthwise then a 1×1 pointwise convolution, each
  with BatchNorm + ReLU, and a width multiplier α (Howard et al. 2017, §3.1–3.2);
* ``mlp``: fully connected layers with ReLU; the default 64-32-32 hidden layers on 16 inputs and 5
  outputs is the hls4ml jet tagger (Duarte et al. 2018).

Channel-pruned models need per-layer widths that the stage pattern cannot say; two optional keys, absent
from the defaults (so existing architecture dicts are unchanged), carry them: ``conv_widths`` for
``vgg`` (one output width per convolution, overriding ``widths`` × ``convs_per_stage``) and
``mid_widths`` for ``resnet`` (the inner width of each basic block, between its two convolutions).
``mobilenet`` (``stem``, ``widths`` with ``width_mult = 1``) and ``mlp`` (``hidden``) already name every width.

Every model is an ``nn.Sequential`` of named parts (``features``, ``pool``, ``classifier``, or ``fcN``/
``reluN`` for the MLP), so pruning code can walk ``named_modules()`` and meet the convolution and linear
layers in forward order. The convolutional families end in global average pooling, so the classifier's
inputs are exactly the last convolution's output channels (channel pruning needs no reshaping there).

A model file is a ``torch.save`` of a plain dict ``{"format", "arch", "state_dict"}`` and is read back
with ``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary objects.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from search_spaces.kit.datasets import DatasetInfo

if TYPE_CHECKING:
    from search_spaces.kit.sizing import SizeLimits

FORMAT = "automl-kit-model/1"
# A pathlevel network lays out every cell when it is checked, so their number is bounded first.
MAX_PATHLEVEL_CELLS = 1024
ARCHITECTURES = ("vgg", "resnet", "mobilenet", "mlp")

# The size parameters of each family and their defaults; ``arch`` may override any of them.
DEFAULTS: dict[str, dict[str, Any]] = {
    "vgg": {"widths": [16, 32, 64], "convs_per_stage": 1, "fc": []},
    "resnet": {"widths": [16, 32, 64], "blocks_per_stage": 1},
    "mobilenet": {"stem": 16, "widths": [32, 64, 128], "strides": [1, 2, 2], "width_mult": 1.0},
    "mlp": {"hidden": [64, 32, 32], "batchnorm": False},
}
_COMMON = ("name", "input_shape", "num_classes")
# Optional per-layer widths (see the module docstring); left out of DEFAULTS so default dicts stay as they were.
OPTIONAL: dict[str, tuple[str, ...]] = {"vgg": ("conv_widths",), "resnet": ("mid_widths",), "mobilenet": (), "mlp": ()}
# ``pathlevel``: a residual or dense base network whose blocks hold a tree cell found by ``pathlevel_nas``
# (search_spaces/kit/pathlevel.py); not a reference architecture, so it stays out of ARCHITECTURES.
DEFAULTS["pathlevel"] = {
    "base": "resnet",
    "stem": 16,
    "widths": [16, 32],
    "blocks_per_stage": 1,
    "growth": 12,
    "dense_layers": [3, 3],
    "tree": {"split": None, "merge": None, "branches": [{"op": "sep3x3", "child": None}]},
}
# A channel-pruned pathlevel network's per-edge, first-transition and densenet transition widths (see there).
OPTIONAL["pathlevel"] = ("edge_widths", "stem_transition", "trans_widths")


class ModelError(ValueError):
    """An architecture or model file that cannot be used; the message is meant for the person who sent it."""


# --- architecture dicts -------------------------------------------------------------------------------


def complete_arch(arch: dict[str, Any]) -> dict[str, Any]:
    """Fill the family's defaults into ``arch`` and check every field; raise :class:`ModelError` if wrong."""
    if not isinstance(arch, dict):
        raise ModelError("the architecture must be a JSON object")
    name = arch.get("name")
    if name not in DEFAULTS:
        raise ModelError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    unknown = sorted(set(arch) - set(_COMMON) - set(DEFAULTS[name]) - set(OPTIONAL[name]))
    if unknown:
        takes = [*DEFAULTS[name], *OPTIONAL[name]]
        raise ModelError(f"{name} has no parameter {', '.join(unknown)}; it takes {', '.join(takes)}")
    full = {**copy.deepcopy(DEFAULTS[name]), **copy.deepcopy(arch)}
    full["input_shape"] = _int_list(full, "input_shape", minimum=1, required=True)
    full["num_classes"] = _positive_int(full, "num_classes", minimum=2)
    _check_family(full)
    return full


def default_arch(name: str, info: DatasetInfo) -> dict[str, Any]:
    """The reference architecture ``name`` sized for dataset ``info``, with every parameter spelled out."""
    return complete_arch({"name": name, "input_shape": list(info.input_shape), "num_classes": info.num_classes})


def _check_family(arch: dict[str, Any]) -> None:
    name = arch["name"]
    if name == "pathlevel":
        _check_pathlevel(arch)
        return
    if name != "mlp" and len(arch["input_shape"]) != 3:
        raise ModelError(f"{name} needs image input C×H×W; got input_shape {arch['input_shape']}")
    if name in ("vgg", "resnet"):
        arch["widths"] = _int_list(arch, "widths", minimum=1, required=True)
        key = "convs_per_stage" if name == "vgg" else "blocks_per_stage"
        arch[key] = _positive_int(arch, key)
    if name == "vgg":
        arch["fc"] = _int_list(arch, "fc", minimum=1)
        _check_per_layer(arch, "conv_widths", len(arch["widths"]) * arch["convs_per_stage"], "convolution")
    if name == "resnet":
        _check_per_layer(arch, "mid_widths", len(arch["widths"]) * arch["blocks_per_stage"], "block")
    if name == "mobilenet":
        arch["stem"] = _positive_int(arch, "stem")
        arch["widths"] = _int_list(arch, "widths", minimum=1, required=True)
        arch["strides"] = _int_list(arch, "strides", minimum=1, required=True)
        if len(arch["strides"]) != len(arch["widths"]) or max(arch["strides"]) > 2:
            raise ModelError("mobilenet needs one stride (1 or 2) per entry of widths")
        mult = arch["width_mult"]
        if isinstance(mult, bool) or not isinstance(mult, int | float) or not 0 < mult <= 4:
            raise ModelError("width_mult must be a number in (0, 4]")
    if name == "mlp":
        arch["hidden"] = _int_list(arch, "hidden", minimum=1)
        if not isinstance(arch["batchnorm"], bool):
            raise ModelError("batchnorm must be true or false")


def _check_per_layer(arch: dict[str, Any], key: str, expected: int, what: str) -> None:
    if key not in arch:
        return
    arch[key] = _int_list(arch, key, minimum=1, required=True)
    if len(arch[key]) != expected:
        raise ModelError(f"{key} needs one width per {what} ({expected}); got {len(arch[key])}")


def _positive_int(arch: dict[str, Any], key: str, minimum: int = 1) -> int:
    value = arch.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 100_000:
        raise ModelError(f"{key} must be an integer ≥ {minimum}; got {value!r}")
    return value


def _int_list(arch: dict[str, Any], key: str, *, minimum: int, required: bool = False) -> list[int]:
    value = arch.get(key)
    ok = (
        isinstance(value, list | tuple)
        and len(value) <= 64
        and all(isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= 100_000 for v in value)
    )
    if not isinstance(value, list | tuple) or not ok or (required and not value):
        raise ModelError(
            f"{key} must be a {'non-empty ' if required else ''}list of integers ≥ {minimum}; got {value!r}"
        )
    return list(value)


# --- building -----------------------------------------------------------------------------------------


def build_model(arch: dict[str, Any]) -> nn.Module:
    """A freshly initialised model for ``arch`` (see the module docstring for the families)."""
    arch = complete_arch(arch)
    builder = {"vgg": _vgg, "resnet": _resnet, "mobilenet": _mobilenet, "mlp": _mlp, "pathlevel": _pathlevel}[
        arch["name"]
    ]
    return builder(arch)


def _check_pathlevel(arch: dict[str, Any]) -> None:
    from search_spaces.kit import pathlevel as network

    if len(arch["input_shape"]) != 3:
        raise ModelError(f"pathlevel needs image input C×H×W; got input_shape {arch['input_shape']}")
    _check_pathlevel_cells(arch)
    try:
        network.complete({k: v for k, v in arch.items() if k != "name"})
    except ValueError as exc:
        raise ModelError(f"pathlevel: {exc}") from None


def _check_pathlevel_cells(arch: dict[str, Any]) -> None:
    """Bound the number of cells before :func:`.pathlevel.complete` lays out every one of them (a few numbers in
    a dict could otherwise ask for millions)."""
    for key in ("widths", "dense_layers"):
        value = arch.get(key)
        if isinstance(value, list) and len(value) > 64:
            raise ModelError(f"pathlevel: {key} has {len(value)} stages; the limit is 64")
    widths, blocks, dense = arch.get("widths"), arch.get("blocks_per_stage"), arch.get("dense_layers")
    if arch.get("base") == "densenet" and isinstance(dense, list) and all(isinstance(v, int) for v in dense):
        cells = sum(dense)
    elif isinstance(widths, list) and isinstance(blocks, int):
        cells = len(widths) * blocks
    else:
        return  # a wrong type: network.complete says what is wrong
    if cells > MAX_PATHLEVEL_CELLS:
        raise ModelError(f"pathlevel: the network has {cells:,} cells; the limit is {MAX_PATHLEVEL_CELLS:,}")


def _pathlevel(arch: dict[str, Any]) -> nn.Module:
    from search_spaces.kit import pathlevel as network

    return network.build_network({k: v for k, v in arch.items() if k != "name"})


def conv_bn_relu(c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Convolution (no bias: BatchNorm's shift replaces it), BatchNorm, ReLU."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            bn=nn.BatchNorm2d(c_out),
            relu=nn.ReLU(inplace=True),
        )
    )


def _head(c_in: int, hidden: list[int], num_classes: int) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, width in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(c_in, width)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
        c_in = width
    layers["out"] = nn.Linear(c_in, num_classes)
    return nn.Sequential(layers)


def _global_pool() -> nn.Sequential:
    return nn.Sequential(OrderedDict(avg=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten()))


def _vgg(arch: dict[str, Any]) -> nn.Module:
    c_in, size = arch["input_shape"][0], min(arch["input_shape"][1:])
    per_stage = arch["convs_per_stage"]
    conv_widths = arch.get("conv_widths") or [w for w in arch["widths"] for _ in range(per_stage)]
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    for s in range(1, len(arch["widths"]) + 1):
        for k in range(1, per_stage + 1):
            width = conv_widths[(s - 1) * per_stage + k - 1]
            stages[f"stage{s}_{k}"] = conv_bn_relu(c_in, width)
            c_in = width
        if size >= 2:  # an 8×8 input runs out of resolution before a 28×28 one does
            stages[f"pool{s}"] = nn.MaxPool2d(2)
            size //= 2
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(stages), pool=_global_pool(), classifier=_head(c_in, arch["fc"], arch["num_classes"])
        )
    )


class BasicBlock(nn.Module):
    """Two 3×3 conv + BN with an identity shortcut, or a 1×1 conv + BN one when the shape changes.

    ``mid`` is the width between the two convolutions (``c_out`` unless channel-pruned)."""

    def __init__(self, c_in: int, c_out: int, stride: int, mid: int | None = None) -> None:
        super().__init__()
        mid = c_out if mid is None else mid
        self.conv1 = nn.Conv2d(c_in, mid, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                OrderedDict(conv=nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), bn=nn.BatchNorm2d(c_out))
            )
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


def _resnet(arch: dict[str, Any]) -> nn.Module:
    widths, size = arch["widths"], min(arch["input_shape"][1:])
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=conv_bn_relu(arch["input_shape"][0], widths[0]))
    c_in = widths[0]
    mids = arch.get("mid_widths")
    for s, width in enumerate(widths, start=1):
        for b in range(1, arch["blocks_per_stage"] + 1):
            stride = 2 if (s > 1 and b == 1 and size >= 2) else 1
            size //= stride
            mid = mids[(s - 1) * arch["blocks_per_stage"] + b - 1] if mids else None
            layers[f"stage{s}_{b}"] = BasicBlock(c_in, width, stride, mid)
            c_in = width
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(layers), pool=_global_pool(), classifier=_head(c_in, [], arch["num_classes"])
        )
    )


def _mobilenet(arch: dict[str, Any]) -> nn.Module:
    def scaled(width: int) -> int:
        return max(1, int(round(width * arch["width_mult"])))

    size = min(arch["input_shape"][1:])
    c_in = scaled(arch["stem"])
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=conv_bn_relu(arch["input_shape"][0], c_in))
    for i, (width, stride) in enumerate(zip(arch["widths"], arch["strides"], strict=True), start=1):
        stride = stride if size >= 2 else 1
        size = (size + stride - 1) // stride
        block = nn.Sequential(
            OrderedDict(
                dw=conv_bn_relu(c_in, c_in, stride=stride, groups=c_in), pw=conv_bn_relu(c_in, scaled(width), kernel=1)
            )
        )
        layers[f"block{i}"] = block
        c_in = scaled(width)
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(layers), pool=_global_pool(), classifier=_head(c_in, [], arch["num_classes"])
        )
    )


def _mlp(arch: dict[str, Any]) -> nn.Module:
    c_in = 1
    for d in arch["input_shape"]:
        c_in *= d
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    for i, width in enumerate(arch["hidden"], start=1):
        layers[f"fc{i}"] = nn.Linear(c_in, width)
        if arch["batchnorm"]:
            layers[f"bn{i}"] = nn.BatchNorm1d(width)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
        c_in = width
    layers["out"] = nn.Linear(c_in, arch["num_classes"])
    return nn.Sequential(layers)


# --- a trained network a job starts from -----------------------------------------------------------------


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model``'s state dict (safe to keep while the model trains on)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@dataclass
class TrainedModel:
    """A trained network a job starts from (pruning, compression): its complete architecture, its weights on
    the CPU, its validation accuracy and where it came from ("input model", "trained 20 epochs")."""

    arch: dict[str, Any]
    state: dict[str, torch.Tensor]
    val_accuracy: float
    source: str

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """A fresh copy of the network with these weights, on ``device``, in training mode."""
        model = build_model(self.arch)
        model.load_state_dict(self.state)
        return model.to(device)

    def to_dict(self) -> dict[str, Any]:
        """Plain tensors and strings only (the architecture as JSON), so ``torch.load(weights_only=True)``
        reads it back."""
        return {
            "arch": json.dumps(self.arch),
            "state": self.state,
            "val_accuracy": self.val_accuracy,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainedModel:
        return cls(json.loads(data["arch"]), data["state"], float(data["val_accuracy"]), str(data["source"]))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(self.to_dict(), buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> TrainedModel:
        return cls.from_dict(torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu"))


def output_entry(artifact: str | None, arch: dict[str, Any] | None) -> dict[str, Any]:
    """The two result keys that make a job's model the input of another: ``output_model`` (the artifact's name)
    and ``output_arch`` (its complete architecture, which the service checks a child job against at submit)."""
    if artifact is None or arch is None:
        return {"output_model": None, "output_arch": None}
    return {"output_model": artifact, "output_arch": complete_arch(arch)}


# --- files --------------------------------------------------------------------------------------------


def save_model(model: nn.Module, arch: dict[str, Any], path: Path) -> None:
    """Write ``model``'s weights and its ``arch`` to one file, atomically (readers never see half a file)."""
    payload = {
        "format": FORMAT,
        "arch": complete_arch(arch),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_model(
    path: Path, *, architecture: dict[str, Any] | None = None, limits: SizeLimits | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Read a model file written by :func:`save_model`, or a bare ``state_dict`` plus its ``architecture``.

    The file is opened with ``torch.load(weights_only=True)``, so a pickle that would run code is refused
    with :class:`ModelError` before anything in it executes. When ``architecture`` is given it is used
    instead of the one stored in the file. With ``limits``, an architecture over them is refused before the model
    is built (see :mod:`.sizing`). Returns the model (on the CPU, in eval mode) and the complete architecture dict.
    """
    payload = _read_weights_only(Path(path))
    state_dict, stored_arch = _unpack(payload)
    arch = architecture if architecture is not None else stored_arch
    if arch is None:
        raise ModelError(
            'the file holds only weights; name its architecture (e.g. {"name": "mlp", '
            '"input_shape": [16], "num_classes": 5})'
        )
    arch = complete_arch(arch)
    if limits is not None:
        from search_spaces.kit.sizing import check_size

        check_size(arch, limits)
    model = build_model(arch)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelError(
            f"the weights do not fit the {arch['name']} architecture: {' '.join(line.strip() for line in first[:4])}"
        ) from None
    return model.eval(), arch


def _read_weights_only(path: Path) -> Any:
    if not path.is_file():
        raise ModelError(f"no such file: {path.name}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad input; all mean "refused"
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise ModelError(
                "the file contains Python objects other than tensors (an arbitrary pickle), which "
                "are refused; save a state_dict or use save_model"
            ) from None
        raise ModelError(f"not a PyTorch weights file: {text[:200]}") from None


def _unpack(payload: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    if isinstance(payload, dict) and "state_dict" in payload:
        state_dict, arch = payload["state_dict"], payload.get("arch")
    else:
        state_dict, arch = payload, None
    if (
        not isinstance(state_dict, dict)
        or not state_dict
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items())
    ):
        raise ModelError("the file must hold a state_dict (a mapping of names to tensors)")
    if arch is not None and not isinstance(arch, dict):
        raise ModelError("the stored architecture is not a JSON object")
    return state_dict, arch
