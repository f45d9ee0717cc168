"""A documented FPGA resource and latency estimate for hls4ml MLP projects (no synthesis tool here).

Every figure comes from the *applied* configuration (:mod:`search_spaces.hls.project`), per dense layer with
``N = n_in·n_out`` weights, ``n_zeros`` of them pruned, reuse factor ``RF``, signed operand widths ``Ww``
(weight) and ``Wi`` (input), result width ``Wo`` and adder width ``Wa = min(accum width, Wi + Ww +
ceil(log2 n_in))`` (an adder is never wider than the exact sum).

**Products and multipliers, per kernel** (hls4ml 1.3 ``nnet_dense_latency.h`` / ``nnet_dense_resource.h``
and hls4ml's own DSP estimate, ``optimization/dsp_aware_pruning/objectives/vivado_objectives.py``):

* ``RF = 1`` (both strategies: the Resource kernel puts weights in a ROM only when ``RF > 1``): every weight
  is a constant of a fully unrolled product, so a zero weight costs nothing and ``P = N − n_zeros``
  products are built in parallel; hls4ml's estimate credits one DSP per pruned weight here, and nowhere
  else.
* ``RF > 1``: ``M = ceil(N / RF)`` shared multipliers whatever the zeros: the Resource kernel unrolls
  ``block_factor = ceil(N/RF)`` multiplications per cycle, and a shared multiplier of the Latency kernel is
  saved only if every product mapped onto it is zero (hls4ml's estimate: no saving at ``RF > 1``;
  fastmachinelearning/hls4ml#17). ``multiplier_limit`` of ``parameters.h`` (which subtracts
  ``n_zeros/RF``) is only the ceiling the Latency kernel's ``ALLOCATION`` pragma puts on it.

**DSP.** One product takes ``ceil(max/A)·ceil(min/B)`` slices, ``A × B`` = 27 × 18 for the DSP48E2 of
UltraScale(+) and 25 × 18 for the DSP48E1 of 7-series parts (:mod:`~search_spaces.hls.parts`; a wider
product is split, fastmachinelearning/hls4ml#31). Which products get one:

* Constant weights (``RF = 1``): the HLS tool multiplies by a constant ``k = o·2^s`` (``o`` odd) as a shift
  of ``o``, and builds it from LUT shift-and-adds unless both operands are wider than
  ``LUT_PRODUCT_MAX_BITS`` = 6 signed bits. So a DSP per nonzero weight whose ``o`` needs 7 or more signed
  bits, if the input has 7 or more. Observed, not documented by the vendor: in the real Vivado HLS 2020.1
  report ``quantized_pruned_cnn_csynth.rpt`` (fixtures) the dense layers with 6-bit weights (QKeras
  ``quantized_bits(6,0)`` in the hls4ml tutorial, ``ap_fixed<6,1>``, so ``o`` ≤ 5 bits) take 6, 0 and 83
  DSPs for 4,032, 2,688 and 640 weights, while in ``pruned_cnn_csynth.rpt`` the unpruned 16-bit output
  layer takes 549 DSPs for 640 products (86 %); hls4ml issue #893 (the compiler narrows constants that need
  fewer bits). In a public Vitis HLS 2024.1 report (below) the products the tool kept are ``mul_12s_6s`` …
  ``mul_15s_10ns`` DSP cores and the rest became add/sub expressions; Vitis kept some constants of 6 signed
  bits too, so with Vitis this rule can undercount narrow weights. When the project's weight values were read
  (``DenseLayer.constant_bits``, the sweep) the wide constants are counted; otherwise (the CLI) the weights
  are assumed spread evenly over ``|w| < 1`` (or the type's range if smaller) and the share of grid values
  with a wide ``o`` is used: 0 for 5 fractional bits, 25 % for 6, 50 % for 7, 89 % for 10.
* Multiplexed weights (``RF > 1``): every multiplier takes DSPs unless the weight is under 9 bits, hls4ml's
  own rule (``VivadoDSPEstimator``: ``weight_precision.width < 9`` → no DSP). Binary and ternary weights
  never need one (hls4ml's ``weight_binary``/``weight_ternary`` products).

**BRAM (18 Kb blocks)** ``= ceil(N·Ww / (RF·36))`` with the Resource strategy and ``RF > 1`` (weights in a
ROM), else 0: hls4ml's ``VivadoMultiObjectiveEstimator``.

**LUT** — calibrated on the per-instance rows of two public Vitis HLS 2024.1 C-synthesis reports of the jet
tagger (16-64-32-32-5, xcu50, 5 ns; github.com/Lrozzy/hls4ml_OpenML, ``model_2.1/hls4ml_prj_prune_60``:
``ap_fixed<16,6>`` everywhere, 75 % pruned, 817 DSP / 35,326 LUT / 8,462 FF / 14 cycles; and
``model_3.1_1/hls4ml_prj``: HGQ, 8–10-bit weights, 60 DSP / 88,980 LUT):

* ``LUT_PER_ADDER_BIT`` = 1.6 LUT per adder bit per product (accumulation, shift-adds of narrow constants,
  the glue around a DSP): the eight dense layers give 1.38–1.82.
* ``RF > 1``: per multiplier one ``Wa`` adder (same rate), an ``RF``-to-1 multiplexer of its input (one
  LUT6 per bit per three extra choices) and, with the Latency kernel, of its ``RF`` constant weights (a
  LUT6 holds 64 of them per bit); a LUT multiplier (a weight under 9 bits) costs ``411/324`` LUT per
  ``Ww·Wi`` bit (fastmachinelearning/hls4ml#99: 411 LUTs for an 18 × 18 LUT multiplier). Not calibrated:
  no public report at ``RF > 1``.
* ReLU ``LUT_PER_RELU_BIT`` = 2.3 LUT per output bit (six ReLU instances: 1.8–2.6).

**FF** — weights are not registers (constants at ``RF = 1``, ROM or LUT multiplexers otherwise):

* the pipeline registers inside a layer, ``FF_PER_DSP_PRODUCT_BIT`` = 0.32 of a ``Wa`` register per
  product on a DSP and ``FF_PER_LUT_PRODUCT_BIT`` = 0.11 per product built from LUTs: the two rates solve
  the two reports' dense totals (4,558 FF with 812 DSP products, 6,925 with 60), per layer they are off
  by −24 % to +81 %; at ``RF > 1`` per multiplier, plus the ``n_out`` accumulators;
* the registers between pipeline stages: the input, every dense output ``n_out·Wo`` and half of every
  activation output (public reports: 3,408 for 3,459 and 2,700 for 2,451 registers).

**Softmax**, per implementation (``parameters.h``; hls4ml 1.3's default is ``stable``): ``stable`` from the
public io_parallel report (5 classes: 5 DSP, 8 BRAM_18K, 445 FF, 790 LUT, 4 cycles), ``latency`` from the
io_stream fixture ``pruned_cnn_csynth.rpt`` (10 classes: 10 DSP, 4 BRAM_18K, 788 FF, 3,096 LUT, 7 cycles,
stream handshakes included); DSP and FF/LUT scale with the classes, BRAM per 5 classes.

**Latency** (cycles) — public reports: every dense layer at ``RF = 1`` took 1 cycle (on average up to 37
products per output, at 5 ns), ReLU 0 (folded into the pipeline), and the network ``1 + Σ(dense + 1) + softmax + 1``
(14 = 1 + 4·2 + 4 + 1 and 10 = 1 + 4·2 + 1). Per dense layer at ``RF = 1``:
``ceil(ceil(log2(f + 1)) / L)`` cycles (at least 1), ``f`` the products per output, ``L`` = 6 adder levels
per 5 ns scaled with the clock; ``RF > 1``: Latency kernel ``RF − 1`` more (its pipeline has ``II = RF``),
Resource kernel ``RF`` plus the tree of one iteration (``ReuseLoop``, ``II = 1``) — not calibrated.
**Initiation interval** ``= max RF`` (io_parallel: the network is one pipeline; both reports: 1).

What this cannot know: which constants the tool turns into shift-adds beyond the bit rule, how Vivado
versions differ (the reports span Vivado HLS 2020.1 and Vitis HLS 2024.1), anything at ``RF > 1``, io_stream,
and post-synthesis numbers (HLS estimates of LUT run high). Import a real C-synthesis report for numbers
to rely on: it is stored beside the estimate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from typing import Any, NoReturn

from search_spaces.hls.parts import CHOICES, DSP_MULTIPLIER_BITS, Part, get_part, utilisation
from search_spaces.hls.project import ActivationLayer, AppliedConfig, DenseLayer, FixedType, ProjectError, parse_type

LUT_PRODUCT_MAX_BITS = 6
VARIABLE_DSP_MIN_WEIGHT_BITS = 9
BRAM_WIDTH_BITS = 36
LUT_PER_ADDER_BIT = 1.6
FF_PER_DSP_PRODUCT_BIT = 0.32
FF_PER_LUT_PRODUCT_BIT = 0.11
LUT_PER_RELU_BIT = 2.3
FF_SHARE_OF_ACTIVATION_OUTPUT = 0.5
LUT_PER_LUT_MULTIPLIER_BIT = 411 / 324
ADDER_LEVELS_PER_5NS = 6
SOFTMAX = {
    "stable": {"dsp_per_class": 1, "bram_per_5_classes": 8, "ff_per_class": 89.0, "lut_per_class": 158.0, "cycles": 4},
    "latency": {"dsp_per_class": 1, "bram_per_5_classes": 2, "ff_per_class": 78.8, "lut_per_class": 309.6, "cycles": 7},
}
ACCURACY_NOTE = (
    "Estimate from the applied hls4ml configuration, not from a synthesis run. DSP follows hls4ml's "
    "multiplier count per kernel (pruned weights save DSPs only at reuse factor 1) and a bit-width rule "
    "observed in real reports (constant weights needing 6 bits or fewer become LUT shift-adds); LUT, FF and "
    "latency are calibrated on two public Vitis HLS reports of the jet tagger at reuse factor 1 (within "
    "about 20% there) and are not calibrated above reuse factor 1. Import a C-synthesis report for real "
    "numbers."
)


def signed_bits(t: FixedType) -> int:
    """Bits of a two's-complement operand holding ``t`` (an unsigned type needs one more)."""
    return t.width + (0 if t.signed else 1)


