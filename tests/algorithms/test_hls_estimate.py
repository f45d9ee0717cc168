"""The FPGA estimator on hand-made applied configurations: each rule of its docstring, checked with numbers
that follow from the rule; its command line in a subprocess; and what the real Vivado HLS reports in
tests/fixtures/vivado can check (io_stream CNNs: their dense and softmax instances, and the part)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search_spaces.hls.estimate import (
    SOFTMAX,
    closest_reuse_factor,
    dense_estimate,
    dsp_per_multiplier,
    dsp_slices,
    estimate,
    network,
    valid_reuse_factors,
    wide_constant_share,
)
from search_spaces.hls.parts import PARTS, get_part
from search_spaces.hls.project import (
    ActivationLayer,
    AppliedConfig,
    DenseLayer,
    FixedType,
    constant_bits,
    parse_type,
    read_project,
)
from search_spaces.hls.reports import csynth_instances

Q16 = FixedType(16, 6)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vivado"
SHARE_16_6 = 912 / 1023  # ap_fixed<16,6>, |w| < 1: k = 1..1023, odd parts of 6..10 bits: Σ 2^(L-2)·(11-L)
SHARE_7_1 = 16 / 63  # ap_fixed<7,1>: k = 1..63, only the odd k = 33..63 need 7 signed bits


def dense(
    name: str,
    n_in: int,
    n_out: int,
    rf: int = 1,
    *,
    bits: int = 16,
    integer: int = 6,
    strategy: str = "latency",
    zeros: int = 0,
    input_type: FixedType = Q16,
    counts: tuple[int, ...] = (),
) -> DenseLayer:
    w = FixedType(bits, integer)
    return DenseLayer(
        name=name,
        n_in=n_in,
        n_out=n_out,
        reuse_factor=rf,
        strategy=strategy,
        n_zeros=zeros,
        multiplier_limit=math.ceil(n_in * n_out / rf) - zeros // rf,
        weight=w,
        bias=w,
        accum=FixedType(32, 12),
        input=input_type,
        result=FixedType(18, 8),
        constant_bits=counts,
    )


SHAPES = [(16, 64), (64, 32), (32, 32), (32, 5)]


def jet_tagger(rf: int = 1, *, strategy: str = "latency", bits: int = 16, sparsity: float = 0.0) -> AppliedConfig:
    shapes = SHAPES
    layers = [
        dense(f"fc{i}", a, b, rf, bits=bits, strategy=strategy, zeros=round(sparsity * a * b))
        for i, (a, b) in enumerate(shapes, 1)
    ]
    acts = [ActivationLayer(f"relu{i}", "relu", b, rf, Q16, Q16) for i, (_, b) in enumerate(shapes[:-1], 1)]
    acts.append(ActivationLayer("softmax", "softmax", 5, rf, FixedType(18, 8), Q16))
    return AppliedConfig(
        part="xcku115-flvb2104-2-i",
        clock_period_ns=5.0,
        io_type="io_parallel",
        dense=layers,
        activations=acts,
        input=Q16,
    )


def test_dsp_falls_as_one_over_reuse_factor() -> None:
    part = get_part("xcku115")
    softmax_dsp = 5
    weights = sum(a * b for a, b in SHAPES)
    at_one = estimate(jet_tagger(1), part)["dsp"] - softmax_dsp
    assert at_one == sum(round(a * b * SHARE_16_6) for a, b in SHAPES)  # constants: only the wide ones
    for rf in (2, 4, 8, 16):
        got = estimate(jet_tagger(rf), part)["dsp"] - softmax_dsp
        assert got == sum(math.ceil(a * b / rf) for a, b in SHAPES)  # shared multipliers, one DSP each
        assert got == pytest.approx(weights / rf, rel=0.02)


def test_pruned_weights_save_multipliers_only_at_reuse_factor_one() -> None:
    for strategy in ("latency", "resource"):
        one = dense_estimate(dense("fc", 16, 8, strategy=strategy, zeros=40), 5.0)
        assert one["multipliers"] == 128 - 40  # constant weights: a zero is no product at all
        two = dense_estimate(dense("fc", 16, 8, rf=2, strategy=strategy, zeros=40), 5.0)
        assert two["multipliers"] == 64 and two["dsp"] == 64  # ceil(128 / 2) shared multipliers, zeros or not
        assert two["multiplier_limit"] == 64 - 20  # parameters.h's ALLOCATION ceiling is not the count


def test_narrow_shared_weights_go_to_luts_and_wide_products_split_by_dsp_slice() -> None:
    e2, e1 = PARTS["xcku115"].dsp_multiplier_bits, PARTS["xc7z020"].dsp_multiplier_bits
    assert (e2, e1) == ((27, 18), (25, 18))
    assert dsp_per_multiplier(8, 16) == 0  # hls4ml's rule: a weight under 9 bits takes no DSP
    assert dsp_per_multiplier(9, 16) == 1
    assert dsp_per_multiplier(18, 25) == 1
    assert dsp_per_multiplier(27, 16, e2) == 1 and dsp_per_multiplier(27, 16, e1) == 2  # 27 bits: one DSP48E2
    assert dsp_slices(28, 19, e2) == 2 * 2
    narrow = dense_estimate(dense("fc", 16, 8, rf=2, bits=8), 5.0)
    wide = dense_estimate(dense("fc", 16, 8, rf=2, bits=16), 5.0)
    assert narrow["dsp"] == 0 and wide["dsp"] == 64
    assert narrow["lut"] - wide["lut"] > 64 * 8 * 16  # 64 LUT multipliers of 8 × 16 bits
    big = AppliedConfig("", 5.0, "io_parallel", [dense("fc", 16, 8, rf=2, bits=26)], [], Q16)
    assert estimate(big, get_part("xcku115"))["dsp"] == 64 and estimate(big, get_part("xc7z020"))["dsp"] == 128


def test_constant_weights_take_a_dsp_only_when_both_operands_are_wider_than_six_bits() -> None:
    assert wide_constant_share(FixedType(6, 1)) == 0.0  # the odd parts of k = 1..31 fit in 6 signed bits
    assert wide_constant_share(FixedType(7, 1)) == pytest.approx(SHARE_7_1)
    assert wide_constant_share(FixedType(16, 6)) == pytest.approx(SHARE_16_6)
    assert wide_constant_share(FixedType(2, 2)) == 0.0  # ternary weights
    seven = dense_estimate(dense("fc", 16, 8, bits=7, integer=1), 5.0)
    assert seven["dsp"] == round(128 * SHARE_7_1) and seven["dsp_basis"].startswith("weights assumed")
    six = dense_estimate(dense("fc", 16, 8, bits=6, integer=1), 5.0)
    assert six["dsp"] == 0 and six["multipliers"] == 128  # 128 shift-and-add products in LUTs
    counts = (0, 0, 3, 0, 0, 0, 0, 5, 2)  # 3 weights of 2 signed bits, 5 of 7, 2 of 8
    row = dense_estimate(dense("fc", 16, 8, counts=counts), 5.0)
    assert row["multipliers"] == 10 and row["dsp"] == 7 and row["dsp_basis"] == "weight values"
    narrow_input = dense("fc", 16, 8, counts=counts, input_type=FixedType(6, 2))
    assert dense_estimate(narrow_input, 5.0)["dsp"] == 0
    unsigned_input = dense("fc", 16, 8, counts=counts, input_type=FixedType(6, 0, False))
    assert dense_estimate(unsigned_input, 5.0)["dsp"] == 7  # ap_ufixed<6,0> needs 7 signed bits


def test_weight_values_are_cast_to_their_type_and_stripped_of_trailing_zeros() -> None:
    # ·1024: 512 = 1·2^9 (2 signed bits), 0.1 → 0 (no product), 768 = 3·2^8 (3),
    # floor(-307.2) = -308 = -77·4 (8), floor(126.4) = 126 = 63·2 (7)
    assert constant_bits([0.5, 0.0001, 0.75, -0.3, 0.123456], FixedType(16, 6)) == (0, 0, 1, 1, 0, 0, 0, 1, 1)
    assert constant_bits([-0.3], FixedType(16, 6, True, "AP_RND", "AP_SAT")) == (0,) * 10 + (1,)  # -307


def test_project_weights_and_softmax_implementation_are_read(tmp_path: Path) -> None:
    firmware = tmp_path / "firmware"
    (firmware / "weights").mkdir(parents=True)
    (tmp_path / "project.tcl").write_text('set part "xcku115-flvb2104-2-i"\nset clock_period 5\n')
    (firmware / "defines.h").write_text(
        "typedef ap_fixed<16,6> input_t;\ntypedef ap_fixed<16,6> layer2_t;\ntypedef ap_fixed<16,6> result_t;\n"
        "typedef ap_fixed<7,1> fc1_weight_t;\ntypedef ap_fixed<7,1> fc1_bias_t;\ntypedef ap_fixed<32,12> fc1_accum_t;\n"
    )
    (firmware / "parameters.h").write_text(
        "// fc1\nstruct config2 : nnet::dense_config {\n    static const unsigned n_in = 4;\n"
        "    static const unsigned n_out = 2;\n    static const unsigned reuse_factor = 1;\n"
        "    static const unsigned n_zeros = 2;\n    static const unsigned strategy = nnet::latency;\n"
        "    typedef fc1_accum_t accum_t;\n    typedef fc1_bias_t bias_t;\n    typedef fc1_weight_t weight_t;\n};\n\n"
        "// softmax\nstruct softmax_config3 : nnet::activ_config {\n    static const unsigned n_in = 2;\n"
        "    static const nnet::softmax_implementation implementation = nnet::softmax_implementation::latency;\n};\n"
    )
    (firmware / "myproject.cpp").write_text(
        "    nnet::dense<input_t, layer2_t, config2>(input_1, layer2_out, w2, b2); // fc1\n"
        "    nnet::softmax<layer2_t, result_t, softmax_config3>(layer2_out, layer3_out); // softmax\n"
    )
    # ·64: 32 (2 bits), 0, -48 = -3·16 (3), 0, 38 = 19·2 (6), 63 (7), 1 (2), 16 (2)
    (firmware / "weights" / "w2.txt").write_text("0.5, 0, -0.75, 0, 0.59375, 0.984375, 0.015625, 0.25")
    applied = read_project(tmp_path)
    assert applied.dense[0].constant_bits == (0, 0, 3, 1, 0, 0, 1, 1)
    assert applied.activations[0].implementation == "latency"
    got = estimate(applied, get_part("xcku115"))
    assert got["layers"][0]["dsp"] == 1  # the one weight whose odd part needs 7 bits
    assert got["dsp"] == 1 + 2 and got["bram"] == SOFTMAX["latency"]["bram_per_5_classes"]


def test_bram_only_with_resource_strategy_and_reuse() -> None:
    assert dense_estimate(dense("fc", 64, 32, rf=4, strategy="latency"), 5.0)["bram"] == 0
    assert dense_estimate(dense("fc", 64, 32, rf=1, strategy="resource"), 5.0)["bram"] == 0
    row = dense_estimate(dense("fc", 64, 32, rf=4, strategy="resource"), 5.0)
    assert row["bram"] == math.ceil(64 * 32 * 16 / (4 * 36))


def test_weights_are_not_registers() -> None:
    # the same constants typed in 12 or 16 bits: the flip-flops stay (the old rule added N·Ww for the weights)
    counts = (0,) * 10 + (128,)
    ff = {bits: dense_estimate(dense("fc", 16, 8, bits=bits, counts=counts), 5.0)["ff"] for bits in (12, 16)}
    assert ff[12] == ff[16] == round(128 * 0.32 * 32 + 8 * 18)  # registers of 128 DSP products + the outputs
    shared = {bits: dense_estimate(dense("fc", 16, 8, 4, bits=bits, strategy="resource"), 5.0) for bits in (12, 16)}
    assert shared[12]["ff"] == shared[16]["ff"] and shared[16]["bram"] > shared[12]["bram"]


def test_latency_and_interval() -> None:
    part = get_part("xcku115")
    one = estimate(jet_tagger(1), part)
    # a layer is 1 cycle up to 63 products per output (6 adder levels per 5 ns): fc2's 64 inputs take 2;
    # then the input register, each layer and its stage register, the stable softmax (4) and the output register
    assert [r["latency_cycles"] for r in one["layers"]] == [1, 2, 1, 1]
    assert one["latency_cycles"] == 1 + (2 + 3 + 2 + 2) + 4 + 1 and one["latency_ns"] == 75.0
    assert one["initiation_interval"] == 1
    assert estimate(jet_tagger(1, sparsity=0.75), part)["latency_cycles"] == 14  # 16 products per output at most
    sixteen = estimate(jet_tagger(16), part)
    assert [r["latency_cycles"] for r in sixteen["layers"]] == [15 + 1, 15 + 2, 15 + 1, 15 + 1]
    assert sixteen["initiation_interval"] == 16 and sixteen["latency_cycles"] == 1 + 69 + 4 + 1
    resource = estimate(jet_tagger(16, strategy="resource"), part)
    assert [r["latency_cycles"] for r in resource["layers"]] == [16 + 1] * 4  # RF iterations + one small tree
    slow_clock = estimate(jet_tagger(1), part, clock_period_ns=10.0)
    assert slow_clock["latency_cycles"] == one["latency_cycles"] - 1  # 12 adder levels fit in 10 ns


def test_relu_and_softmax() -> None:
    part = get_part("xcku115")
    full = estimate(jet_tagger(1), part)
    bare_cfg = jet_tagger(1)
    bare_cfg.activations = []
    bare = estimate(bare_cfg, part)
    relu_bits = (64 + 32 + 32) * 16
    stable = SOFTMAX["stable"]
    assert full["lut"] - bare["lut"] == round(2.3 * relu_bits + 5 * stable["lut_per_class"])
    assert full["ff"] - bare["ff"] == round(0.5 * relu_bits + 5 * stable["ff_per_class"])
    assert full["dsp"] - bare["dsp"] == 5 and full["bram"] - bare["bram"] == 8  # the public report's softmax
    assert full["latency_cycles"] - bare["latency_cycles"] == 4  # ReLU folds into the pipeline: 0 cycles


def test_utilisation_and_fit_on_parts() -> None:
    big = estimate(jet_tagger(1), get_part("xcku115"))
    assert big["fits"] and big["utilisation"]["dsp"] == round(100 * big["dsp"] / PARTS["xcku115"].dsp, 2)
    small = estimate(jet_tagger(1), get_part("xc7z020"))
    assert not small["fits"] and small["utilisation"]["dsp"] > 100
    assert estimate(jet_tagger(64), get_part("xc7z020"))["fits"]


def test_estimates_are_deterministic_and_take_milliseconds() -> None:
    cfg = jet_tagger(4, strategy="resource")
    started = time.perf_counter()
    results = [estimate(cfg, get_part("xcvu9p")) for _ in range(200)]
    per_call = (time.perf_counter() - started) / 200
    assert all(r == results[0] for r in results)
    assert per_call < 0.005


def test_parts_table_and_lookup() -> None:
    for key in ("xcku115", "xczu3eg", "xcvu9p", "xcu250"):
        assert key in PARTS
    assert get_part("xcku115-flvb2104-2-i").key == "xcku115"
    assert get_part("xcu250-figd2104-2L-e").dsp == 12288  # the fixture report's "Available" row
    with pytest.raises(KeyError):
        get_part("xc9z999")


def test_parse_type() -> None:
    assert parse_type("ap_fixed<16,6>") == FixedType(16, 6)
    assert parse_type("ap_fixed<18,8,AP_RND,AP_SAT,0>") == FixedType(18, 8, True, "AP_RND", "AP_SAT")
    assert parse_type("ap_ufixed<8,3,AP_RND,AP_SAT>").signed is False
    assert parse_type("ap_uint<1>") == FixedType(1, 1, False)


# --- what the real Vivado HLS reports in tests/fixtures/vivado can check ------------------------------------
# Both are io_stream CNNs (Vivado HLS 2020.1, xcu250, 5 ns), which the estimator does not model: their
# conv/pooling/FIFO figures, their totals and their latencies (stream handshakes included) say nothing about
# an io_parallel MLP. What carries over: the part, and the dense and softmax instances, whose kernels are the
# ones io_parallel uses (the io_stream dense wrapper reads a whole array and calls dense_latency).


def _instances(name: str) -> dict[str, dict[str, float]]:
    return csynth_instances((FIXTURES / f"{name}_csynth.rpt").read_text())


def test_fixture_part_is_an_ultrascale_plus_with_its_capacities() -> None:
    text = (FIXTURES / "pruned_cnn_csynth.rpt").read_text()
    assert "Product family: virtexuplus" in text and "Target device:  xcu250-figd2104-2L-e" in text
    part = get_part("xcu250-figd2104-2L-e")
    assert part.dsp_slice == "DSP48E2" and part.dsp_multiplier_bits == (27, 18)
    assert "|Available            |     5376|  12288|  3456000|  1728000|" in text
    assert (part.bram_18k, part.dsp, part.ff, part.lut) == (5376, 12288, 3_456_000, 1_728_000)


def test_fixture_dense_layers_with_16_bit_and_6_bit_weights() -> None:
    dsp_bits = get_part("xcu250").dsp_multiplier_bits
    # pruned_cnn: the unpruned 64 → 10 output layer, ap_fixed<16,6> weights (the tutorial's precision), RF 1
    real = _instances("pruned_cnn")["dense_array_array_ap_fixed_16_6_5_3_0_10u_config25_s"]
    est = dense_estimate(dense("output", 64, 10), 5.0, dsp_bits=dsp_bits)
    assert real["dsp"] == 549 and est["dsp"] == round(640 * SHARE_16_6)
    assert abs(est["dsp"] - real["dsp"]) / real["dsp"] < 0.05
    # quantized_pruned_cnn: the same network with 6-bit weights (QKeras quantized_bits(6,0): ap_fixed<6,1>);
    # the reports name the layers by their output size, so 96 → 42, 42 → 64, 64 → 10
    quantized = _instances("quantized_pruned_cnn")
    shapes = {"42u_config14": (96, 42), "64u_config18": (42, 64), "10u_config22": (64, 10)}
    got = {}
    for suffix, (n_in, n_out) in shapes.items():
        real_dsp = quantized[f"dense_array_array_ap_fixed_16_6_5_3_0_{suffix}_s"]["dsp"]
        est = dense_estimate(dense("q", n_in, n_out, bits=6, integer=1), 5.0, dsp_bits=dsp_bits)
        got[suffix] = (real_dsp, est["dsp"])
        assert real_dsp <= 0.15 * n_in * n_out  # the rule gives 0; the output layer's 83 are what it misses
    assert got == {"42u_config14": (6, 0), "64u_config18": (0, 0), "10u_config22": (83, 0)}


def test_fixture_softmax_instance_is_the_latency_softmax_rule() -> None:
    for name, module in (
        ("pruned_cnn", "softmax_array_array_ap_fixed_10u_softmax_config27_s"),
        ("quantized_pruned_cnn", "softmax_array_array_ap_fixed_10u_softmax_config24_s"),
    ):
        real = _instances(name)[module]
        rule = SOFTMAX["latency"]
        assert real["dsp"] == 10 * rule["dsp_per_class"] and real["bram"] == 2 * rule["bram_per_5_classes"]
        assert real["ff"] == pytest.approx(10 * rule["ff_per_class"])
        assert real["lut"] == pytest.approx(10 * rule["lut_per_class"])
        assert real["latency_cycles"] == rule["cycles"]


def test_public_vitis_report_of_the_pruned_jet_tagger() -> None:
    """The LUT, FF and latency rates' calibration point, so this holds the code to it (it does not test the
    rules): github.com/Lrozzy/hls4ml_OpenML, model_2.1/hls4ml_prj_prune_60/.../myproject_csynth.rpt
    (Vitis HLS 2024.1, xcu50, 5 ns, ap_fixed<16,6> everywhere, RF 1, Latency, 75 % of the weights pruned):
    817 DSP, 35,326 LUT, 8,462 FF, 8 BRAM_18K, 14 cycles, II 1."""
    got = estimate(network([16, 64, 32, 32, 5], Q16, sparsity=0.75), get_part("xcvu9p"))
    real = {"dsp": 817, "lut": 35_326, "ff": 8_462}
    for key, value in real.items():
        assert abs(got[key] - value) / value < 0.2, key
    assert (got["bram"], got["latency_cycles"], got["initiation_interval"]) == (8, 14, 1)


# --- the command line -------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "search_spaces.hls.estimate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


def test_cli_prints_one_estimate() -> None:
    out = _cli(
        "--layers", "16,64,32,32,5", "--precision", "ap_fixed<16,6>", "--weight-precision", "ap_fixed<7,1>",
        "--reuse", "1", "--sparsity", "0.75", "--strategy", "Latency", "--part", "xcku115",
    )  # fmt: skip
    assert out.returncode == 0 and out.stderr == ""
    got = json.loads(out.stdout)
    assert {"dsp", "lut", "ff", "bram18", "latency_cycles", "ii", "layers", "utilisation"} <= set(got)
    kept = [a * b - round(0.75 * a * b) for a, b in SHAPES]
    assert got["dsp"] == sum(round(n * SHARE_7_1) for n in kept) + 5  # wide 7-bit constants + the softmax
    assert (got["bram18"], got["latency_cycles"], got["ii"], got["part"]) == (8, 14, 1, "xcku115-flvb2104-2-i")


def test_cli_resource_strategy_moves_an_invalid_reuse_factor_like_hls4ml() -> None:
    got = json.loads(_cli("--layers", "16,8", "--strategy", "resource", "--reuse", "5", "--no-softmax").stdout)
    assert got["layers"][0]["reuse_factor"] == closest_reuse_factor(16, 8, 5) == 4  # as in test_hls_project
    assert got["ii"] == 4 and got["dsp"] == 128 // 4 and got["bram18"] == math.ceil(128 * 16 / (4 * 36))


def test_valid_reuse_factors_are_hls4mls() -> None:
    hls4ml = pytest.importorskip("hls4ml")
    backend = hls4ml.backends.get_backend("Vitis")
    for n_in, n_out in ((16, 64), (64, 32), (32, 5), (16, 8), (7, 3)):
        assert valid_reuse_factors(n_in, n_out) == backend.get_valid_reuse_factors(n_in, n_out)


@pytest.mark.parametrize(
    ("args", "word"),
    [
        ([], "--layers"),
        (["--layers", "16"], "--layers"),
        (["--layers", "16,x"], "--layers"),
        (["--layers", "16,8", "--precision", "float"], "ap_fixed"),
        (["--layers", "16,8", "--part", "xc9z999"], "xc9z999"),
        (["--layers", "16,8", "--sparsity", "1.5"], "--sparsity"),
        (["--layers", "16,8", "--reuse", "0"], "--reuse"),
        (["--layers", "16,8", "--strategy", "fast"], "--strategy"),
        (["--layers", "16,8", "--clock", "-5"], "--clock"),
    ],
)
def test_cli_bad_arguments_get_one_line_and_exit_2(args: list[str], word: str) -> None:
    out = _cli(*args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and out.stdout == ""
    assert len(lines) == 1 and word in lines[0], out.stderr
