"""The float network as the plain layer stack hls4ml's PyTorch frontend converts: the kit MLP as
Linear/ReLU/Softmax and the kit's VGG-style CNN as Conv2d/ReLU/pooling then Linear/ReLU/Softmax, BatchNorm
folded in; and the (``n_in``, ``n_out``) of the product kernel hls4ml builds for each weighted layer."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
from torch import nn

from search_spaces.hls.config import SweepError


def to_hls_stack(model: nn.Module) -> tuple[nn.Sequential, list[str]]:
    """The kit MLP as Linear/ReLU layers ending in Softmax, BatchNorm folded into the Linear before it
    (exact in eval mode). Refuses anything that is not a plain MLP."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    dense: list[str] = []
    last: nn.Linear | None = None  # the Linear layer a BatchNorm is folded into
    modules = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    i = 0
    for module in modules:
        if isinstance(module, nn.Flatten):
            continue
        if isinstance(module, nn.Linear):
            i += 1
            linear = nn.Linear(module.in_features, module.out_features)
            linear.load_state_dict(module.state_dict())
            name = f"fc{i}"
            layers[name] = last = linear
            dense.append(name)
        elif isinstance(module, nn.BatchNorm1d):
            if last is None:
                raise SweepError("a BatchNorm before the first Linear layer cannot be folded")
            _fold_bn(last, module)
        elif isinstance(module, nn.ReLU):
            layers[f"relu{i}"] = nn.ReLU()
        else:
            raise SweepError(
                f"hls4ml_sweep takes MLPs (Linear, BatchNorm1d, ReLU); the model has {type(module).__name__}"
            )
    if not dense:
        raise SweepError("the model has no Linear layer")
    layers["softmax"] = nn.Softmax(dim=1)
    return nn.Sequential(layers).eval(), dense


def _fold_bn(linear: nn.Linear, bn: nn.BatchNorm1d) -> None:
    if bn.running_mean is None or bn.running_var is None:
        raise SweepError("a BatchNorm without running statistics cannot be folded")
    if linear.bias is None:  # to_hls_stack builds every Linear with a bias
        raise SweepError("a BatchNorm cannot be folded into a Linear layer without a bias")
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        linear.weight.mul_(scale[:, None])
        linear.bias.copy_((linear.bias - bn.running_mean) * scale + bn.bias)


def _fold_bn2d(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
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


def to_hls_cnn(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Sequential, list[str]]:
    """The kit's VGG-style CNN as the layers hls4ml's PyTorch frontend converts in io_stream: Conv2d (its
    BatchNorm folded in), ReLU, MaxPool2d, the global average pool as an ``AvgPool2d`` over the whole
    remaining image (hls4ml 1.3 has no handler for ``AdaptiveAvgPool2d``; equal when the pool covers the
    image), Flatten, Linear, ReLU and a Softmax over the last dimension (io_stream needs ``dim=-1``).
    Refuses grouped (depthwise) convolutions, which hls4ml 1.3's PyTorch frontend does not convert."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    weighted: list[str] = []
    modules = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    shape = torch.Size([1, *input_shape])
    pending: nn.Conv2d | None = None
    n_conv = n_fc = n_pool = 0

    def flush() -> None:
        nonlocal pending, n_conv
        if pending is not None:
            n_conv += 1
            layers[f"conv{n_conv}"] = pending
            weighted.append(f"conv{n_conv}")
            pending = None

    with torch.no_grad():
        for module in modules:
            if isinstance(module, nn.Conv2d):
                flush()
                if module.groups != 1:
                    raise SweepError("a grouped (depthwise) Conv2d cannot be converted by hls4ml's PyTorch frontend")
                pending = copy.deepcopy(module)
                shape = pending(torch.zeros(shape)).shape
            elif isinstance(module, nn.BatchNorm2d):
                if pending is None:
                    raise SweepError("a BatchNorm2d not after a Conv2d cannot be folded")
                pending = _fold_bn2d(pending, module)
            elif isinstance(module, nn.ReLU):
                flush()
                prefix = "crelu" if len(shape) == 4 else "relu"
                layers[f"{prefix}{n_conv if len(shape) == 4 else n_fc}"] = nn.ReLU()
            elif isinstance(module, nn.MaxPool2d):
                flush()
                n_pool += 1
                layers[f"pool{n_pool}"] = nn.MaxPool2d(module.kernel_size, module.stride)
                shape = layers[f"pool{n_pool}"](torch.zeros(shape)).shape
            elif isinstance(module, nn.AdaptiveAvgPool2d):
                flush()
                if module.output_size not in (1, (1, 1)):
                    raise SweepError("only a global AdaptiveAvgPool2d (output size 1) can be converted")
                if shape[-1] > 1 or shape[-2] > 1:
                    layers["gap"] = nn.AvgPool2d((int(shape[-2]), int(shape[-1])))
                shape = torch.Size([shape[0], shape[1], 1, 1])
            elif isinstance(module, nn.Flatten):
                flush()
                layers["flatten"] = nn.Flatten()
                shape = torch.Size([shape[0], math.prod(shape[1:])])
            elif isinstance(module, nn.Linear):
                flush()
                n_fc += 1
                linear = nn.Linear(module.in_features, module.out_features)
                linear.load_state_dict(module.state_dict())
                layers[f"fc{n_fc}"] = linear
                weighted.append(f"fc{n_fc}")
                shape = torch.Size([shape[0], module.out_features])
            else:
                raise SweepError(
                    f"hls4ml_sweep converts Conv2d, BatchNorm2d, ReLU, MaxPool2d, a global average pool and Linear "
                    f"layers; the model has {type(module).__name__}"
                )
    flush()
    if not any(name.startswith("conv") for name in weighted) or not any(name.startswith("fc") for name in weighted):
        raise SweepError("a convolutional network needs a Conv2d and a Linear layer")
    layers["softmax"] = nn.Softmax(dim=-1)
    return nn.Sequential(layers).eval(), weighted


def _kernel_shape(module: nn.Module) -> tuple[int, int]:
    """(``n_in``, ``n_out``) of the dense product kernel hls4ml builds for a layer (a conv: its window)."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return kh * kw * module.in_channels, module.out_channels
    assert isinstance(module, nn.Linear)
    return module.in_features, module.out_features
