"""What hls4ml actually applied, read back from the project it generated (not from what was requested).

hls4ml silently moves an invalid reuse factor to the nearest valid one, infers accumulator widths, and
may change a layer's strategy; the estimator and the FPGA reports therefore use the values written into
the generated C++: ``firmware/parameters.h`` (one ``struct configN : nnet::dense_config`` per dense
layer, with ``n_in``, ``n_out``, ``reuse_factor``, ``strategy``, ``n_zeros``, the ``multiplier_limit``
formula and its ``accum_t``/``weight_t``/``bias_t`` typedefs), ``firmware/defines.h`` (the
``ap_fixed<W,I,...>`` behind every typedef), ``firmware/myproject.cpp`` (the call chain, which names each
layer's input and output type), ``project.tcl`` (part and clock period) and ``firmware/weights/w<N>.txt``
(the weight values, so the estimator can tell which constant products need a real multiplier).

An ``io_stream`` project (every convolutional network) adds ``conv2d_config`` (the convolution's image and
kernel sizes, its reuse factor and strategy; the products are a ``configN_mult`` dense kernel),
``pooling2d_config`` and ``padding2d_config`` stages, ``nnet::array<ap_fixed<W,I>, N>`` stream element
types in ``defines.h`` (``N`` channels per pixel), and one ``#pragma HLS STREAM variable=... depth=D``
per stream between two stages in ``myproject.cpp`` (the FIFOs).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class ProjectError(ValueError):
    """A generated project that cannot be read (missing files, a layer this reader does not know)."""


@dataclass(frozen=True)
class FixedType:
    """An ``ap_fixed<W,I,Q,O>`` / ``ap_int<W>`` type: total and integer bits, signedness, quantisation
    and overflow modes."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "AP_TRN"
    saturation: str = "AP_WRAP"

    @property
    def text(self) -> str:
        base = "ap_fixed" if self.signed else "ap_ufixed"
        if (self.rounding, self.saturation) == ("AP_TRN", "AP_WRAP"):
            return f"{base}<{self.width},{self.integer}>"
        return f"{base}<{self.width},{self.integer},{self.rounding},{self.saturation}>"


_TYPE = re.compile(
    r"^ap_(u?)(fixed|int)<\s*(\d+)\s*(?:,\s*(-?\d+)\s*)?(?:,\s*(\w+)\s*)?(?:,\s*(\w+)\s*)?"
    r"(?:,\s*\d+\s*)?>$"
)


def parse_type(text: str) -> FixedType:
    """``ap_fixed<16,6>``, ``ap_fixed<16,6,AP_RND,AP_SAT,0>``, ``ap_uint<1>`` … as a :class:`FixedType`."""
    match = _TYPE.match(text.strip())
    if not match:
        raise ProjectError(f"not an ap_fixed/ap_int type: {text!r}")
    unsigned, kind, width, integer, rounding, saturation = match.groups()
    width_i = int(width)
    return FixedType(
        width=width_i,
        integer=width_i if kind == "int" else int(integer or width_i),
        signed=not unsigned,
        rounding=rounding or "AP_TRN",
        saturation=saturation or "AP_WRAP",
    )


@dataclass(frozen=True)
class DenseLayer:
    name: str
    n_in: int
    n_out: int
    reuse_factor: int
    strategy: str  # "latency" | "resource"
    n_zeros: int
    multiplier_limit: int
    weight: FixedType
    bias: FixedType
    accum: FixedType
    input: FixedType
    result: FixedType
    # constant_bits[b]: how many nonzero weights, once cast to ``weight`` and stripped of trailing zero
    # bits, need ``b`` signed bits (what the HLS tool multiplies by); empty when the values were not read
    constant_bits: tuple[int, ...] = ()

    @property
    def n_weights(self) -> int:
        return self.n_in * self.n_out


@dataclass(frozen=True)
class ActivationLayer:
    name: str
    function: str  # "relu" | "softmax" | another nnet:: activation
    n_in: int
    reuse_factor: int
    input: FixedType
    result: FixedType
    implementation: str = ""  # softmax: "stable" | "latency" | ... as written in parameters.h


