"""Does the path-level NAS meta-controller learn? Controller vs random sampling of the same tree space.

Per seed, one base network is trained; then the tree-LSTM controller (REINFORCE) and uniform random sampling
each sample the same number of cells from it, every cell fine-tuned from inherited weights for the same
epochs. Reported per seed and on average: best and mean validation accuracy of the sampled networks, and the
mean reward of the first and last quarter of the sampled networks (the controller's should rise).

    .venv/bin/python bench/nas_vs_random.py                          # digits, 3 seeds × 24 networks
    .venv/bin/python bench/nas_vs_random.py --dataset mnist5k --max-train 1000 --networks 12

Writes ``bench/out/nas_vs_random.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from search_spaces.base import JobInputs, MemoryReporter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--networks", type=int, default=24)
    parser.add_argument("--per-update", type=int, default=4)
    parser.add_argument("--base-epochs", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "nas_vs_random.json")
    args = parser.parse_args()

    import torch

    from search_spaces.kit import datasets
    from search_spaces.nas.search import SearchConfig, _train_base, run_search

    torch.set_num_threads(1)
    rows = []
    for seed in range(args.seeds):
        splits = datasets.load(args.dataset, seed=seed, max_train=args.max_train)
        common = {
            "n_networks": args.networks,
            "networks_per_update": args.per_update,
            "base_epochs": args.base_epochs,
            "finetune_epochs": args.finetune_epochs,
            "final_epochs": 1,
            "seed": seed,
        }
        data = {
            "x_train": torch.from_numpy(splits.x_train),
            "y_train": torch.from_numpy(splits.y_train),
            "x_val": torch.from_numpy(splits.x_val),
            "y_val": torch.from_numpy(splits.y_val),
        }
        base = _train_base(SearchConfig(**common), splits, data, MemoryReporter()).to_bytes()
        row = {"seed": seed}
        for sampler in ("rl", "random"):
            t0 = time.time()
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
            row[sampler] = {
                "best": max(accs),
                "mean": statistics.mean(accs),
                "first_quarter_reward": result["mean_reward_first_quarter"],
                "last_quarter_reward": result["mean_reward_last_quarter"],
                "distinct_cells": len({t["params"]["cell"] for t in reporter.trials.values()}),
                "seconds": time.time() - t0,
            }
            r = row[sampler]
            print(
                f"seed {seed} {sampler:<6} best {r['best']:.4f} mean {r['mean']:.4f} reward first/last quarter "
                f"{r['first_quarter_reward']:.2f}/{r['last_quarter_reward']:.2f} distinct {r['distinct_cells']} "
                f"({r['seconds']:.0f} s)",
                flush=True,
            )
        rows.append(row)

    def avg(sampler: str, key: str) -> float:
        return statistics.mean(r[sampler][key] for r in rows)

    print(f"mean over {len(rows)} seeds, {args.networks} networks each ({args.dataset}):")
    for sampler in ("rl", "random"):
        print(
            f"  {sampler:<6} best {avg(sampler, 'best'):.4f}  mean {avg(sampler, 'mean'):.4f}  reward first quarter "
            f"{avg(sampler, 'first_quarter_reward'):.2f} -> last quarter {avg(sampler, 'last_quarter_reward'):.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
