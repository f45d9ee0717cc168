"""CPU latency: measuring a model, and the per-layer latency model behind the ``latency`` mode.

AMC's latency-constrained search uses a look-up table of measured layer latencies (He et al. 2018,
§4.3). Here each conv/linear layer is timed alone at full width and at half its input and output
channels on this CPU, and its latency is modelled as ``α·MACs + β`` through those two points; the rest of
the network (BatchNorm, ReLU, pooling, Python overhead) is the constant difference between the measured
whole model and the sum of its layers. The model is linear in each unit's kept channels, so the action
wall works on it exactly as on FLOPs. Reported latencies are always measured, never modelled.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from search_spaces.adc import graph as g

BATCH = 32  # samples per timed forward pass: small models' per-sample time is mostly Python overhead


@torch.inference_mode()
def measure_latency(
    model: nn.Module, input_shape: Sequence[int], *, batch: int = BATCH, repeats: int = 20, warmup: int = 3
) -> float:
    """Median milliseconds of one forward pass of ``batch`` samples on the CPU, in eval mode."""
    was_training = model.training
    model.eval()
    x = torch.rand((batch, *input_shape))
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return 1000.0 * statistics.median(times)


def _layer_module(layer: g.Layer, c_in: int, c_out: int) -> tuple[nn.Module, tuple[int, ...]]:
    if layer.kind == g.LINEAR:
        return nn.Linear(c_in, c_out, bias=layer.bias), (c_in,)
    groups = c_in if layer.kind == g.DEPTHWISE else layer.groups
    if layer.kind == g.DEPTHWISE:
        c_out = c_in
    conv = nn.Conv2d(
        c_in, c_out, layer.kernel, stride=layer.stride, padding=layer.kernel // 2, groups=groups, bias=layer.bias
    )
    return conv, (c_in, *layer.in_hw)


@dataclass(frozen=True)
class LatencyTable:
    """Per-layer ``(α, β)`` in milliseconds per batch of :data:`BATCH`, and the constant overhead."""

    coeffs: dict[str, tuple[float, float]]
    overhead: float

    @classmethod
    def measure(cls, model: nn.Module, graph: g.Graph, *, repeats: int = 15) -> LatencyTable:
        """Time every conv/linear layer alone at full and half width, and the whole model, on this CPU."""
        coeffs: dict[str, tuple[float, float]] = {}
        layer_sum = 0.0
        for layer in graph.layers:
            full_in, full_out = layer.c_in, layer.c_out
            half_in = max(1, full_in // 2) if layer.in_parts()[1] else full_in
            half_out = max(1, full_out // 2) if layer.out_parts()[1] else full_out
            points = []
            for c_in, c_out in ((full_in, full_out), (half_in, half_out)):
                module, shape = _layer_module(layer, c_in, c_out)
                points.append((g.layer_macs(layer, c_in, c_out), measure_latency(module, shape, repeats=repeats)))
            (m_full, t_full), (m_half, t_half) = points
            alpha = max(0.0, (t_full - t_half) / (m_full - m_half)) if m_full > m_half else 0.0
            beta = max(0.0, t_full - alpha * m_full)
            coeffs[layer.name] = (alpha, beta)
            layer_sum += alpha * m_full + beta
        overhead = max(0.0, measure_latency(model, graph.input_shape, repeats=repeats) - layer_sum)
        return cls(coeffs, overhead)

    def resource(self) -> g.Resource:
        coeffs = self.coeffs

        def per_layer(layer: g.Layer, c_in: int, c_out: int) -> float:
            alpha, beta = coeffs[layer.name]
            return alpha * g.layer_macs(layer, c_in, c_out) + beta

        return g.Resource("latency", per_layer, self.overhead)

    def to_json(self) -> dict[str, Any]:
        return {"coeffs": {k: list(v) for k, v in self.coeffs.items()}, "overhead": self.overhead}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyTable:
        return cls({k: (float(v[0]), float(v[1])) for k, v in data["coeffs"].items()}, float(data["overhead"]))