@dataclass(frozen=True)
class ConvLayer:
    """A ``conv_2d_cl`` stage (io_stream): ``in_height × in_width × n_chan`` pixels in (after any zero
    padding stage), an ``filt_height × filt_width × n_chan`` kernel per each of ``n_filt`` filters."""

    name: str
    in_height: int
    in_width: int
    n_chan: int
    filt_height: int
    filt_width: int
    n_filt: int
    stride_height: int
    stride_width: int
    out_height: int
    out_width: int
    reuse_factor: int
    strategy: str
    n_zeros: int
    multiplier_limit: int
    weight: FixedType
    bias: FixedType
    accum: FixedType
    input: FixedType
    result: FixedType
    implementation: str = "linebuffer"
    constant_bits: tuple[int, ...] = ()

    @property
    def fan_in(self) -> int:
        return self.filt_height * self.filt_width * self.n_chan

    @property
    def n_weights(self) -> int:
        return self.fan_in * self.n_filt


@dataclass(frozen=True)
class PoolLayer:
    """A ``pooling2d_cl`` stage (``op`` Max or Average) over ``pool_height × pool_width`` windows."""

    name: str
    in_height: int
    in_width: int
    n_chan: int
    pool_height: int
    pool_width: int
    out_height: int
    out_width: int
    op: str
    input: FixedType
    result: FixedType


@dataclass(frozen=True)
class MergeLayer:
    """A two-input stage of io_stream (``nnet_merge_stream.h``): an element-wise ``op`` (``add``, ...) or a
    channel ``concatenate``, over ``pixels`` pixels of ``n_chan`` output channels, one pixel per cycle."""

    name: str
    op: str
    pixels: int
    n_chan: int
    result: FixedType


@dataclass(frozen=True)
class StreamFifo:
    """One ``hls::stream`` between two stages: ``lanes`` FIFOs (one per channel of a pixel) of ``depth``
    words of ``width`` bits each."""

    name: str
    lanes: int
    width: int
    depth: int


@dataclass
class AppliedConfig:
    """The whole applied configuration of one generated project, in call order."""

    part: str
    clock_period_ns: float
    io_type: str
    dense: list[DenseLayer] = field(default_factory=list)
    activations: list[ActivationLayer] = field(default_factory=list)
    input: FixedType | None = None
    conv: list[ConvLayer] = field(default_factory=list)
    pools: list[PoolLayer] = field(default_factory=list)
    merges: list[MergeLayer] = field(default_factory=list)
    streams: list[StreamFifo] = field(default_factory=list)
    # (stage kind, layer name) in call order: "dense", "conv", "pool", "activation", "pad", "merge"
    order: list[tuple[str, str]] = field(default_factory=list)
    # the first stage's input image (height, width, channels) of an io_stream project; None for io_parallel
    input_image: tuple[int, int, int] | None = None
    # io_stream: stream words a dense layer reads (``n_in`` over the channels per word of its input)
    dense_reads: dict[str, int] = field(default_factory=dict)

    def weighted(self) -> list[DenseLayer | ConvLayer]:
        """The layers with weights, in call order."""
        by_name: dict[str, DenseLayer | ConvLayer] = {layer.name: layer for layer in self.conv}
        by_name.update({layer.name: layer for layer in self.dense})
        return [by_name[name] for kind, name in self.order if kind in ("conv", "dense")] or list(self.dense)

    def reuse_factors(self) -> dict[str, int]:
        return {layer.name: layer.reuse_factor for layer in self.weighted()}

    def precisions(self) -> dict[str, dict[str, str]]:
        return {
            layer.name: {
                "weight": layer.weight.text,
                "bias": layer.bias.text,
                "accum": layer.accum.text,
                "input": layer.input.text,
                "result": layer.result.text,
            }
            for layer in self.weighted()
        }

    def strategies(self) -> set[str]:
        return {layer.strategy for layer in self.weighted()}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# The layer comment is written above most structs but not above a conv's own config (its ``_mult`` has it).
