"""The index-saving effect of Mao et al. (arXiv:1705.08922) on built-in data, measured with the sweep.

One dense VGG-style CNN is trained once; then, for each granularity (fine, vector, kernel, filter), the
granularity_sweep driver runs the same number of Optuna trials (sparsity, saliency norm, retrain epochs)
from that same dense model. Per granularity the table shows the best compression ratio among trials within
the accuracy threshold of the dense model's validation accuracy, the sparsity it took, the test accuracy,
and the ratio to fine-grained. The paper's claim to check: coarse grain (kernel, filter) reaches a
sparsity near fine grain's at the same accuracy and, needing fewer index entries, a compression ratio at
least as good.

    .venv/bin/python bench/granularity.py                 # mnist5k, ~10 minutes on 2 cores
    .venv/bin/python bench/granularity.py --dataset digits --trials 6 --pretrain-epochs 10   # quick look

Writes ``bench/out/granularity/result.json`` and each sweep's figures (plotly JSON) next to it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from search_spaces.base import JobInputs, MemoryReporter
from search_spaces.kit.pruning import GRANULARITIES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--max-train", type=int, default=None, help="cap the training split (fashion_mnist)")
    parser.add_argument("--trials", type=int, default=20, help="Optuna trials per granularity")
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--retrain-epochs", type=int, default=2)
    parser.add_argument("--prune-steps", type=int, default=3)
    parser.add_argument("--sparsity-min", type=float, default=0.5)
    parser.add_argument("--sparsity-max", type=float, default=0.95)
    parser.add_argument("--threshold", type=float, default=0.005, help="accuracy drop allowed (0.005 = 0.5 points)")
    parser.add_argument("--value-bits", type=int, default=8)
    parser.add_argument("--index-bits", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "granularity")
    args = parser.parse_args()

    import torch

    from search_spaces.granularity.sweep import SweepConfig, prepare_dense, run_sweep
    from search_spaces.kit import datasets

    torch.set_num_threads(1)  # as the sweep runs in a worker with AUTOML_TORCH_THREADS=1 (inputs.threads)
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    splits = datasets.load(args.dataset, seed=args.seed, max_train=args.max_train)
    common = {
        "sparsity_min": args.sparsity_min,
        "sparsity_max": args.sparsity_max,
        "n_trials": args.trials,
        "retrain_epochs": args.retrain_epochs,
        "prune_steps": args.prune_steps,
        "pretrain_epochs": args.pretrain_epochs,
        "accuracy_threshold": args.threshold,
        "value_bits": args.value_bits,
        "index_bits": args.index_bits,
        "seed": args.seed,
    }
    base = JobInputs(seed=args.seed, dataset=args.dataset, workdir=args.out)
    pre = MemoryReporter()
    dense = prepare_dense(SweepConfig(**common), base, splits, pre)
    print(
        f"{args.dataset}: {len(splits.y_train)} train / {len(splits.y_val)} val / {len(splits.y_test)} test, "
        f"dense VGG validation accuracy {dense.val_accuracy:.4f} ({time.time() - started:.0f} s, "
        f"torch threads {torch.get_num_threads()})",
        flush=True,
    )

    rows = {}
    for g in GRANULARITIES:
        t0 = time.time()
        settings = SweepConfig(granularities=(g,), **common)
        reporter = MemoryReporter(checkpoint=pre.checkpoint)  # the same dense model for every granularity
        result = run_sweep(
            settings, JobInputs(seed=args.seed, dataset=args.dataset, workdir=args.out / g), reporter, splits=splits
        )
        best = result["best_by_granularity"][g]
        trials = [t["metrics"] for t in reporter.trials.values() if t["state"] == "complete"]
        rows[g] = {"best": best, "trials": trials, "seconds": time.time() - t0}
        print(f"  {g:<7} {len(trials)} trials in {time.time() - t0:.0f} s", flush=True)

    fine = rows["fine"]["best"]
    print()
    print_storage_only(dense, args)
    print()
    print(
        f"accuracy threshold: dense {dense.val_accuracy:.4f} - {args.threshold} = "
        f"{dense.val_accuracy - args.threshold:.4f} (validation); {args.value_bits}-bit values, "
        f"{args.index_bits}-bit relative index"
    )
    header = (
        f"{'granularity':<12}{'in thr.':>8}{'val acc':>9}{'test acc':>9}{'sparsity':>10}{'pruned-layer':>13}"
        f"{'index entries':>14}{'ratio':>8}{'/ fine':>8}"
    )
    print(header)
    print("-" * len(header))
    for g, row in rows.items():
        b = row["best"]
        if b is None:
            print(f"{g:<12}  no finished trial")
            continue
        vs_fine = (
            f"{b['compression_ratio'] / fine['compression_ratio']:.2f}"
            if fine and fine["within_threshold"] and b["within_threshold"]
            else "n/a"
        )
        print(
            f"{g:<12}{'yes' if b['within_threshold'] else 'NO':>8}{b['accuracy']:>9.4f}{b['test_accuracy']:>9.4f}"
            f"{b['sparsity']:>10.3f}{b['pruned_layer_sparsity']:>13.3f}{b['index_entries']:>14}"
            f"{b['compression_ratio']:>8.2f}{vs_fine:>8}"
        )
    print(
        f"\n'sparsity' counts every conv/linear weight (the dense classifier included); 'pruned-layer' only the "
        f"pruned layers. A granularity marked NO had no trial within the threshold: its row is its most "
        f"accurate trial. Total {time.time() - started:.0f} s."
    )
    (args.out / "result.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "dense_val_accuracy": dense.val_accuracy,
                "rows": rows,
                "seconds": time.time() - started,
            },
            indent=2,
            default=str,
        )
    )


def print_storage_only(dense: object, args: argparse.Namespace) -> None:
    """The index saving alone: compression ratio of each granularity's masks on the dense weights at equal
    sparsity (no retraining, so no accuracy): one index entry per group instead of per weight."""
    from search_spaces.granularity.sweep import SweepConfig, measure_storage
    from search_spaces.kit.pruning import prunable_weights, prune_model

    settings = SweepConfig(value_bits=args.value_bits, index_bits=args.index_bits)
    levels = (0.5, 0.7, 0.9)
    print("storage only, masks on the dense weights (L1 saliency), compression ratio at equal sparsity:")
    print(f"{'granularity':<12}" + "".join(f"{f'sparsity {s:.1f}':>15}" for s in levels))
    for g in GRANULARITIES:
        cells = []
        for level in levels:
            model = dense.build("cpu")  # type: ignore[attr-defined]
            masks = prune_model(model, g, level, "l1")
            assert set(masks) == set(prunable_weights(model))
            cells.append(f"{measure_storage(model, masks, g, settings).compression_ratio:>15.2f}")
        print(f"{g:<12}" + "".join(cells))


if __name__ == "__main__":
    main()