def dsp_slices(a_bits: int, b_bits: int, dsp_bits: tuple[int, int] = DSP_MULTIPLIER_BITS["DSP48E2"]) -> int:
    """DSP slices an ``a_bits × b_bits`` signed product takes: the wider operand on the slice's wide port."""
    wide_port, narrow_port = dsp_bits
    return math.ceil(max(a_bits, b_bits) / wide_port) * math.ceil(min(a_bits, b_bits) / narrow_port)


def dsp_per_multiplier(
    weight_bits: int, input_bits: int, dsp_bits: tuple[int, int] = DSP_MULTIPLIER_BITS["DSP48E2"]
) -> int:
    """DSP slices one shared (``RF > 1``) multiplier takes: 0 for weights under 9 bits (hls4ml's rule)."""
    if weight_bits < VARIABLE_DSP_MIN_WEIGHT_BITS:
        return 0
    return dsp_slices(weight_bits, input_bits, dsp_bits)


def wide_constant_share(weight: FixedType) -> float:
    """Share of the nonzero values of ``weight`` (spread evenly over ``|w| < 1``, or the type's range if
    smaller) whose odd part needs more than ``LUT_PRODUCT_MAX_BITS`` signed bits, i.e. a real multiplier.

    The values are ``k = 1 … 2^m − 1`` grid steps (``m`` magnitude bits); there are ``2^(L−2)`` odd numbers
    of bit length ``L ≥ 2``, each shifted ``m − L + 1`` ways."""
    fraction = weight.width - weight.integer
    magnitude = weight.width - (1 if weight.signed else 0)
    m = magnitude if fraction <= 0 else min(magnitude, fraction)
    if m < 1:
        return 0.0
    wide = sum(2 ** (length - 2) * (m - length + 1) for length in range(LUT_PRODUCT_MAX_BITS, m + 1))
    return wide / (2**m - 1)