_STRUCT = re.compile(r"(?://\s*(\S+)\s*\n\s*)?struct\s+(\w+)\s*:\s*nnet::(\w+)\s*\{(.*?)\n\};", re.S)
_CONST = re.compile(r"static\s+(?:const|constexpr)\s+[\w:]+\s+(\w+)\s*=\s*([^;]+);")
_TYPEDEF = re.compile(r"typedef\s+(\w+)\s+(\w+)\s*;")
_DEFINE = re.compile(r"typedef\s+(ap_[uif]\w*<[^>]*>)\s+(\w+)\s*;")
_ARRAY = re.compile(r"typedef\s+nnet::array<\s*(ap_[uif]\w*<[^>]*>)\s*,\s*([\d\s*]+)>\s+(\w+)\s*;")
# a layer's call: nnet::f<in_t, out_t, config>, or nnet::f<in1_t, in2_t, out_t, config> for a merge
_CALL = re.compile(r"nnet::(\w+)<\s*(\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*(?:,\s*(\w+)\s*)?>\s*\([^;]*;\s*(?://\s*(\S+))?")
_FIFO = re.compile(r"hls::stream<\s*(\w+)\s*>\s+(\w+)\([^)]*\);\s*#pragma\s+HLS\s+STREAM\s+variable=\w+\s+depth=(\d+)")
_TCL = re.compile(r"^set\s+(\w+)\s+\"?([^\"\n]*)\"?\s*$", re.M)


def _multiplier_limit(n_in: int, n_out: int, reuse_factor: int, n_zeros: int) -> int:
    """``DIV_ROUNDUP(n_in * n_out, reuse_factor) - n_zeros / reuse_factor`` (integer division), as in
    ``nnet_dense.h``'s config and every generated ``parameters.h``."""
    return math.ceil(n_in * n_out / reuse_factor) - n_zeros // reuse_factor


def constant_bits(values: list[float], weight: FixedType) -> tuple[int, ...]:
    """Histogram of the signed bit widths the HLS tool multiplies by, one entry per nonzero weight.

    Each value is cast to ``weight`` as the C++ initialiser does (``AP_TRN`` floors onto the grid,
    ``AP_TRN_ZERO`` truncates towards zero, the ``AP_RND*`` modes round), so ``k = value · 2^F`` is an
    integer; a constant ``k = o · 2^s`` with ``o`` odd is a shift of a multiplication by ``o``, which takes
    ``bit_length(|o|) + 1`` signed bits. Weights that become 0 need no multiplier and are not counted.
    """
    scale = 2.0 ** (weight.width - weight.integer)
    counts: dict[int, int] = {}
    for value in values:
        x = value * scale
        if weight.rounding == "AP_TRN":
            k = math.floor(x)
        elif weight.rounding == "AP_TRN_ZERO":
            k = math.trunc(x)
        else:
            k = math.floor(x + 0.5)
        if k == 0:
            continue
        odd = abs(k)
        while odd % 2 == 0:
            odd //= 2
        bits = odd.bit_length() + 1
        counts[bits] = counts.get(bits, 0) + 1
    return tuple(counts.get(b, 0) for b in range(max(counts, default=-1) + 1))


def _weight_values(firmware: Path, config: str) -> list[float] | None:
    """The values hls4ml wrote to ``weights/w<N>.txt`` for the layer configured by ``config<N>``."""
    path = firmware / "weights" / f"w{config.removeprefix('config')}.txt"
    try:
        return [float(v) for v in path.read_text().replace("\n", ",").split(",") if v.strip()]
    except (OSError, ValueError):
        return None


