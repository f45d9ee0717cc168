"""A documented FPGA resource and latency estimate for hls4ml MLP projects (no synthesis tool here).

Every figure comes from the *applied* configuration (:mod:`search_spaces.hls.project`), per dense layer
with ``n_in`` inputs, ``n_out`` outputs, reuse factor ``RF``, ``n_zeros`` pruned weights, weight width
``Ww``, input width ``Wi``, accumulator width ``Wa`` and result width ``Wo``:

* **Multipliers** ``M = ceil(n_in·n_out / RF) − floor(n_zeros / RF)``: hls4ml's ``multiplier_limit``
  (``nnet_dense.h``, written into every ``firmware/parameters.h``); the HLS tool instantiates that many.
* **DSP** ``= M · ceil(max(Ww,Wi)/25) · ceil(min(Ww,Wi)/18)`` when ``Ww > 8``, else ``0``: a DSP48 slice
  multiplies 25×18 bits, so a wider product takes more slices; products with a weight of 8 bits or less
  are mapped to LUTs by Vivado HLS (Duarte et al. 2018, §5; the service spec's "below ~9 bits").
* **BRAM (18 Kb blocks)** ``= ceil(n_in·n_out·Ww / (RF·36))`` with the Resource strategy and ``RF > 1``
  (weights partitioned into ``RF``-deep words across 36-bit-wide block RAMs), else 0 (weights in fabric).
* **LUT** ``= M·Wa`` (one adder per multiplier into the accumulator, a LUT per bit) ``+ M_lut·⌈Ww·Wi/2⌉``
  (LUT multipliers, about half a LUT per partial-product bit) ``+ [RF>1]·M·Wi`` (input multiplexers that
  feed each multiplier ``RF`` operands); activations add ``n·Wo`` (ReLU compare/select).
* **FF** ``= (n_in·n_out − n_zeros)·Ww`` for weights kept in registers ``+ n_out·Wo`` for the outputs:
  hls4ml's rule of thumb (weights·W + outputs·W_out); ReLU adds ``n·Wo``.
* **Softmax** (table based, ``n`` classes), calibrated on the one real report we have (the 10-class
  softmax in ``tests/fixtures/vivado/pruned_cnn_csynth.rpt``: 4 BRAM_18K, 10 DSP, 788 FF, 3,096 LUT,
  7 cycles): ``DSP = n``, ``BRAM = 2·ceil(n/5)``, ``FF = 79·n``, ``LUT = 310·n``, 7 cycles.
* **Latency** (cycles) per dense layer ``= RF + 1 + ceil(log2(max(2, ceil(n_in/RF))) / L)`` where ``L``
  adder-tree levels fit in one clock (3 at 5 ns, scaled with the clock period): ``RF`` cycles of
  multiplications, one register stage, then the adder tree; ReLU takes 1 cycle; plus 1 for the input
  register. For the hls4ml paper's jet tagger (16-64-32-32-5, 16 bits, RF 1, 200 MHz) this gives 27
  cycles = 135 ns, the paper's "on the scale of 100 ns".
* **Initiation interval** ``= max RF`` over the layers (io_parallel: the whole network is one pipeline
  that accepts a new input every ``RF`` cycles of its slowest layer).

How rough: none of this has been compared with a synthesis run of these networks (no Vivado/Vitis on the
machines this was built on). DSP follows hls4ml's own multiplier count, so it should be the closest;
latency has one calibration point (the paper's jet tagger); LUT and FF are rules of thumb. Import a real
C-synthesis report for numbers to rely on: it is stored beside the estimate.
"""

from __future__ import annotations

import math
from typing import Any

from search_spaces.hls.parts import Part, utilisation
from search_spaces.hls.project import AppliedConfig, DenseLayer