def tree_cycles(fan_in: int, clock_period_ns: float) -> int:
    """Cycles of a multiply + adder tree over ``fan_in`` products and the bias (at least 1)."""
    levels_per_cycle = max(1, round(ADDER_LEVELS_PER_5NS * clock_period_ns / 5.0))
    return max(1, math.ceil(math.ceil(math.log2(max(1, fan_in) + 1)) / levels_per_cycle))


def dense_estimate(
    layer: DenseLayer, clock_period_ns: float, *, dsp_bits: tuple[int, int] = DSP_MULTIPLIER_BITS["DSP48E2"]
) -> dict[str, Any]:
    """Resources and latency of one dense layer (rules in the module docstring). ``latency_cycles`` is the
    layer's own (as in a report's per-instance table), without the register between pipeline stages."""
    rf = layer.reuse_factor
    wi, ww = signed_bits(layer.input), signed_bits(layer.weight)
    adder = min(layer.accum.width, wi + ww + math.ceil(math.log2(max(2, layer.n_in))))
    if rf == 1:
        if layer.constant_bits:
            products = sum(layer.constant_bits)
            wide = sum(layer.constant_bits[LUT_PRODUCT_MAX_BITS + 1 :])
            basis = "weight values"
        else:
            products = layer.n_weights - layer.n_zeros
            wide = round(products * wide_constant_share(layer.weight))
            basis = "weights assumed spread over |w| < 1"
        if wi <= LUT_PRODUCT_MAX_BITS:
            wide = 0
        multipliers = products
        dsp = wide * dsp_slices(ww, wi, dsp_bits)
        lut = products * LUT_PER_ADDER_BIT * adder
        ff = (wide * FF_PER_DSP_PRODUCT_BIT + (products - wide) * FF_PER_LUT_PRODUCT_BIT) * adder
        cycles = tree_cycles(math.ceil(products / layer.n_out), clock_period_ns)
    else:
        multipliers = math.ceil(layer.n_weights / rf)
        per_multiplier = dsp_per_multiplier(ww, wi, dsp_bits)
        wide = multipliers if per_multiplier else 0
        dsp = multipliers * per_multiplier
        basis = "shared multipliers"
        weight_rom = ww * math.ceil(rf / 64) if layer.strategy == "latency" else 0  # RF constants per LUT6
        lut = multipliers * (
            LUT_PER_ADDER_BIT * adder
            + wi * math.ceil((rf - 1) / 3)
            + weight_rom
            + (LUT_PER_LUT_MULTIPLIER_BIT * ww * wi if per_multiplier == 0 else 0)
        )
        per_bit = FF_PER_DSP_PRODUCT_BIT if per_multiplier else FF_PER_LUT_PRODUCT_BIT
        ff = multipliers * per_bit * adder + layer.n_out * adder
        if layer.strategy == "resource":
            cycles = rf + tree_cycles(math.ceil(multipliers / layer.n_out), clock_period_ns)
        else:
            cycles = rf - 1 + tree_cycles(layer.n_in, clock_period_ns)
    in_rom = layer.strategy == "resource" and rf > 1
    bram = math.ceil(layer.n_weights * layer.weight.width / (rf * BRAM_WIDTH_BITS)) if in_rom else 0
    ff += layer.n_out * layer.result.width  # the stage register after the layer
    return {
        "layer": layer.name,
        "multipliers": multipliers,
        "dsp_products": wide,
        "dsp_basis": basis,
        "multiplier_limit": layer.multiplier_limit,
        "dsp": dsp,
        "lut": round(lut),
        "ff": round(ff),
        "bram": bram,
        "latency_cycles": cycles,
        "reuse_factor": rf,
        "strategy": layer.strategy,
    }


