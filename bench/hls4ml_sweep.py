"""hls4ml_sweep figures: trials per minute, fixed-point vs float accuracy by bit width, DSP vs reuse factor.

1. **Throughput**: the job kind's default sweep (16-64-32-32-5 MLP on the synthetic jets, 40 trials) run
   as a job would run it; trials per minute, how many emulations were compiled and how many reused.
2. **Fixed-point vs float** validation accuracy of the trained default model at 16, 12 and 8 total bits
   (integer bits 3..7, each compiled); the spec's goal: within 1 point of float at 16 bits.
3. **DSP vs reuse factor** 1…16 for the same model (Latency strategy, 16 bits; estimate from the applied
   configuration of each generated project): DSP·RF / DSP(RF=1) should stay near 1 (DSP ∝ 1/RF).
4. **Cost of a trial**: write + read back + estimate (a reused emulation) vs a compile, in one run.

    .venv/bin/python bench/hls4ml_sweep.py                 # ~5 minutes on 2 cores
    .venv/bin/python bench/hls4ml_sweep.py --trials 12     # quicker

Writes ``bench/out/hls4ml_sweep/result.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from search_spaces.base import JobInputs, MemoryReporter
from search_spaces.hls4ml_sweep import Hls4mlSweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--dataset", default="jets_synthetic")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "hls4ml_sweep")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    kind = Hls4mlSweep()

    # 1. throughput of the default sweep
    config = kind.validate({"n_trials": args.trials})
    reporter = MemoryReporter()
    inputs = JobInputs(
        dataset=args.dataset,
        workdir=args.out / "sweep",
        study_name="bench",
        optuna_storage=f"sqlite:///{args.out / 'optuna.sqlite3'}",
    )
    started = time.perf_counter()
    result = kind.run(config, inputs, reporter)
    wall = time.perf_counter() - started
    print(
        f"default sweep: {result['trials']} trials in {wall:.1f} s ({60 * result['trials'] / wall:.1f} trials/min, "
        f"pretraining included); {result['compiles']} compiles ({result['compile_seconds']:.1f} s), "
        f"{result['emulations_reused']} emulations reused, {len(result['failed'])} failed; "
        f"Pareto front {len(result['pareto'])} trials"
    )
    rf_span = sorted({rf for row in result["pareto"] for rf in row["reuse_factor"].values()})
    print(f"  reuse factors on the Pareto front: {rf_span}; float accuracy {result['float_accuracy']:.4f}")

    # 2-4 use the sweep's internals on the model trained above (from its checkpoint).
    from search_spaces.hls import estimate as est
    from search_spaces.hls.config import Settings, TrialFailed
    from search_spaces.hls.network import prepare_network
    from search_spaces.hls.project import read_project
    from search_spaces.hls.study import open_study
    from search_spaces.hls.trial import _Run, evaluate_trial

    settings = Settings.from_config(config)
    net = prepare_network(settings, inputs, MemoryReporter(checkpoint=reporter.checkpoint))
    study = open_study(settings, JobInputs(study_name="scratch"))
    run = _Run(settings, inputs, MemoryReporter(), net, study, args.out / "probe", valid_rf={})
    run.workdir.mkdir(parents=True)
    base = {"strategy": "Latency", "sparsity": 0.0, **{f"rf_{n}": 4 for n in net.dense_names}}

    print(f"\nfixed-point vs float validation accuracy (float {net.float_accuracy:.4f}):")
    print(f"{'bits':>5} {'int':>4} {'fixed':>8} {'drop (points)':>14}")
    precision_rows = []
    number = 0
    for bits in (16, 12, 8):
        for integer in (3, 4, 5, 6, 7):
            params = {**base, "bits_all": bits, "int_all": integer}
            number += 1
            try:
                metrics = evaluate_trial(run, number, params)
                fixed, note = metrics["fixed_accuracy"], ""
            except TrialFailed as exc:
                fixed, note = None, str(exc)[:70]
            drop = None if fixed is None else 100 * (net.float_accuracy - fixed)
            precision_rows.append({"bits": bits, "integer": integer, "fixed": fixed, "drop_points": drop, "note": note})
            shown = "failed: " + note if fixed is None else f"{fixed:8.4f} {drop:14.2f}"
            print(f"{bits:>5} {integer:>4} {shown}")
    best16 = min((r["drop_points"] for r in precision_rows if r["bits"] == 16 and r["fixed"] is not None), default=None)
    print(f"  16 bits: best drop {best16:.2f} points (goal ≤ 1)" if best16 is not None else "  16 bits: all failed")

    print("\nDSP estimate vs reuse factor (16-bit, Latency):")
    print(f"{'RF':>4} {'DSP':>6} {'DSP·RF / DSP(1)':>16} {'latency ns':>11} {'II':>4}")
    dsp_rows = []
    write_times, estimate_times = [], []
    for rf in (1, 2, 4, 8, 16):
        params = {**base, "bits_all": 16, "int_all": 6, **{f"rf_{n}": rf for n in net.dense_names}}
        number += 1
        t0 = time.perf_counter()
        metrics = evaluate_trial(run, number, params)  # same numerics as the 16-bit row above: reused
        write_times.append(time.perf_counter() - t0)
        applied = read_project(run.workdir / metrics["project"])
        t0 = time.perf_counter()
        est.estimate(applied, settings.part, settings.clock_period_ns)
        estimate_times.append(time.perf_counter() - t0)
        dsp_rows.append(
            {
                "rf": rf,
                "dsp": metrics["dsp"],
                "latency_ns": metrics["latency_ns"],
                "ii": metrics["initiation_interval"],
                "applied": metrics["reuse_factor"],
            }
        )
    for row in dsp_rows:
        row["dsp_x_rf_ratio"] = row["dsp"] * row["rf"] / dsp_rows[0]["dsp"]
        print(
            f"{row['rf']:>4} {row['dsp']:>6} {row['dsp_x_rf_ratio']:>16.3f} {row['latency_ns']:>11.1f} {row['ii']:>4}"
        )

    compile_each = run.compile_seconds / max(1, run.compiles)
    reused_each = sum(write_times) / len(write_times)
    print(
        f"\ntrial cost: compile {compile_each:.2f} s vs reused emulation {reused_each * 1000:.0f} ms "
        f"(ratio {compile_each / reused_each:.0f}×); estimate alone {1000 * max(estimate_times):.2f} ms max"
    )
    summary = {
        "sweep": {
            "trials": result["trials"],
            "wall_s": wall,
            "trials_per_min": 60 * result["trials"] / wall,
            "compiles": result["compiles"],
            "reused": result["emulations_reused"],
            "failed": len(result["failed"]),
            "pareto": result["pareto"],
            "rf_on_front": rf_span,
        },
        "float_accuracy": net.float_accuracy,
        "precision": precision_rows,
        "dsp_vs_rf": dsp_rows,
        "compile_s": compile_each,
        "reused_trial_s": reused_each,
        "estimate_ms_max": 1000 * max(estimate_times),
    }
    (args.out / "result.json").write_text(json.dumps(summary, indent=2, default=float))
    print(f"\nwritten {args.out / 'result.json'}")


if __name__ == "__main__":
    main()