def read_project(project_dir: Path) -> AppliedConfig:
    """Read the applied configuration of the hls4ml project in ``project_dir`` (written, not necessarily
    compiled). Raises :class:`ProjectError` when a file is missing or unreadable."""
    project_dir = Path(project_dir)
    firmware = project_dir / "firmware"
    try:
        parameters = (firmware / "parameters.h").read_text()
        defines = (firmware / "defines.h").read_text()
        tcl = (project_dir / "project.tcl").read_text()
        tops = sorted(p for p in firmware.glob("*.cpp"))
    except OSError as exc:
        raise ProjectError(f"not a generated hls4ml project: {exc}") from exc
    if not tops:
        raise ProjectError(f"no top-level C++ file in {firmware}")
    top = tops[0].read_text()
    types = {name: parse_type(text) for text, name in _DEFINE.findall(defines)}
    lanes: dict[str, int] = {}  # stream element types: channels per pixel
    for text, size, name in _ARRAY.findall(defines):
        types[name] = parse_type(text)
        lanes[name] = math.prod(int(v) for v in size.split("*"))
    settings = dict(_TCL.findall(tcl))
    structs: dict[str, tuple[str, str, dict[str, str], dict[str, str]]] = {}
    for layer_name, struct, base, body in _STRUCT.findall(parameters):
        consts = {k: v.strip() for k, v in _CONST.findall(body)}
        typedefs = {alias: target for target, alias in _TYPEDEF.findall(body)}
        structs[struct] = (layer_name, base, consts, typedefs)

    def typed(name: str) -> FixedType:
        if name not in types:
            raise ProjectError(f"type {name} is not defined in defines.h")
        return types[name]

    applied = AppliedConfig(
        part=settings.get("part", ""), clock_period_ns=float(settings.get("clock_period", 0) or 0), io_type=""
    )
    for type_name, stream, depth in _FIFO.findall(top):
        applied.streams.append(StreamFifo(stream, lanes.get(type_name, 1), typed(type_name).width, int(depth)))
    for function, in_type, second, third, fourth, comment in _CALL.findall(top):
        # three template arguments: input, output, config; four (a merge): input 1, input 2, output, config
        out_type, config = (third, fourth) if fourth else (second, third)
        if config not in structs:
            continue  # weight loading helpers, transposes and the like
        layer_name, base, consts, typedefs = structs[config]
        layer_name = layer_name or comment or config
        io_type = consts.get("io_type", "")
        applied.io_type = applied.io_type or io_type.replace("nnet::", "")
        if applied.input is None:
            applied.input = typed(in_type)
        if base == "dense_config":
            n_in, n_out = int(consts["n_in"]), int(consts["n_out"])
            rf, zeros = int(consts["reuse_factor"]), int(consts.get("n_zeros", "0"))
            weight = typed(typedefs["weight_t"])
            values = _weight_values(firmware, config)
            applied.dense.append(
                DenseLayer(
                    name=layer_name,
                    n_in=n_in,
                    n_out=n_out,
                    reuse_factor=rf,
                    strategy=consts.get("strategy", "nnet::latency").replace("nnet::", ""),
                    n_zeros=zeros,
                    multiplier_limit=_multiplier_limit(n_in, n_out, rf, zeros),
                    weight=weight,
                    bias=typed(typedefs["bias_t"]),
                    accum=typed(typedefs["accum_t"]),
                    input=typed(in_type),
                    result=typed(out_type),
                    constant_bits=constant_bits(values, weight) if values is not None else (),
                )
            )
            applied.order.append(("dense", layer_name))
            if in_type in lanes:
                applied.dense_reads[layer_name] = max(1, n_in // lanes[in_type])
        elif base == "activ_config":
            applied.activations.append(
                ActivationLayer(
                    name=layer_name,
                    function=function,
                    n_in=int(consts["n_in"]),
                    reuse_factor=int(consts.get("reuse_factor", "1")),
                    input=typed(in_type),
                    result=typed(out_type),
                    implementation=consts.get("implementation", "").rsplit("::", 1)[-1],
                )
            )
            applied.order.append(("activation", layer_name))
        elif base == "conv2d_config":
            applied.conv.append(_conv_layer(firmware, layer_name, config, consts, typedefs, typed, in_type, out_type))
            applied.order.append(("conv", layer_name))
        elif base == "pooling2d_config":
            applied.pools.append(
                PoolLayer(
                    name=layer_name,
                    in_height=int(consts["in_height"]),
                    in_width=int(consts["in_width"]),
                    n_chan=int(consts["n_filt"]),
                    pool_height=int(consts["pool_height"]),
                    pool_width=int(consts["pool_width"]),
                    out_height=int(consts["out_height"]),
                    out_width=int(consts["out_width"]),
                    op=consts.get("pool_op", "nnet::Max").replace("nnet::", ""),
                    input=typed(in_type),
                    result=typed(out_type),
                )
            )
            applied.order.append(("pool", layer_name))
        elif base == "padding2d_config":
            applied.order.append(("pad", layer_name))
        elif base in ("merge_config", "concat_config"):
            applied.merges.append(_merge_layer(layer_name, function, consts, typed(out_type), lanes.get(out_type, 1)))
            applied.order.append(("merge", layer_name))
        else:
            raise ProjectError(
                f"layer {layer_name} ({base}) is not a dense, convolution, pooling, padding, merge or activation "
                "layer; this reader does not know it"
            )
        if applied.input_image is None and base in ("conv2d_config", "pooling2d_config", "padding2d_config"):
            chan = consts.get("n_chan", consts.get("n_filt", "1"))
            applied.input_image = (int(consts["in_height"]), int(consts["in_width"]), int(chan))
    if not applied.dense:
        raise ProjectError("the project has no dense layer")
    return applied


def _merge_layer(name: str, function: str, consts: dict[str, str], result: FixedType, lanes: int) -> MergeLayer:
    """A ``merge_config`` (``n_elem`` elements per input) or ``concat_config`` (``n_elem1_0 × n_elem1_1`` pixels of
    each input) struct as a :class:`MergeLayer` of ``lanes`` output channels per pixel."""
    if "n_elem" in consts:
        pixels = math.prod(int(v) for v in consts["n_elem"].split("*")) // max(1, lanes)
    else:
        pixels = int(consts.get("n_elem1_0", "1")) * int(consts.get("n_elem1_1", "1"))
    op = "concatenate" if function.startswith("concatenate") else function
    return MergeLayer(name, op, max(1, pixels), lanes, result)


def _conv_layer(
    firmware: Path,
    name: str,
    config: str,
    consts: dict[str, str],
    typedefs: dict[str, str],
    typed: Any,
    in_type: str,
    out_type: str,
) -> ConvLayer:
    """A ``conv2d_config`` struct as a :class:`ConvLayer` (``n_zeros`` and the kernel from the struct, the
    weight values from ``weights/w<N>.txt`` for the constant-width histogram)."""
    n = {k: int(consts[k]) for k in ("in_height", "in_width", "n_chan", "filt_height", "filt_width", "n_filt")}
    rf, zeros = int(consts["reuse_factor"]), int(consts.get("n_zeros", "0"))
    weight = typed(typedefs["weight_t"])
    values = _weight_values(firmware, config)
    fan_in = n["filt_height"] * n["filt_width"] * n["n_chan"]
    return ConvLayer(
        name=name,
        **n,
        stride_height=int(consts.get("stride_height", "1")),
        stride_width=int(consts.get("stride_width", "1")),
        out_height=int(consts["out_height"]),
        out_width=int(consts["out_width"]),
        reuse_factor=rf,
        strategy=consts.get("strategy", "nnet::latency").replace("nnet::", ""),
        n_zeros=zeros,
        multiplier_limit=_multiplier_limit(fan_in, n["n_filt"], rf, zeros),
        weight=weight,
        bias=typed(typedefs["bias_t"]),
        accum=typed(typedefs["accum_t"]),
        input=typed(in_type),
        result=typed(out_type),
        implementation=consts.get("implementation", "").rsplit("::", 1)[-1] or "linebuffer",
        constant_bits=constant_bits(values, weight) if values is not None else (),
    )


def clean_config_yaml(project_dir: Path) -> dict[str, Any]:
    """Rewrite the project's ``hls4ml_config.yml`` as plain YAML and return it.

    hls4ml 1.3 dumps the PyTorch model object itself (``!!python/object`` tags, a pickle in YAML) and the
    input shape as a ``!!python/tuple`` into this file, so neither ``yaml.safe_load`` nor hls4ml's own
    ``link_existing_project`` can read it back. The file is read here without constructing any Python
    object (those tags become null), the model entry is dropped and tuples become lists.
    """
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("tag:yaml.org,2002:python/tuple", lambda loader, node: loader.construct_sequence(node))
    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    path = Path(project_dir) / "hls4ml_config.yml"
    config = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - the loader above constructs no objects
    config.pop("PytorchModel", None)
    tmp = path.with_suffix(".partial")
    tmp.write_text(yaml.safe_dump(config, sort_keys=True))
    tmp.replace(path)
    return config
