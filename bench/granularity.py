"""The index-saving effect of Mao et al. (arXiv:1705.08922) on built-in data, measured with the sweep.

One granularity_sweep job with the kind's default study: a dense VGG-style CNN is trained once, then every
granularity (fine, vector, kernel, filter) is pruned to every sparsity of a fixed grid (Optuna's
GridSampler) with ``--seeds`` retraining seeds, ``retrain_epochs`` per prune step, the first convolution kept
dense, and judged on a validation split of 30% (1,500 images on mnist5k). Per granularity and seed the
accuracy-vs-sparsity curve is cut where it crosses the threshold (the dense validation accuracy minus 0.5
points, interpolated between grid points) and the compression ratio read there (8-bit values, 4-bit relative
index); the table shows the seeds' ratios, their mean, the sparsity at the threshold and the ratio to
fine-grained. The paper's claim to check: coarse grain (kernel, filter) reaches a sparsity near fine grain's
at the same accuracy and, needing fewer index entries, a compression ratio at least as good
(kernel_over_fine ≥ 1). The last line is ``RESULT key=value ...``.

    .venv/bin/python bench/granularity.py --dataset digits --seeds 3
    .venv/bin/python bench/granularity.py --dataset mnist5k --seeds 3

Writes ``bench/out/granularity/<dataset>/result.json`` and the sweep's figures (plotly JSON) next to it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from search_spaces.base import JobInputs, MemoryReporter
from search_spaces.granularity_sweep import GranularitySweep
from search_spaces.kit.pruning import GRANULARITIES

KIND = GranularitySweep()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--seeds", type=int, default=3, help="retraining seeds per grid point")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="default: the kind's")
    parser.add_argument("--retrain-epochs", type=int, default=None, help="per prune step; default: the kind's")
    parser.add_argument("--prune-steps", type=int, default=None, help="default: the kind's")
    parser.add_argument("--grid", type=float, nargs="+", default=None, help="target sparsities; default: the kind's")
    parser.add_argument("--threshold", type=float, default=None, help="accuracy drop allowed; default: the kind's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "granularity")
    args = parser.parse_args()

    import torch

    from search_spaces.granularity.sweep import SweepConfig, run_sweep

    torch.set_num_threads(1)  # as the sweep runs in a worker with AUTOML_TORCH_THREADS=1 (inputs.threads)
    started = time.time()
    out = args.out / args.dataset
    out.mkdir(parents=True, exist_ok=True)
    overrides = {
        "seeds": args.seeds,
        "pretrain_epochs": args.pretrain_epochs,
        "retrain_epochs": args.retrain_epochs,
        "prune_steps": args.prune_steps,
        "sparsity_grid": args.grid,
        "accuracy_threshold": args.threshold,
        "seed": args.seed,
    }
    config = KIND.validate({k: v for k, v in overrides.items() if v is not None})
    settings = SweepConfig.from_config(config)
    print(
        f"{args.dataset}: grid {list(settings.sparsity_grid)} × {len(settings.granularities)} granularities × "
        f"{settings.seeds} seeds = {settings.trial_count} trials, {settings.prune_steps} prune steps × "
        f"{settings.retrain_epochs} retrain epochs, first conv dense: {settings.dense_first_conv}",
        flush=True,
    )
    reporter = MemoryReporter()
    result = run_sweep(settings, JobInputs(seed=args.seed, dataset=args.dataset, workdir=out), reporter)
    wall = time.time() - started
    line = print_report(result, reporter, settings, wall)
    print_storage_only(result, reporter, settings)
    (out / "result.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "config": config,
                "result": result,
                "trials": [t for t in reporter.trials.values() if t["state"] == "complete"],
                "seconds": wall,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\ntotal {time.time() - started:.0f} s")
    print(line)


def print_report(result: dict[str, Any], reporter: MemoryReporter, settings: Any, wall: float) -> str:
    crossings = result["at_threshold"]["granularities"]
    val_images = result["val_images"]
    print(
        f"\ndense VGG: validation accuracy {result['dense_accuracy']:.4f} ({val_images} images: one point is "
        f"{val_images / 100:g} images), test {result['dense_test_accuracy']:.4f} ({result['test_images']} images); "
        f"threshold {result['at_threshold']['threshold']:.4f} (dense − {settings.accuracy_threshold}); "
        f"{settings.value_bits}-bit values, {settings.index_bits}-bit relative index"
    )
    trials = [t["metrics"] for t in reporter.trials.values() if t["state"] == "complete"]
    print("\nmean validation accuracy over the seeds at each target sparsity:")
    print(f"{'granularity':<12}" + "".join(f"{s:>8.2f}" for s in settings.sparsity_grid))
    for g in settings.granularities:
        cells = []
        for s in settings.sparsity_grid:
            accs = [m["accuracy"] for m in trials if m["granularity"] == g and m["target_sparsity"] == s]
            cells.append(f"{sum(accs) / len(accs):>8.4f}" if accs else f"{'—':>8}")
        print(f"{g:<12}" + "".join(cells))
    print("\nat the accuracy threshold (per seed: curve made monotone, crossing interpolated):")
    header = (
        f"{'granularity':<12}{'ratio per seed':>26}{'mean':>8}{'target sp.':>11}{'weight sp.':>11}"
        f"{'/ fine':>8}{'  crossed'}"
    )
    print(header)
    print("-" * len(header))
    for g in GRANULARITIES:
        c = crossings.get(g)
        if not c:
            continue
        per_seed = ", ".join(f"{s['compression_ratio']:.2f}" for s in c["seeds"])
        statuses = ", ".join(s["status"] for s in c["seeds"] if s["status"] != "crossed") or "all"
        print(
            f"{g:<12}{per_seed:>26}{c['compression_ratio']:>8.2f}{c['target_sparsity']:>11.3f}"
            f"{c['weight_sparsity']:>11.3f}{c.get('ratio_vs_fine', float('nan')):>8.2f}  {statuses}"
        )
    print(
        "'weight sp.' counts every conv/linear weight (the dense first conv and classifier included); 'target sp.' "
        "is the per-layer sparsity of the pruned layers. A seed not 'crossed' is a bound: above_grid (never below "
        "the threshold on the grid: a lower bound on its ratio) or below_grid (already below: an upper bound)."
    )
    keys = [f"{g}_ratio={crossings[g]['compression_ratio']:.3f}" for g in GRANULARITIES if crossings.get(g)]
    keys += [f"{g}_sparsity={crossings[g]['weight_sparsity']:.4f}" for g in GRANULARITIES if crossings.get(g)]
    kernel = crossings.get("kernel") or {}
    return (
        f"RESULT dataset={result['dataset']} seeds={settings.seeds} {' '.join(keys)} "
        f"kernel_over_fine={kernel.get('ratio_vs_fine', float('nan')):.3f} "
        f"filter_over_fine={(crossings.get('filter') or {}).get('ratio_vs_fine', float('nan')):.3f} "
        f"dense_val_acc={result['dense_accuracy']:.4f} val_images={val_images} images_per_point={val_images / 100:g} "
        f"trials={result['trials']['complete']} wall_s={wall:.0f}"
    )


def print_storage_only(result: dict[str, Any], reporter: MemoryReporter, settings: Any) -> None:
    """The index saving alone: compression ratio of each granularity's masks on the dense weights at equal
    sparsity (no retraining, so no accuracy): one index entry per group instead of per weight."""
    from search_spaces.granularity.trial import load_dense, measure_storage
    from search_spaces.kit.pruning import prune_model

    assert reporter.checkpoint is not None
    dense = load_dense(reporter.checkpoint)
    levels = (0.5, 0.7, 0.9)
    print("\nstorage only, masks on the dense weights (L1 saliency, first conv dense), ratio at equal sparsity:")
    print(f"{'granularity':<12}" + "".join(f"{f'sparsity {s:.1f}':>15}" for s in levels))
    for g in GRANULARITIES:
        cells = []
        for level in levels:
            model = dense.build("cpu")
            masks = prune_model(model, g, level, "l1", dense_first_conv=settings.dense_first_conv)
            cells.append(f"{measure_storage(model, masks, g, settings).compression_ratio:>15.2f}")
        print(f"{g:<12}" + "".join(cells))


if __name__ == "__main__":
    main()
