"""The resource and latency estimate of an ``io_stream`` hls4ml project (convolutional networks).

In ``io_stream`` every layer is a process of one HLS ``DATAFLOW`` region and the layers pass pixels through
``hls::stream`` FIFOs, one pixel (all its channels in parallel) per word. The rules, per stage, and where
they come from (hls4ml 1.3 templates under ``templates/vivado/nnet_utils/``, the generated
``myproject.cpp``, and the two real Vivado HLS 2020.1 reports in the fixtures, ``pruned_cnn_csynth.rpt``
and ``quantized_pruned_cnn_csynth.rpt``, of the hls4ml tutorial's SVHN CNN):

**Convolution** (``nnet_conv2d_stream.h``, ``conv_2d_buffer_cl`` / ``compute_output_buffer_2d``): the
``ReadInputHeight × ReadInputWidth`` loop reads one input pixel per iteration, ``#pragma HLS PIPELINE
II=reuse_factor`` with the Latency strategy (the Resource strategy is not pipelined there: each pixel takes
the ``dense_resource`` kernel's ``RF`` cycles plus its adder tree, not calibrated). The products are the
``configN_mult`` dense kernel with ``n_in = filt_height·filt_width·n_chan`` and ``n_out = n_filt``, one
instance (``#pragma HLS allocation ... limit=1``), so DSP, LUT and FF of the products are
:func:`search_spaces.hls.estimate.dense_estimate` of that kernel. The window is kept in a line buffer,
``ap_shift_reg<data_T::value_type, in_width> line_buffer[filt_height − 1][n_chan]``: shift registers,
which the HLS tool maps to SRL LUTs (both fixture reports: no BRAM in any convolution instance), costed as
``ceil(in_width / 32)`` SRL32 LUTs per bit. Latency ``in_height·in_width·II + 2 + tree`` (read, write
and the kernel's adder tree; fixtures: 1027 = 32·32 + 3, 229 = 15·15 + 4, 40 = 6·6 + 4).

**Pooling, activations, zero padding** (``nnet_pooling_stream.h``, ``nnet_activation_stream.h``,
``nnet_padding_stream.h``): ``PIPELINE`` at II = 1 per pixel: ``pixels + 3`` (pooling: 903 = 30·30 + 3),
``pixels + 2`` (ReLU: 902 = 900 + 2), ``out_pixels + 1`` (padding). No DSP; ReLU and pooling LUTs at the
rate of :mod:`~search_spaces.hls.estimate` per bit of one pixel (one pixel is in flight). A stage that is
not a function-level pipeline has an interval equal to its latency (every stage row of both reports).

**Merges** (``nnet_merge_stream.h``: ``add`` and the other element-wise merges, ``concatenate3d``), which
hls4ml emits for residual sums, dense-block and tree-cell concatenations (:mod:`search_spaces.hls.graph`):
``PIPELINE`` at II = 1 per pixel, read both inputs and write one word: ``pixels + 2`` like the other
pixel-wise stages (not in the fixtures: neither real report has a merge). An add costs one adder per output
lane, a LUT per bit (a LUT6 and its carry chain per bit, UG574); a concatenation only wires. The ``Clone``
stage hls4ml inserts where a stream feeds several layers copies a pixel per cycle, overlaps in the dataflow
region and is counted only through its FIFOs.

**Dense** (``nnet_dense_stream.h``, ``dense_wrapper``): ``n_in / data_T::size`` stream reads at II = 1, the
kernel, then the writes: ``reads + tree + 1`` cycles (fixtures: 7, 3, 2 against 6, 3, 3).

**FIFOs** (``myproject.cpp``: ``#pragma HLS STREAM variable=layerN_out depth=D``, ``D = out_height·
out_width``; each channel of the ``nnet::array`` word is its own FIFO): a FIFO deeper than
``FIFO_SRL_MAX_DEPTH`` = 16 words goes to block RAM, a shallower one to SRLs — observed in both fixture
reports (every 16-deep FIFO in SRLs, every FIFO of depth 36 or more in one BRAM_18K; the vendor's exact
threshold is between 17 and 36 and not documented here). Blocks per FIFO from the 18 Kb block's aspect
ratios (Xilinx UG573: 16K×1, 8K×2, 4K×4, 2K×9, 1K×18, 512×36): the narrowest aspect at least ``D`` deep,
``ceil(width / aspect width)`` of them.

**Whole network.** The stages before the first dense layer overlap in the dataflow region, so they cost the
slowest one; the dense layers (and the BatchNorm/activation/softmax stages after them) wait for the whole
flattened vector and add their latencies: ``latency = max(feature stage latency) + Σ tail latencies``
(fixtures: 1027 + 6 + 3 + 3 + 7 = 1046 against 1044 reported). The initiation interval is the slowest
stage's plus one (fixtures: 1028 = 1027 + 1). LUT and FF are rough (the FIFOs' own registers and the
tool's shift-add expansion of narrow constants are not modelled); no goal is set for them.

What this cannot know: which of the constant products the tool turns into LUT shift-adds (the DSP rule of
:mod:`~search_spaces.hls.estimate`, from weight values when the project's are read), FIFO depths after
hls4ml's FIFO-depth optimiser (not run here), and anything after C synthesis.
"""

