"""The float MLP as the plain layer stack hls4ml's PyTorch frontend converts: Linear/ReLU/Softmax, BatchNorm
folded in. A convolutional network becomes a graph of layers instead (:mod:`search_spaces.hls.graph`)."""

from __future__ import annotations

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
