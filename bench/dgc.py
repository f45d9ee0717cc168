"""Deep Gradient Compression (Lin et al., ICLR 2018) measured with the ``dgc_train`` job kind.

Per seed, one job: N = 4 real worker processes (torch.distributed, gloo) train the kind's built-in model
(a VGG whose 1-D tensors are 0.3% of its parameters) on built-in data with the kind's defaults (sparsity
99.9%, the paper's warm-up, momentum correction, local clipping, momentum factor masking, fp16 values +
int32 indices, the per-worker batch that gives every entry two expected sends after the warm-up), then
the dense all-reduce baseline with the same seed, shards, batches and schedule, then DGC the reference
code's way (1-D tensors dense, exactly k entries, local weight decay, learning-rate warm-up). On the
first ``--ablation-seeds`` seeds the same DGC run is repeated without momentum correction and without
factor masking (the ablations). Then one process steps alone through the DGC path to time the top-k
selection against the step's compute.

Printed: per seed and run, accuracy (validation and test), bytes per worker, compression ratio overall
and in the steady phase (after the warm-up; values + indices counted), compute and communication
seconds; the worst seed's gap to dense; and how many test images one accuracy point is. The figures to
check (shared/spec/jobs/dgc_train.md): steady-phase compression ≥ 270× with the final test accuracy
within 0.5 points of dense on every seed; the ablations cost accuracy; top-k selection ≤ 10% of the
step's compute time. The last line is ``RESULT key=value ...``.

    .venv/bin/python bench/dgc.py --dataset digits --seeds 3
    .venv/bin/python bench/dgc.py --dataset mnist5k --seeds 3

Writes ``bench/out/dgc/<dataset>/result.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from search_spaces.base import JobInputs, MemoryReporter
from search_spaces.dgc_train import DgcTrain

KIND = DgcTrain()
ABLATIONS = {"no momentum correction": {"momentum_correction": False}, "no factor masking": {"factor_masking": False}}


def run_kind(config: dict[str, Any], dataset: str, workdir: Path) -> tuple[dict[str, Any], MemoryReporter]:
    workdir.mkdir(parents=True, exist_ok=True)
    reporter = MemoryReporter()
    result = KIND.run(KIND.validate(config), JobInputs(seed=0, dataset=dataset, workdir=workdir), reporter)
    return result, reporter


def steady_select_share(reporter: MemoryReporter, first: int, epochs: int, warmup: int) -> float:
    """Σ top-k selection seconds / Σ step compute seconds over a DGC run's epochs after the warm-up."""
    rows = [reporter.trials[first + e]["metrics"] for e in range(min(warmup, epochs - 1), epochs)]
    return sum(r["select_s"] for r in rows) / sum(r["compute_s"] for r in rows)


def isolated_select_share(
    dataset: str, config: dict[str, Any], arch: dict[str, Any], steps: int = 150
) -> dict[str, float]:
    """One process steps alone through the DGC path (forward, backward, compress, sum of N pieces, update) on
    the job's model and batch at the final sparsity, as one of N workers would; median times per step."""
    import torch
    import torch.nn.functional as F

    from search_spaces.dgc.compressor import DGCCompressor, DGCSettings
    from search_spaces.kit import datasets, models, trainer

    torch.set_num_threads(1)
    splits = datasets.load(dataset, seed=0)
    trainer.set_seed(0)
    model = models.build_model(arch)
    params = list(model.parameters())
    settings = DGCSettings(warmup=(), clip_norm=config["clip_norm"], value_dtype=config["value_dtype"])
    workers = config["workers"]
    comp = DGCCompressor([p.shape for p in params], settings, world_size=workers)
    x, y = torch.from_numpy(splits.x_train), torch.from_numpy(splits.y_train)
    generator = torch.Generator().manual_seed(0)
    step_s: list[float] = []
    select_s: list[float] = []
    for i in range(steps):
        idx = torch.randint(0, len(x), (config["batch_size"],), generator=generator)
        before = comp.stats.select_seconds
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        model.zero_grad(set_to_none=True)
        loss.backward()
        piece = comp.compress([p.grad for p in params], params)
        comp.apply_update(params, comp.direction(comp.aggregate([piece] * workers)), 0.01)
        if i >= 20:  # past the first steps' allocations
            step_s.append(time.perf_counter() - t0)
            select_s.append(comp.stats.select_seconds - before)
    step, select = statistics.median(step_s), statistics.median(select_s)
    return {"step_ms": 1e3 * step, "select_ms": 1e3 * select, "share": select / step}