LUT_MULT_MAX_WEIGHT_BITS = 8
DSP_A_BITS, DSP_B_BITS = 25, 18
BRAM_WIDTH_BITS = 36
ADDER_LEVELS_PER_5NS = 3
SOFTMAX = {"dsp_per_class": 1, "bram_per_5_classes": 2, "ff_per_class": 79, "lut_per_class": 310, "cycles": 7}
ACCURACY_NOTE = (
    "Estimate from the applied hls4ml configuration, not checked against a synthesis run: DSP follows "
    "hls4ml's multiplier_limit, latency is calibrated on one point, LUT and FF are rules of thumb. "
    "Import a C-synthesis report for real numbers."
)


def dsp_per_multiplier(weight_bits: int, input_bits: int) -> int:
    """DSP slices one ``weight_bits × input_bits`` product takes (0: it is built from LUTs)."""
    if weight_bits <= LUT_MULT_MAX_WEIGHT_BITS:
        return 0
    wide, narrow = max(weight_bits, input_bits), min(weight_bits, input_bits)
    return math.ceil(wide / DSP_A_BITS) * math.ceil(narrow / DSP_B_BITS)


def dense_estimate(layer: DenseLayer, clock_period_ns: float) -> dict[str, Any]:
    """Resources and latency of one dense layer (formulas in the module docstring)."""
    m = layer.multiplier_limit
    ww, wi, wa, wo = layer.weight.width, layer.input.width, layer.accum.width, layer.result.width
    per_mult = dsp_per_multiplier(ww, wi)
    dsp = m * per_mult
    lut_mults = m if per_mult == 0 else 0
    in_bram = layer.strategy == "resource" and layer.reuse_factor > 1
    bram = math.ceil(layer.n_weights * ww / (layer.reuse_factor * BRAM_WIDTH_BITS)) if in_bram else 0
    lut = m * wa + lut_mults * math.ceil(ww * wi / 2) + (m * wi if layer.reuse_factor > 1 else 0)
    ff = (0 if in_bram else (layer.n_weights - layer.n_zeros) * ww) + layer.n_out * wo
    levels = max(1, round(ADDER_LEVELS_PER_5NS * clock_period_ns / 5.0))
    fan_in = max(2, math.ceil(layer.n_in / layer.reuse_factor))
    cycles = layer.reuse_factor + 1 + math.ceil(math.log2(fan_in) / levels)
    return {
        "layer": layer.name,
        "multipliers": m,
        "dsp": dsp,
        "lut": lut,
        "ff": ff,
        "bram": bram,
        "latency_cycles": cycles,
        "reuse_factor": layer.reuse_factor,
        "strategy": layer.strategy,
    }


def estimate(applied: AppliedConfig, part: Part, clock_period_ns: float | None = None) -> dict[str, Any]:
    """The whole network's estimate: totals, per-layer rows, utilisation of ``part`` and whether it fits."""
    clock = clock_period_ns or applied.clock_period_ns or 5.0
    rows = [dense_estimate(layer, clock) for layer in applied.dense]
    dsp = sum(r["dsp"] for r in rows)
    lut = sum(r["lut"] for r in rows)
    ff = sum(r["ff"] for r in rows)
    bram = sum(r["bram"] for r in rows)
    cycles = 1 + sum(r["latency_cycles"] for r in rows)
    for act in applied.activations:
        if act.function.startswith("softmax"):
            n = act.n_in
            dsp += SOFTMAX["dsp_per_class"] * n
            bram += SOFTMAX["bram_per_5_classes"] * math.ceil(n / 5)
            ff += SOFTMAX["ff_per_class"] * n
            lut += SOFTMAX["lut_per_class"] * n
            cycles += SOFTMAX["cycles"]
        else:
            lut += act.n_in * act.result.width
            ff += act.n_in * act.result.width
            cycles += 1
    ii = max(layer.reuse_factor for layer in applied.dense)
    util = utilisation(part, dsp=dsp, lut=lut, ff=ff, bram_18k=bram)
    return {
        "dsp": int(dsp),
        "lut": int(lut),
        "ff": int(ff),
        "bram": float(bram),
        "latency_cycles": int(cycles),
        "latency_ns": round(cycles * clock, 3),
        "initiation_interval": int(ii),
        "utilisation": util,
        "fits": max(util.values()) <= 100.0,
        "layers": rows,
        "clock_period_ns": clock,
        "part": part.part,
    }
