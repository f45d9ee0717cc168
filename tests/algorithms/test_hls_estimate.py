"""The FPGA estimator on hand-made applied configurations: each formula of its docstring, checked."""

from __future__ import annotations

import math
import time

import pytest

from search_spaces.hls.estimate import dense_estimate, dsp_per_multiplier, estimate
from search_spaces.hls.parts import PARTS, get_part
from search_spaces.hls.project import ActivationLayer, AppliedConfig, DenseLayer, FixedType, parse_type

Q16 = FixedType(16, 6)


def dense(
    name: str, n_in: int, n_out: int, rf: int = 1, *, bits: int = 16, strategy: str = "latency", zeros: int = 0
) -> DenseLayer:
    w = FixedType(bits, 6)
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
        input=Q16,
        result=FixedType(18, 8),
    )


def jet_tagger(rf: int = 1, *, strategy: str = "latency", bits: int = 16) -> AppliedConfig:
    shapes = [(16, 64), (64, 32), (32, 32), (32, 5)]
    layers = [dense(f"fc{i}", a, b, rf, bits=bits, strategy=strategy) for i, (a, b) in enumerate(shapes, 1)]
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
    weights = 16 * 64 + 64 * 32 + 32 * 32 + 32 * 5
    for rf in (1, 2, 4, 8, 16):
        got = estimate(jet_tagger(rf), part)["dsp"] - softmax_dsp
        assert got == sum(math.ceil(a * b / rf) for a, b in ((16, 64), (64, 32), (32, 32), (32, 5)))
        assert got == pytest.approx(weights / rf, rel=0.02)


def test_narrow_weights_go_to_luts_and_wide_products_take_two_dsps() -> None:
    assert dsp_per_multiplier(8, 16) == 0
    assert dsp_per_multiplier(9, 16) == 1
    assert dsp_per_multiplier(18, 25) == 1
    assert dsp_per_multiplier(27, 16) == 2
    narrow = dense_estimate(dense("fc", 16, 8, bits=8), 5.0)
    wide = dense_estimate(dense("fc", 16, 8, bits=16), 5.0)
    assert narrow["dsp"] == 0 and narrow["lut"] > wide["lut"]
    assert wide["dsp"] == 128


def test_pruned_weights_need_no_multiplier() -> None:
    row = dense_estimate(dense("fc", 16, 8, rf=2, zeros=40), 5.0)
    assert row["multipliers"] == 64 - 20 and row["dsp"] == 44


def test_bram_only_with_resource_strategy_and_reuse() -> None:
    assert dense_estimate(dense("fc", 64, 32, rf=4, strategy="latency"), 5.0)["bram"] == 0
    assert dense_estimate(dense("fc", 64, 32, rf=1, strategy="resource"), 5.0)["bram"] == 0
    row = dense_estimate(dense("fc", 64, 32, rf=4, strategy="resource"), 5.0)
    assert row["bram"] == math.ceil(64 * 32 * 16 / (4 * 36))
    assert row["ff"] == 32 * 18  # weights in BRAM: only the outputs are registers


def test_latency_and_interval() -> None:
    one = estimate(jet_tagger(1), get_part("xcku115"))
    assert one["latency_cycles"] == 27 and one["latency_ns"] == 135.0  # the docstring's calibration point
    assert one["initiation_interval"] == 1
    sixteen = estimate(jet_tagger(16), get_part("xcku115"))
    assert sixteen["initiation_interval"] == 16 and sixteen["latency_cycles"] > 3 * one["latency_cycles"]
    slow_clock = estimate(jet_tagger(1), get_part("xcku115"), clock_period_ns=10.0)
    assert slow_clock["latency_cycles"] < one["latency_cycles"]  # more adder levels fit in a longer cycle


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