def run_summary(
    result: dict[str, Any], mode: str, reporter: MemoryReporter, epochs: int, warmup: int
) -> dict[str, Any]:
    run = dict(result[mode])
    first = {"dgc": 0, "dense": epochs, "reference": 2 * epochs}[mode]
    run["val_curve"] = [reporter.trials[first + e]["values"][0] for e in range(epochs)]
    if mode != "dense":
        run["steady_select_share"] = steady_select_share(reporter, first, epochs, warmup)
    return run


def bench(args: argparse.Namespace) -> dict[str, Any]:
    base: dict[str, Any] = {"workers": args.workers}
    if args.epochs:
        base["epochs"] = args.epochs
    seeds: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        started = time.time()
        cfg = {**base, "seed": seed}
        result, reporter = run_kind(cfg, args.dataset, args.out / f"seed{seed}")
        epochs, warmup = result["epochs"], KIND.validate(cfg)["warmup_epochs"]
        entry: dict[str, Any] = {
            "seed": seed,
            "job_s": time.time() - started,
            "batch_size": result["batch_size"],
            "expected_sends_per_entry": result["expected_sends_per_entry"],
            "runs": {m: run_summary(result, m, reporter, epochs, warmup) for m in ("dgc", "dense", "reference")},
            "ablations": {},
        }
        print(
            f"  seed {seed}: dgc + dense + reference in {entry['job_s']:.0f} s "
            f"(batch {result['batch_size']}/worker, {result['expected_sends_per_entry']:.2f} expected sends)",
            flush=True,
        )
        if seed < args.ablation_seeds:
            for name, overrides in ABLATIONS.items():
                t0 = time.time()
                abl_cfg = {**cfg, **overrides, "run_dense_baseline": False, "run_reference_mode": False}
                abl, abl_reporter = run_kind(abl_cfg, args.dataset, args.out / f"seed{seed}" / name.replace(" ", "_"))
                entry["ablations"][name] = {
                    **run_summary(abl, "dgc", abl_reporter, epochs, warmup),
                    "job_s": time.time() - t0,
                }
                print(f"  seed {seed}: {name} in {time.time() - t0:.0f} s", flush=True)
        seeds.append(entry)
    config = KIND.validate({**base, "batch_size": seeds[0]["batch_size"]})
    arch = result["output_arch"]
    return {
        "dataset": args.dataset,
        "config": config,
        "arch": arch,
        "parameters": result["parameters"],
        "one_dimensional_share": result["one_dimensional_share"],
        "val_images": result["val_images"],
        "test_images": result["test_images"],
        "seeds": seeds,
        "isolated_step": isolated_select_share(args.dataset, config, arch),
    }


