"""The io_stream (CNN) estimate against every real report in the fixtures, and the reader on a real project.

The fixtures are Vivado HLS 2020.1 C-synthesis reports and Vivado logic-synthesis utilisation reports of the
hls4ml tutorial's SVHN CNN (pruned, and quantised + pruned; ``search_spaces.hls.stream.hls4ml_tutorial_cnn``).
Each figure is printed as estimate vs report. Goals: DSP within 10 %, BRAM within 20 %, latency within 10 %.
Asserted: what the estimate meets (BRAM and latency against the C-synthesis reports, the conv stages'
latencies) and, for the DSP misses, the documented bounds (``search_spaces.hls.stream``/``estimate``
docstrings): weights assumed spread evenly over ``|w| < 1`` overcount the products of trained 16-bit weights,
and the 6-bit constant rule counts none of the DSPs the 2020.1 tool still used for 6-bit weights.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from search_spaces.hls import reports, stream
from search_spaces.hls.estimate import estimate
from search_spaces.hls.parts import get_part
from search_spaces.hls.project import read_project

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "vivado"
if not FIXTURES.is_dir():  # a checkout beside ../shared, or the shared tree at /work/shared
    FIXTURES = Path("/work/shared/fixtures/vivado")
MODELS = ("pruned_cnn", "quantized_pruned_cnn")


def _estimate(model: str) -> dict:
    return stream.stream_estimate(
        stream.hls4ml_tutorial_cnn(quantized=model.startswith("quantized")), get_part("xcu250")
    )


def _error(estimated: float, reported: float) -> float:
    return (estimated - reported) / reported


def comparison_rows() -> list[tuple[str, str, str, float, float, float]]:
    """(model, report file, figure, estimate, report, relative error) for every figure of every fixture."""
    rows = []
    for model in MODELS:
        est = _estimate(model)
        for path in sorted(FIXTURES.glob(f"{model}_*.rpt")):
            if path.name.startswith("quantized") != model.startswith("quantized"):
                continue
            text = path.read_text()
            if "csynth" in path.name:
                report = reports.parse_csynth_rpt(text, path.name)
            else:
                report = reports.parse_vivado_synth(text, path.name)
            for figure in ("dsp", "bram", "latency_cycles", "initiation_interval", "lut", "ff"):
                value = getattr(report, figure)
                if value:
                    rows.append(
                        (model, path.name, figure, float(est[figure]), float(value), _error(est[figure], value))
                    )
    return rows


def test_every_fixture_report_is_compared_and_printed(capsys: pytest.CaptureFixture[str]) -> None:
    rows = comparison_rows()
    assert {r[1] for r in rows} == {p.name for p in FIXTURES.glob("*.rpt")}, "every report is compared"
    with capsys.disabled():
        print(f"\n{'report':40} {'figure':20} {'estimate':>10} {'report':>10} {'error':>8}")
        for _, name, figure, e, r, err in rows:
            print(f"{name:40} {figure:20} {e:10.0f} {r:10.0f} {100 * err:+7.1f}%")


@pytest.mark.parametrize("model", MODELS)
def test_bram_and_latency_meet_their_goals_against_c_synthesis(model: str) -> None:
    text = (FIXTURES / f"{model}_csynth.rpt").read_text()
    report = reports.parse_csynth_rpt(text)
    est = _estimate(model)
    assert report.bram and abs(_error(est["bram"], report.bram)) <= 0.20
    assert report.latency_cycles and abs(_error(est["latency_cycles"], report.latency_cycles)) <= 0.10
    assert est["initiation_interval"] == report.initiation_interval
    # every convolution stage's own latency (image pixels at II = 1 plus its pipeline) within 10 %
    instances = [v for k, v in reports.csynth_instances(text).items() if k.startswith("conv_2d_cl")]
    convs = sorted(r["latency_cycles"] for r in est["layers"] if r["kind"] == "conv")
    assert len(convs) == len(instances) == 3
    for e, r in zip(convs, sorted(v["latency_cycles"] for v in instances), strict=True):
        assert abs(_error(e, r)) <= 0.10, (e, r)


def test_dsp_misses_stay_within_their_documented_bounds() -> None:
    """Not the 10 % goal: the weight values behind the reports are not in the fixtures (see module docstring)."""
    pruned = reports.parse_csynth_rpt((FIXTURES / "pruned_cnn_csynth.rpt").read_text())
    quantized = reports.parse_csynth_rpt((FIXTURES / "quantized_pruned_cnn_csynth.rpt").read_text())
    assert pruned.dsp and quantized.dsp
    assert 0 <= _error(_estimate("pruned_cnn")["dsp"], pruned.dsp) <= 0.25  # an overcount, under 25 %
    assert _estimate("quantized_pruned_cnn")["dsp"] <= quantized.dsp  # 6-bit constants: an undercount


def test_fifo_blocks_follow_depth_and_the_block_aspects() -> None:
    fifo = stream.StreamFifo
    assert stream.fifo_bram(fifo("a", 16, 16, 16)) == 0  # 16 deep: SRLs (both reports)
    assert stream.fifo_bram(fifo("a", 16, 16, 36)) == 16  # 36 deep: one block per lane
    assert stream.fifo_bram(fifo("a", 1, 16, 900)) == 1  # 1K × 18
    assert stream.fifo_bram(fifo("a", 1, 37, 900)) == 3  # a 37-bit accumulator word: three 18-bit blocks
    assert stream.fifo_bram(fifo("a", 1, 16, 2000)) == 2  # 2K × 9


def test_a_real_cnn_project_is_read_and_estimated(tmp_path: Path) -> None:
    """hls4ml's PyTorch frontend writes a small CNN in io_stream; the reader finds its stages and streams."""
    import hls4ml
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8, 10),
        nn.Softmax(dim=-1),
    ).eval()
    with contextlib.redirect_stdout(io.StringIO()):
        cfg = hls4ml.utils.config_from_pytorch_model(
            model, input_shape=(1, 8, 8), granularity="name", default_precision="ap_fixed<16,6>", backend="Vitis"
        )
        hm = hls4ml.converters.convert_from_pytorch_model(
            model,
            hls_config=cfg,
            output_dir=str(tmp_path / "p"),
            backend="Vitis",
            io_type="io_stream",
            part="xcu250-figd2104-2L-e",
        )
        hm.write()
    applied = read_project(tmp_path / "p")
    assert applied.io_type == "io_stream"
    assert applied.input_image == (8, 8, 1)
    assert [k for k, _ in applied.order].count("conv") == 2 and len(applied.pools) == 2
    first, second = applied.conv
    assert (first.in_height, first.n_chan, first.n_filt, first.fan_in) == (10, 1, 4, 9)  # after the zero padding
    assert (second.in_height, second.out_height, second.n_filt) == (4, 2, 8)
    # the weight files were read (a weight that casts to 0 needs no product and is not counted)
    assert 30 < sum(first.constant_bits) <= 36 and 270 < sum(second.constant_bits) <= 288
    depths = {f.name: (f.lanes, f.depth) for f in applied.streams}
    assert depths["layer2_out"] == (4, 64)  # the first conv's 8×8 output, one FIFO per filter
    est = estimate(applied, get_part("xcu250"))
    conv_rows = [r for r in est["layers"] if r["kind"] == "conv"]
    assert conv_rows[0]["latency_cycles"] >= 100  # one pixel per cycle over the padded 10×10 image
    assert est["initiation_interval"] == max(r["interval_cycles"] for r in est["layers"]) + 1
    assert est["dsp"] > 0 and est["latency_cycles"] > conv_rows[0]["latency_cycles"]