from __future__ import annotations

import math
from typing import Any

from search_spaces.hls import estimate as est
from search_spaces.hls.parts import Part
from search_spaces.hls.project import (
    ActivationLayer,
    AppliedConfig,
    ConvLayer,
    DenseLayer,
    FixedType,
    MergeLayer,
    PoolLayer,
    StreamFifo,
    parse_type,
)

FIFO_SRL_MAX_DEPTH = 16
ACCURACY_NOTE = (
    "io_stream (CNN) estimate from the applied hls4ml configuration, not from a synthesis run. Against the two "
    "real Vivado HLS reports of the hls4ml tutorial CNN: BRAM (stream FIFOs) exact, latency and interval within "
    "0.5%; DSP +17% (16-bit weights) and -69% (6-bit weights: the tool still used DSPs for some narrow "
    "constants); LUT and FF are rough (-21% to -63%). Merge stages (residual adds, concatenations) have no real "
    "report to check against. Import a C-synthesis report for real numbers."
)
# (depth, width) of one 18 Kb block RAM (UG573, simple dual port)
BRAM18_ASPECTS = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
SRL_DEPTH = 32
CONV_EXTRA_CYCLES = 2
POOL_EXTRA_CYCLES = 3
ACTIVATION_EXTRA_CYCLES = 2
MERGE_EXTRA_CYCLES = 2
LUT_PER_ADDER_BIT = 1.0


def fifo_bram(fifo: StreamFifo) -> int:
    """BRAM_18K blocks of one stream: ``lanes`` FIFOs of ``depth × width``, none when SRLs hold them."""
    if fifo.depth <= FIFO_SRL_MAX_DEPTH:
        return 0
    for depth, width in BRAM18_ASPECTS:
        if depth >= fifo.depth:
            return fifo.lanes * math.ceil(fifo.width / width)
    blocks = math.ceil(fifo.depth / BRAM18_ASPECTS[-1][0]) * fifo.width
    return fifo.lanes * blocks


def conv_kernel(layer: ConvLayer) -> DenseLayer:
    """The ``configN_mult`` dense kernel hls4ml generates for a convolution (one window in, ``n_filt`` out)."""
    return DenseLayer(
        name=layer.name,
        n_in=layer.fan_in,
        n_out=layer.n_filt,
        reuse_factor=layer.reuse_factor,
        strategy=layer.strategy,
        n_zeros=layer.n_zeros,
        multiplier_limit=layer.multiplier_limit,
        weight=layer.weight,
        bias=layer.bias,
        accum=layer.accum,
        input=layer.input,
        result=layer.result,
        constant_bits=layer.constant_bits,
    )


