"""Parameter, multiply-accumulate and FLOP counts of any PyTorch model.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the matrix products of
one forward pass (convolutions, ``mm``/``addmm``/``bmm``, attention) as 2 FLOPs per multiply-accumulate
and ignores element-wise work (BatchNorm, ReLU, pooling, bias adds). Hence ``macs = flops / 2``, the
figure papers quote as "MACs" or "mult-adds" (e.g. MobileNet's Table 1; AMC's FLOPs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """``{"params", "macs", "flops"}`` of ``model`` for one sample of shape ``input_shape`` (no batch axis).

    ``params`` counts every parameter element (masked-out weights included); the forward pass runs in
    eval mode under ``no_grad`` and the model's mode is restored afterwards.
    """
    params = sum(p.numel() for p in model.parameters())
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    sample = torch.zeros((1, *input_shape), device=device, dtype=dtype)
    was_training = model.training
    model.eval()  # BatchNorm must not update its running statistics from a dummy input
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(sample)
    finally:
        model.train(was_training)
    flops = int(counter.get_total_flops())
    return {"params": int(params), "macs": flops // 2, "flops": flops}