def print_report(report: dict[str, Any], wall_s: float) -> str:
    config, seeds = report["config"], report["seeds"]
    test_images = report["test_images"]
    print(
        f"\n{report['dataset']}: N={config['workers']}, {config['epochs']} epochs, batch {config['batch_size']}/worker "
        f"(auto: {seeds[0]['expected_sends_per_entry']:.2f} expected sends per entry after the warm-up), lr "
        f"{config['lr']} ({config['lr_schedule']}), sparsity {config['sparsity']}, {config['value_dtype']} values; "
        f"model vgg {report['arch']['widths']}: {report['parameters']} parameters, "
        f"{100 * report['one_dimensional_share']:.2f}% in 1-D tensors"
    )
    print(
        f"validation {report['val_images']} images, test {test_images} images: one accuracy point is "
        f"{test_images / 100:g} test images"
    )
    header = (
        f"{'seed':<5}{'run':<24}{'val acc':>8}{'test acc':>9}{'Δval pt':>8}{'Δtest pt':>9}{'MB/worker':>10}"
        f"{'ratio':>8}{'steady':>8}{'compute s':>10}{'comm s':>8}{'wall s':>8}"
    )
    print(header)
    print("-" * len(header))
    for entry in seeds:
        dense = entry["runs"]["dense"]
        rows = [("dense", dense), ("dgc", entry["runs"]["dgc"]), ("reference way", entry["runs"]["reference"])]
        rows += list(entry["ablations"].items())
        for name, r in rows:
            steady = f"{r['steady_compression_ratio']:.0f}×" if r.get("steady_compression_ratio") else "—"
            print(
                f"{entry['seed']:<5}{name:<24}{100 * r['val_accuracy']:>8.2f}{100 * r['test_accuracy']:>9.2f}"
                f"{100 * (r['val_accuracy'] - dense['val_accuracy']):>8.2f}"
                f"{100 * (r['test_accuracy'] - dense['test_accuracy']):>9.2f}{r['bytes_per_worker'] / 1e6:>10.3f}"
                f"{r['compression_ratio']:>7.1f}×{steady:>8}{r['compute_s']:>10.2f}{r['comm_s']:>8.2f}{r['wall_s']:>8.2f}"
            )

    def gaps(mode: str) -> list[float]:
        return [100 * (e["runs"]["dense"]["test_accuracy"] - e["runs"][mode]["test_accuracy"]) for e in seeds]

    ratio = min(e["runs"]["dgc"]["steady_compression_ratio"] for e in seeds)
    ref_ratio = min(e["runs"]["reference"]["steady_compression_ratio"] for e in seeds)
    gap, ref_gap = max(gaps("dgc")), max(gaps("reference"))
    print(
        f"\n  headline: steady ratio {ratio:.0f}× (worst seed; ≥ 270×: {'met' if ratio >= 270 else 'MISSED'}), "
        f"dense − DGC test accuracy per seed {', '.join(f'{g:+.2f}' for g in gaps('dgc'))} points, worst {gap:+.2f} "
        f"(≤ 0.5: {'met' if gap <= 0.5 else 'MISSED'}; {0.5 * test_images / 100:g} test images)"
    )
    print(
        f"  reference way: steady ratio {ref_ratio:.0f}× ({'≥' if ref_ratio >= 270 else 'below'} 270×), dense − "
        f"reference test accuracy per seed {', '.join(f'{g:+.2f}' for g in gaps('reference'))}, worst {ref_gap:+.2f}"
    )
    for entry in seeds:
        dgc = entry["runs"]["dgc"]
        for name, r in entry["ablations"].items():
            d_val, d_test = r["val_accuracy"] - dgc["val_accuracy"], r["test_accuracy"] - dgc["test_accuracy"]
            verdict = (
                "costs accuracy"
                if d_val < 0 and d_test < 0
                else "did NOT cost accuracy"
                if d_val >= 0 and d_test >= 0
                else "mixed: validation and test disagree"
            )
            print(
                f"  seed {entry['seed']} ablation {name}: val {100 * d_val:+.2f}, test {100 * d_test:+.2f} points vs "
                f"full DGC ({verdict})"
            )
    iso = report["isolated_step"]
    in_run = statistics.mean(e["runs"]["dgc"]["steady_select_share"] for e in seeds)
    print(
        f"  top-k selection share of step compute: {100 * iso['share']:.1f}% stepping alone "
        f"({iso['select_ms']:.2f} of {iso['step_ms']:.2f} ms; ≤ 10%: {'met' if iso['share'] <= 0.10 else 'MISSED'}); "
        f"{100 * in_run:.1f}% inside the runs (4 workers sharing the cores)"
    )
    return (
        f"RESULT dataset={report['dataset']} seeds={len(seeds)} ratio={ratio:.1f} gap_points_worst={gap:.2f} "
        f"reference_mode_ratio={ref_ratio:.1f} reference_mode_gap_points_worst={ref_gap:.2f} "
        f"topk_share={iso['share']:.3f} topk_share_in_run={in_run:.3f} batch={config['batch_size']} "
        f"sends_per_entry={seeds[0]['expected_sends_per_entry']:.2f} test_images={test_images} "
        f"images_per_point={test_images / 100:g} wall_s={wall_s:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the DGC + dense + reference-way job")
    parser.add_argument("--ablation-seeds", type=int, default=1, help="the first seeds that also run the ablations")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=None, help="default: the kind's default")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "dgc")
    args = parser.parse_args()
    args.out = args.out / args.dataset
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report = bench(args)
    line = print_report(report, time.time() - started)
    (args.out / "result.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\ntotal {time.time() - started:.0f} s")
    print(line)


if __name__ == "__main__":
    main()