def conv_estimate(layer: ConvLayer, clock_period_ns: float, dsp_bits: tuple[int, int]) -> dict[str, Any]:
    """One convolution stage: the kernel's products, the line buffer, and ``pixels·II`` cycles."""
    row = est.dense_estimate(conv_kernel(layer), clock_period_ns, dsp_bits=dsp_bits)
    tree = est.tree_cycles(math.ceil(row["multipliers"] / layer.n_filt), clock_period_ns)
    per_pixel = layer.reuse_factor if layer.strategy == "latency" else layer.reuse_factor + tree + 1
    pixels = layer.in_height * layer.in_width
    line_buffer_bits = max(layer.filt_height - 1, 1) * layer.n_chan * layer.input.width
    row["lut"] += line_buffer_bits * math.ceil(layer.in_width / SRL_DEPTH)
    row["latency_cycles"] = pixels * per_pixel + CONV_EXTRA_CYCLES + tree
    row["interval_cycles"] = row["latency_cycles"]  # the reports: a stage's interval is its latency
    row["kind"] = "conv"
    return row


def pool_estimate(layer: PoolLayer) -> dict[str, Any]:
    pixels = layer.in_height * layer.in_width
    return {
        "layer": layer.name,
        "kind": "pool",
        "dsp": 0,
        "lut": round(est.LUT_PER_RELU_BIT * layer.n_chan * layer.result.width),
        "ff": 0,
        "bram": 0,
        "latency_cycles": pixels + POOL_EXTRA_CYCLES,
        "interval_cycles": pixels + POOL_EXTRA_CYCLES,
        "reuse_factor": 1,
        "strategy": "",
    }


def merge_estimate(layer: MergeLayer) -> dict[str, Any]:
    """One two-input stage: a pixel per cycle; an adder per lane for an element-wise merge."""
    adders = 0 if layer.op == "concatenate" else layer.n_chan
    cycles = layer.pixels + MERGE_EXTRA_CYCLES
    return {
        "layer": layer.name,
        "kind": "merge",
        "dsp": 0,
        "lut": round(LUT_PER_ADDER_BIT * adders * layer.result.width),
        "ff": 0,
        "bram": 0,
        "latency_cycles": cycles,
        "interval_cycles": cycles,
        "reuse_factor": 1,
        "strategy": "",
    }


def stream_estimate(applied: AppliedConfig, part: Part, clock_period_ns: float | None = None) -> dict[str, Any]:
    """The whole io_stream network's estimate, in the same shape as :func:`search_spaces.hls.estimate.estimate`,
    plus ``fifo_bram`` and per-stage ``interval_cycles``."""
    clock = clock_period_ns or applied.clock_period_ns or 5.0
    dsp_bits = part.dsp_multiplier_bits
    conv = {layer.name: layer for layer in applied.conv}
    pools = {layer.name: layer for layer in applied.pools}
    dense = {layer.name: layer for layer in applied.dense}
    acts = {layer.name: layer for layer in applied.activations}
    merges = {layer.name: layer for layer in applied.merges}
    rows: list[dict[str, Any]] = []
    pixels = math.prod(applied.input_image[:2]) if applied.input_image else 1
    in_tail = False
    for kind, name in applied.order:
        if kind == "conv":
            row = conv_estimate(conv[name], clock, dsp_bits)
            pixels = conv[name].out_height * conv[name].out_width
        elif kind == "pool":
            row = pool_estimate(pools[name])
            pixels = pools[name].out_height * pools[name].out_width
        elif kind == "dense":
            layer = dense[name]
            row = est.dense_estimate(layer, clock, dsp_bits=dsp_bits)
            reads = applied.dense_reads.get(name, max(1, pixels))  # stream words of the flattened input
            row["latency_cycles"] = reads + row["latency_cycles"] + 1
            row["interval_cycles"] = row["latency_cycles"]
            row["kind"] = "dense"
            in_tail, pixels = True, 1
        elif kind == "activation":
            row = _activation_row(acts[name], pixels, in_tail)
        elif kind == "merge":
            row = merge_estimate(merges[name])
            pixels = merges[name].pixels
        else:  # zero padding: one word per output pixel, no arithmetic
            row = {"layer": name, "kind": "pad", "dsp": 0, "lut": 0, "ff": 0, "bram": 0, "reuse_factor": 1}
            row["latency_cycles"] = row["interval_cycles"] = pixels + 1
            row["strategy"] = ""
        row["tail"] = in_tail
        rows.append(row)
    fifo = sum(fifo_bram(f) for f in applied.streams)
    dsp = float(sum(r["dsp"] for r in rows))
    lut = float(sum(r["lut"] for r in rows))
    ff = float(sum(r["ff"] for r in rows))
    bram = float(sum(r["bram"] for r in rows) + fifo)
    features = [r["latency_cycles"] for r in rows if not r["tail"]] or [0]
    cycles = max(features) + sum(r["latency_cycles"] for r in rows if r["tail"])
    ii = max(r["interval_cycles"] for r in rows) + 1
    return est.report(
        part, clock, dsp=dsp, lut=lut, ff=ff, bram=bram, cycles=cycles, ii=ii, rows=rows, fifo_bram=float(fifo)
    )


