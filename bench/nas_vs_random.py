"""Does the path-level NAS meta-controller learn? Controller vs random sampling of the same tree space.

Per seed, one base network is trained; then the tree-LSTM controller (REINFORCE) and uniform random sampling
each sample the same number of cells from it (``--per-update`` per controller update, the paper's 10), every cell
fine-tuned from inherited weights for the same epochs and scored on the same validation images. Reported per seed
and on average: best and mean validation accuracy of the sampled networks, and the mean validation accuracy of the
first and last quarter of the sampled networks (the controller's last quarter should beat random's).

The validation split must resolve the differences: ``--val-fraction`` is set so that it holds at least
``--min-val`` images (1,000 by default: one accuracy point is then 10 images); digits has 1,797 images in all,
so at 1,000 validation images it trains on about 520.

    .venv/bin/python bench/nas_vs_random.py                          # mnist5k, 4 seeds × 60 networks × 2
    .venv/bin/python bench/nas_vs_random.py --dataset digits         # digits: ~1,000 val / ~520 train

Writes ``bench/out/nas_vs_random.json``; the last line printed is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from search_spaces.base import JobInputs, MemoryReporter

TEST_FRACTION = 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--networks", type=int, default=60)
    parser.add_argument("--per-update", type=int, default=10)
    parser.add_argument("--min-val", type=int, default=1000, help="validation images at least")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--base-epochs", type=int, default=15)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--eval-workers", type=int, default=1, help="networks of an update fine-tuned at once")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "nas_vs_random.json")
    args = parser.parse_args()

    import torch

    from search_spaces.kit import datasets
    from search_spaces.nas.search import SearchConfig, _train_base, run_search, tensors

    torch.set_num_threads(1)
    started = time.perf_counter()
    total = len(datasets.load(args.dataset, seed=0, val_fraction=0.0, test_fraction=0.0).y_train)
    val_fraction = max(0.15, args.min_val / total + 1e-6)
    rows = []
    for seed in range(args.seeds):
        splits = datasets.load(
            args.dataset, seed=seed, max_train=args.max_train, val_fraction=val_fraction, test_fraction=TEST_FRACTION
        )
        common = {
            "n_networks": args.networks,
            "networks_per_update": args.per_update,
            "base_epochs": args.base_epochs,
            "finetune_epochs": args.finetune_epochs,
            "final_epochs": 1,
            "compare_seeds": 1,
            "eval_workers": args.eval_workers,
            "seed": seed,
        }
        t0 = time.perf_counter()
        state = _train_base(SearchConfig(**common), splits, tensors(splits, seed), MemoryReporter())
        base = state.to_bytes()
        row: dict = {"seed": seed, "base_val_acc": state.base["val_acc"], "base_s": time.perf_counter() - t0}
        print(
            f"seed {seed}: {len(splits.y_train)} train / {len(splits.y_val)} val; base val acc "
            f"{state.base['val_acc']:.4f} ({row['base_s']:.0f} s)",
            flush=True,
        )
        for sampler in ("rl", "random"):
            t0 = time.perf_counter()
            reporter = MemoryReporter(checkpoint=base)  # the same trained base network for both samplers
            workdir = args.out.parent / f"nas_vs_random_{sampler}_{seed}"
            workdir.mkdir(parents=True, exist_ok=True)
            result = run_search(
                SearchConfig(**common, sampler=sampler),
                JobInputs(seed=seed, dataset=args.dataset, workdir=workdir),
                reporter,
                splits=splits,
            )
            accs = [t["values"][0] for _, t in sorted(reporter.trials.items())]
            quarter = max(1, len(accs) // 4)
            row[sampler] = {
                "best": max(accs),
                "mean": statistics.mean(accs),
                "first_quarter": statistics.mean(accs[:quarter]),
                "last_quarter": statistics.mean(accs[-quarter:]),
                "first_quarter_reward": result["mean_reward_first_quarter"],
                "last_quarter_reward": result["mean_reward_last_quarter"],
                "distinct_cells": len({t["params"]["cell"] for t in reporter.trials.values()}),
                "val_accs": accs,
                "seconds": time.perf_counter() - t0,
            }
            r = row[sampler]
            print(
                f"seed {seed} {sampler:<6} best {r['best']:.4f} mean {r['mean']:.4f} val acc first/last quarter "
                f"{r['first_quarter']:.4f}/{r['last_quarter']:.4f} distinct {r['distinct_cells']} "
                f"({r['seconds']:.0f} s)",
                flush=True,
            )
        rows.append(row)

    def avg(sampler: str, key: str) -> float:
        return statistics.mean(r[sampler][key] for r in rows)

    wins = sum(r["rl"]["last_quarter"] > r["random"]["last_quarter"] for r in rows)
    val_images = len(splits.y_val)
    wall = time.perf_counter() - started
    print(f"mean over {len(rows)} seeds, {args.networks} networks each ({args.dataset}, {val_images} val images):")
    for sampler in ("rl", "random"):
        print(
            f"  {sampler:<6} best {avg(sampler, 'best'):.4f}  mean {avg(sampler, 'mean'):.4f}  val acc first quarter "
            f"{avg(sampler, 'first_quarter'):.4f} -> last quarter {avg(sampler, 'last_quarter'):.4f}"
        )
    print(
        f"controller's last quarter above random's in {wins} of {len(rows)} seeds (goal >= 3 of 4); "
        f"one accuracy point = {val_images / 100:.0f} validation images"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "wall_s": wall}, indent=1)
    )
    print(
        f"RESULT dataset={args.dataset} seeds={len(rows)} networks={args.networks} per_update={args.per_update} "
        f"val_images={val_images} train_images={len(splits.y_train)} "
        f"controller_mean_last_quarter={avg('rl', 'last_quarter'):.4f} "
        f"random_mean_last_quarter={avg('random', 'last_quarter'):.4f} "
        f"controller_mean_first_quarter={avg('rl', 'first_quarter'):.4f} "
        f"random_mean_first_quarter={avg('random', 'first_quarter'):.4f} "
        f"seeds_controller_wins={wins} wall_s={wall:.0f}"
    )


if __name__ == "__main__":
    main()