def estimate(applied: AppliedConfig, part: Part, clock_period_ns: float | None = None) -> dict[str, Any]:
    """The whole network's estimate: totals, per-layer rows, utilisation of ``part`` and whether it fits.
    An io_stream project (a CNN) is estimated stage by stage by :mod:`search_spaces.hls.stream`."""
    if applied.io_type == "io_stream":
        from search_spaces.hls.stream import stream_estimate

        return stream_estimate(applied, part, clock_period_ns)
    clock = clock_period_ns or applied.clock_period_ns or 5.0
    rows = [dense_estimate(layer, clock, dsp_bits=part.dsp_multiplier_bits) for layer in applied.dense]
    first = applied.dense[0]
    dsp = float(sum(r["dsp"] for r in rows))
    lut = float(sum(r["lut"] for r in rows))
    ff = float(sum(r["ff"] for r in rows)) + first.n_in * (applied.input or first.input).width
    bram = float(sum(r["bram"] for r in rows))
    cycles = 1 + sum(r["latency_cycles"] + 1 for r in rows) + 1  # input, stages, output registers
    for act in applied.activations:
        if act.function.startswith("softmax"):
            table = SOFTMAX.get(act.implementation or "stable", SOFTMAX["stable"])
            n = act.n_in
            dsp += table["dsp_per_class"] * n
            bram += table["bram_per_5_classes"] * math.ceil(n / 5)
            ff += table["ff_per_class"] * n
            lut += table["lut_per_class"] * n
            cycles += int(table["cycles"])
        else:  # ReLU, and any other element-wise activation, as a compare/select folded into the pipeline
            lut += LUT_PER_RELU_BIT * act.n_in * act.result.width
            ff += FF_SHARE_OF_ACTIVATION_OUTPUT * act.n_in * act.result.width
    ii = max(layer.reuse_factor for layer in applied.dense)
    return report(part, clock, dsp=dsp, lut=lut, ff=ff, bram=bram, cycles=cycles, ii=ii, rows=rows)