def _activation_row(act: Any, pixels: int, in_tail: bool) -> dict[str, Any]:
    """ReLU (and other element-wise functions), BatchNorm (``normalize``: one product per element by its
    scale, DSP by the constant-width rule) and softmax (the table of :mod:`~search_spaces.hls.estimate`)."""
    row: dict[str, Any] = {"layer": act.name, "kind": "activation", "bram": 0, "reuse_factor": act.reuse_factor}
    row["strategy"] = ""
    n = act.n_in
    if act.function.startswith("softmax"):
        table = est.SOFTMAX.get(act.implementation or "stable", est.SOFTMAX["stable"])
        row.update(
            dsp=table["dsp_per_class"] * n,
            bram=table["bram_per_5_classes"] * math.ceil(n / 5),
            ff=round(table["ff_per_class"] * n),
            lut=round(table["lut_per_class"] * n),
        )
        row["latency_cycles"] = row["interval_cycles"] = int(table["cycles"])
    elif act.function.startswith("normalize"):
        row.update(dsp=round(n * est.wide_constant_share(act.input)), lut=0, ff=0)
        row["latency_cycles"] = row["interval_cycles"] = 1
    else:
        lanes = max(1, n // max(1, pixels))  # one pixel's channels at a time
        row.update(dsp=0, lut=round(est.LUT_PER_RELU_BIT * lanes * act.result.width), ff=0)
        # In the tail (after a dense layer) a ReLU is one word: the fixtures report 0 cycles.
        row["latency_cycles"] = 0 if in_tail else pixels + ACTIVATION_EXTRA_CYCLES
        row["interval_cycles"] = 1 if in_tail else row["latency_cycles"]
    return row


def cnn_network(
    input_shape: tuple[int, int, int],
    convs: list[tuple[int, int, int]],
    dense: list[int],
    precision: FixedType,
    *,
    weight: FixedType | None = None,
    sparsity: list[float] | None = None,
    reuse_factor: int = 1,
    strategy: str = "latency",
    softmax: str = "latency",
    normalize_dense: bool = False,
    part: str = "",
    clock_period_ns: float = 5.0,
) -> AppliedConfig:
    """The applied configuration hls4ml writes (io_stream, channels last) for a plain CNN: per ``(filters,
    kernel, pool)`` of ``convs`` a valid convolution with ReLU and, if ``pool`` > 1, max pooling; then the
    flattened features through ``dense`` layers with ReLU (and a BatchNorm each when ``normalize_dense``,
    as a QKeras model keeps it), the last with a softmax. ``sparsity`` is the pruned share of each weighted
    layer in order; every stream is ``D = out_height·out_width`` deep, as in the generated ``myproject.cpp``."""
    weight = weight or precision
    applied = AppliedConfig(
        part=part, clock_period_ns=clock_period_ns, io_type="io_stream", input=precision, input_image=input_shape
    )
    shares = list(sparsity or [])
    h, w, c = input_shape
    index = 0

    def pruned(n: int) -> int:
        return round((shares[index] if index < len(shares) else 0.0) * n)

    def stream(name: str, lanes: int, depth: int) -> None:
        applied.streams.append(StreamFifo(name, lanes, precision.width, depth))

    for i, (filters, kernel, pool) in enumerate(convs, 1):
        out_h, out_w = h - kernel + 1, w - kernel + 1
        n = kernel * kernel * c * filters
        zeros = pruned(n)
        index += 1
        name = f"conv{i}"
        applied.conv.append(
            ConvLayer(
                name,
                h,
                w,
                c,
                kernel,
                kernel,
                filters,
                1,
                1,
                out_h,
                out_w,
                reuse_factor,
                strategy,
                zeros,
                math.ceil(n / reuse_factor) - zeros // reuse_factor,
                weight,
                weight,
                precision,
                precision,
                precision,
            )
        )
        applied.order.append(("conv", name))
        stream(f"{name}_out", filters, out_h * out_w)
        applied.activations.append(
            ActivationLayer(f"relu{i}", "relu", out_h * out_w * filters, 1, precision, precision)
        )
        applied.order.append(("activation", f"relu{i}"))
        stream(f"relu{i}_out", filters, out_h * out_w)
        h, w, c = out_h, out_w, filters
        if pool > 1:
            p_h, p_w = h // pool, w // pool
            applied.pools.append(PoolLayer(f"pool{i}", h, w, c, pool, pool, p_h, p_w, "Max", precision, precision))
            applied.order.append(("pool", f"pool{i}"))
            stream(f"pool{i}_out", c, p_h * p_w)
            h, w = p_h, p_w
    n_in = h * w * c
    for j, n_out in enumerate(dense, 1):
        name = f"dense{j}"
        zeros = pruned(n_in * n_out)
        index += 1
        applied.dense.append(
            DenseLayer(
                name,
                n_in,
                n_out,
                reuse_factor,
                strategy,
                zeros,
                math.ceil(n_in * n_out / reuse_factor) - zeros // reuse_factor,
                weight,
                weight,
                precision,
                precision,
                precision,
            )
        )
        if j == 1:
            applied.dense_reads[name] = h * w
        applied.order.append(("dense", name))
        stream(f"{name}_out", n_out, 1)
        last = j == len(dense)
        if normalize_dense and not last:
            applied.activations.append(ActivationLayer(f"bn{j}", "normalize", n_out, 1, precision, precision))
            applied.order.append(("activation", f"bn{j}"))
            stream(f"bn{j}_out", n_out, 1)
        function = "softmax" if last else "relu"
        applied.activations.append(
            ActivationLayer(f"{function}_d{j}", function, n_out, 1, precision, precision, softmax if last else "")
        )
        applied.order.append(("activation", f"{function}_d{j}"))
        if not last:
            stream(f"relu_d{j}_out", n_out, 1)
        n_in = n_out
    return applied


def hls4ml_tutorial_cnn(*, quantized: bool) -> AppliedConfig:
    """The SVHN CNN of the hls4ml tutorial (``fastmachinelearning/hls4ml-tutorial``, part 6 ``pruned_cnn``,
    part 7 ``quantized_pruned_cnn``), as hls4ml configured it for the real reports in the fixtures: a
    32×32×3 input; three valid 3×3 convolutions of 16, 16 and 24 filters, each with ReLU and 2×2 max
    pooling; dense 42, 64 with ReLU, 10 with softmax; ``ap_fixed<16,6>`` everywhere, reuse factor 1,
    Latency strategy, io_stream, xcu250 at 5 ns; every layer but the output pruned to 50 %
    (``ConstantSparsity(0.5)``). Part 7 quantises weights to 6 bits (QKeras ``quantized_bits(6,0)``:
    ``ap_fixed<6,1>``) and keeps the BatchNorm after each hidden dense layer (QKeras folds it only into the
    convolutions). The shapes are the reports' own: stream depths 900, 225, 169, 36, 16 and the
    per-instance names (``dense_…_42u``, ``conv_2d_cl_…_24u``, ``normalize_…_64u``)."""
    return cnn_network(
        (32, 32, 3),
        [(16, 3, 2), (16, 3, 2), (24, 3, 2)],
        [42, 64, 10],
        parse_type("ap_fixed<16,6>"),
        weight=parse_type("ap_fixed<6,1>") if quantized else None,
        sparsity=[0.5] * 5 + [0.0],
        normalize_dense=quantized,
        part="xcu250-figd2104-2L-e",
    )
