"""hls4ml_sweep on a CNN: trials per minute, fixed-point vs float accuracy by bit width, estimate vs fixtures.

1. **Throughput**: a kit CNN (``--model``: the VGG of widths 16-32-64 by default, or a MobileNet, a ResNet,
   a pathlevel network whose cells add and concatenate; trained here on 8×8 digits) swept by the job kind in
   io_stream at 16, 12 and 8 total bits (6 integer bits), reuse factors 1/2/4, ``--trials`` trials per bit
   width (one compile per width, the other trials reuse its emulation); trials per minute over the
   sweeps' wall time, and the seconds of one compile + emulation of the 500-image validation subset.
2. **Fixed-point vs float** accuracy on that subset at each bit width.
3. **Estimate vs the real reports** in ``../shared/fixtures/vivado`` (the hls4ml tutorial's CNN): every
   figure of every report, estimate beside report, relative error.

    nice -n 10 .venv/bin/python bench/hls4ml_cnn.py            # ~2.5 minutes on 2 cores
    nice -n 10 .venv/bin/python -m bench.hls4ml_cnn --model pathlevel --trials 2

Measured once (2 shared cores): 9 trials in 83.5 s = 6.5 trials/min; a compile + emulation 20-29 s; fixed vs
float 0.978/0.978 at 16 bits, 0.963 at 12, 0.100 at 8 (6 integer bits leave 2 fractional: collapses).

Last line: ``RESULT trials_per_min=.. dsp_error_max=.. latency_error_max=..`` (errors against the
C-synthesis reports, as fractions).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from search_spaces.base import JobInputs, MemoryReporter
from search_spaces.hls import reports, stream
from search_spaces.hls.network import CNN_EMULATION_SAMPLES  # the cap; digits' validation split is smaller
from search_spaces.hls.parts import get_part
from search_spaces.hls4ml_sweep import Hls4mlSweep
from search_spaces.kit import datasets, trainer
from search_spaces.kit.models import build_model, complete_arch, save_model

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "vivado"


def fixture_table() -> list[tuple[str, str, float, float, float]]:
    """(report file, figure, estimate, report, relative error) for every figure of every fixture report."""
    rows = []
    for path in sorted(FIXTURES.glob("*.rpt")):
        est = stream.stream_estimate(
            stream.hls4ml_tutorial_cnn(quantized=path.name.startswith("quantized")), get_part("xcu250")
        )
        parse = reports.parse_csynth_rpt if "csynth" in path.name else reports.parse_vivado_synth
        report = parse(path.read_text(), path.name)
        for figure in ("dsp", "bram", "latency_cycles", "initiation_interval", "lut", "ff"):
            value = getattr(report, figure)
            if value:
                rows.append((path.name, figure, float(est[figure]), float(value), (est[figure] - value) / value))
    return rows


# The kit CNNs the sweep converts; the pathlevel cell holds every merge a search makes (a replicate-and-add mean
# over a separable convolution and an identity edge leading to a concat of a 1x1 and a group convolution).
MODELS: dict[str, dict] = {
    "vgg": {"name": "vgg"},
    "mobilenet": {"name": "mobilenet", "stem": 8, "widths": [8, 16], "strides": [1, 2]},
    "resnet": {"name": "resnet", "widths": [8, 16]},
    "pathlevel": {
        "name": "pathlevel",
        "stem": 8,
        "widths": [8, 16],
        "tree": {
            "split": "copy",
            "merge": "add",
            "branches": [
                {"op": "sep3x3", "child": None},
                {
                    "op": "identity",
                    "child": {
                        "split": "copy",
                        "merge": "concat",
                        "branches": [{"op": "conv1x1", "child": None}, {"op": "gconv3x3", "child": None}],
                    },
                },
            ],
        },
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="trials per bit width")
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="vgg",
        help="kit CNN swept: the VGG (default), a MobileNet, a ResNet, or a pathlevel network whose cells merge",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "hls4ml_cnn")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)

    arch = complete_arch({**MODELS[args.model], "input_shape": [1, 8, 8], "num_classes": 10})
    trainer.set_seed(0)
    model = build_model(arch)
    splits = datasets.load("digits", seed=0)
    trainer.train(model, splits.x_train, splits.y_train, epochs=8, lr=0.01, batch_size=64, seed=0, optimizer="adam")
    model_path = args.out / f"{args.model}.pt"
    save_model(model, arch, model_path)

    kind = Hls4mlSweep()
    by_bits: dict[int, dict[str, float]] = {}
    trials, seconds, compile_seconds = 0, 0.0, []
    with trainer.torch_threads(2):
        for bits in (16, 12, 8):
            config = kind.validate(
                {
                    "n_trials": args.trials,
                    "total_bits": [bits],
                    "integer_bits": [6],
                    "reuse_factors": [1, 2, 4],
                    "strategies": ["Latency"],
                }
            )
            workdir = args.out / f"w{bits}"
            reporter = MemoryReporter()
            started = time.perf_counter()
            result = kind.run(
                config,
                JobInputs(dataset="digits", model_path=model_path, model_arch=arch, workdir=workdir, threads=2),
                reporter,
            )
            seconds += time.perf_counter() - started
            trials += result["trials"]
            compile_seconds.append(result["compile_seconds"] / max(1, result["compiles"]))
            fixed = [t["metrics"]["fixed_accuracy"] for t in reporter.trials.values() if t["state"] == "complete"]
            by_bits[bits] = {"float": result["float_accuracy"], "fixed": max(fixed) if fixed else float("nan")}
    trials_per_min = 60.0 * trials / seconds

    print(f"throughput: {trials} trials in {seconds:.1f} s = {trials_per_min:.1f} trials/min (2 cores)")
    images = min(CNN_EMULATION_SAMPLES, len(splits.x_val))
    print(f"one compile + emulation of {images} images: {', '.join(f'{s:.1f} s' for s in compile_seconds)}")
    print(f"{'bits':>4} {'float':>7} {'fixed':>7} {'drop (points)':>14}")
    for bits, acc in by_bits.items():
        print(f"{bits:>4} {acc['float']:7.3f} {acc['fixed']:7.3f} {100 * (acc['float'] - acc['fixed']):14.1f}")
    table = fixture_table()
    print(f"{'report':40} {'figure':20} {'estimate':>10} {'report':>10} {'error':>8}")
    for name, figure, e, r, err in table:
        print(f"{name:40} {figure:20} {e:10.0f} {r:10.0f} {100 * err:+7.1f}%")
    csynth = [row for row in table if "csynth" in row[0]]
    dsp_error = max(abs(row[4]) for row in csynth if row[1] == "dsp")
    latency_error = max(abs(row[4]) for row in csynth if row[1] == "latency_cycles")
    (args.out / "result.json").write_text(
        json.dumps({"trials_per_min": trials_per_min, "accuracy": by_bits, "fixtures": table}, indent=1)
    )
    errors = f"dsp_error_max={dsp_error:.3f} latency_error_max={latency_error:.4f}"
    print(f"RESULT trials_per_min={trials_per_min:.2f} {errors}")


if __name__ == "__main__":
    main()