def report(
    part: Part,
    clock: float,
    *,
    dsp: float,
    lut: float,
    ff: float,
    bram: float,
    cycles: float,
    ii: float,
    rows: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """The estimate as a kind stores it (one shape for io_parallel and io_stream): totals, utilisation of
    ``part``, whether it fits, and the per-layer ``rows``; ``extra`` figures follow the totals."""
    util = utilisation(part, dsp=dsp, lut=lut, ff=ff, bram_18k=bram)
    return {
        "dsp": int(dsp),
        "lut": round(lut),
        "ff": round(ff),
        "bram": float(bram),
        **extra,
        "latency_cycles": int(cycles),
        "latency_ns": round(cycles * clock, 3),
        "initiation_interval": int(ii),
        "utilisation": util,
        "fits": max(util.values()) <= 100.0,
        "layers": rows,
        "clock_period_ns": clock,
        "part": part.part,
        "dsp_slice": part.dsp_slice,
    }


# --- one estimate from the command line -----------------------------------------------------------


def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """The reuse factors hls4ml accepts for a Resource-strategy dense layer (``FPGABackend.
    _validate_reuse_factor``: the kernel's index arithmetic, and ``RF`` dividing ``n_in·n_out``)."""
    valid = []
    for rf in range(1, n_in * n_out + 1):
        multiplier_limit = math.ceil(n_in * n_out / min(n_in, rf))
        ok = (multiplier_limit % n_out == 0 or rf >= n_in) and (rf % n_in == 0 or rf < n_in)
        if ok and (n_in * n_out) % rf == 0:
            valid.append(rf)
    return valid


def closest_reuse_factor(n_in: int, n_out: int, rf: int) -> int:
    """What hls4ml applies for a requested ``rf`` (the nearest valid one, the smaller on a tie)."""
    return min(valid_reuse_factors(n_in, n_out), key=lambda v: (abs(v - rf), v))


def network(
    sizes: list[int],
    precision: FixedType,
    *,
    weight: FixedType | None = None,
    accum: FixedType | None = None,
    reuse_factor: int = 1,
    sparsity: float = 0.0,
    strategy: str = "latency",
    softmax: bool = True,
    part: str = "",
    clock_period_ns: float = 5.0,
) -> AppliedConfig:
    """The applied configuration hls4ml would write for an MLP of ``sizes`` with ReLU between the layers
    (and a stable softmax at the end): one precision for inputs, results and (by default) weights and
    accumulators, as in the hls4ml paper; a share ``sparsity`` of every layer's weights pruned; a reuse factor
    the Resource strategy cannot take moved to the nearest valid one, as hls4ml does."""
    weight = weight or precision
    accum = accum or precision
    applied = AppliedConfig(part=part, clock_period_ns=clock_period_ns, io_type="io_parallel", input=precision)
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes), 1):
        rf = closest_reuse_factor(n_in, n_out, reuse_factor) if strategy == "resource" else reuse_factor
        zeros = round(sparsity * n_in * n_out)
        applied.dense.append(
            DenseLayer(
                name=f"fc{i}",
                n_in=n_in,
                n_out=n_out,
                reuse_factor=rf,
                strategy=strategy,
                n_zeros=zeros,
                multiplier_limit=math.ceil(n_in * n_out / rf) - zeros // rf,
                weight=weight,
                bias=weight,
                accum=accum,
                input=precision,
                result=precision,
            )
        )
        last = i == len(sizes) - 1
        if not last or softmax:
            function = "softmax" if last else "relu"
            applied.activations.append(
                ActivationLayer(f"{function}{i}", function, n_out, rf, precision, precision, "stable" if last else "")
            )
    return applied


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr and exit status 2 (argparse would print the whole usage first)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes comma-separated integers, not {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--layers needs at least two sizes of 1 or more, got {text!r}")
    return sizes


def _type(text: str) -> FixedType:
    try:
        return parse_type(text)
    except ProjectError:
        raise argparse.ArgumentTypeError(f"not an ap_fixed/ap_int type: {text!r}") from None


def _part(text: str) -> Part:
    try:
        return get_part(text)
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown FPGA part {text!r}; known: {', '.join(CHOICES)}") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m search_spaces.hls.estimate --layers 16,64,32,32,5 --precision 'ap_fixed<16,6>' …``:
    one estimate as one JSON object on stdout; bad arguments give one line on stderr and exit status 2."""
    parser = _Parser(prog="python -m search_spaces.hls.estimate", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--layers", type=_sizes, required=True, help="layer sizes, input first: 16,64,32,32,5")
    parser.add_argument("--precision", type=_type, default=parse_type("ap_fixed<16,6>"))
    parser.add_argument("--weight-precision", type=_type, default=None, help="default: --precision")
    parser.add_argument("--accum-precision", type=_type, default=None, help="default: --precision")
    parser.add_argument("--reuse", type=int, default=1, help="reuse factor of every layer")
    parser.add_argument("--sparsity", type=float, default=0.0, help="share of every layer's weights pruned")
    parser.add_argument("--strategy", type=str.lower, choices=["latency", "resource"], default="latency")
    parser.add_argument("--part", type=_part, default=get_part("xcku115"))
    parser.add_argument("--clock", type=float, default=5.0, help="clock period in ns")
    parser.add_argument("--no-softmax", action="store_true", help="no softmax after the last layer")
    args = parser.parse_args(argv)
    if args.reuse < 1:
        parser.error(f"--reuse must be 1 or more, got {args.reuse}")
    if not 0.0 <= args.sparsity < 1.0:
        parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if not 0.0 < args.clock <= 100.0:
        parser.error(f"--clock must be a period in ns in (0, 100], got {args.clock}")
    applied = network(
        args.layers,
        args.precision,
        weight=args.weight_precision,
        accum=args.accum_precision,
        reuse_factor=args.reuse,
        sparsity=args.sparsity,
        strategy=args.strategy,
        softmax=not args.no_softmax,
        part=args.part.part,
        clock_period_ns=args.clock,
    )
    result = estimate(applied, args.part, args.clock)
    result = {"bram18": result["bram"], "ii": result["initiation_interval"], **result}
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
