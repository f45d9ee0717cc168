"""Winograd-ReLU pruning vs dense direct, dense Winograd and spatial pruning (Liu et al. 2018, Table 1's claim).

For each seed, one ``winograd_prune`` job with the kind's default config (or the overrides given): the kit's
VGG trained and pruned spatially, its Winograd-ReLU twin trained from scratch and pruned in the Winograd
domain, each prune round retrained. Multiplications are exact counts on the validation images (a product
counted when both factors are non-zero); accuracy is on the test split, which nothing is selected on. The
data split is the same for every seed (split seed 0); the seed changes the initial weights and batch order.

The paper's goal on CIFAR-10 (not available offline) is 10.4× fewer multiplications with < 0.1% loss; this
project's goal is ≥ 5× at ≤ 0.5 points on mnist5k. The sparsity is counted, not skipped: there is no
wall-clock speed-up to report.

    nice .venv/bin/python bench/winograd.py                            # mnist5k, 3 seeds, ~17 minutes on 2 cores
    nice .venv/bin/python bench/winograd.py --dataset digits --seeds 1 # a quick look (8×8 is too small to mean much)

The last line is ``RESULT multiplication_reduction=.. accuracy_loss_points=.. spatial_reduction=..`` (means over
the seeds; ``spatial_reduction`` is the spatially pruned network's reduction at the Winograd-ReLU network's
validation accuracy). Writes ``bench/out/winograd/result.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_spaces.base import JobInputs, MemoryReporter  # noqa: E402

GOAL_REDUCTION, GOAL_LOSS = 5.0, 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds (0 … N-1)")
    parser.add_argument("--tile-size", type=int, choices=[2, 4], default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--retrain-epochs", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--density", type=float, default=None, help="target weight density of every pruned layer")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "winograd")
    args = parser.parse_args()

    from search_spaces.kit import datasets
    from search_spaces.winograd.search import WinogradConfig, run_winograd
    from search_spaces.winograd_prune import WinogradPrune

    overrides = {
        "tile_size": args.tile_size,
        "epochs": args.epochs,
        "retrain_epochs": args.retrain_epochs,
        "rounds": args.rounds,
        "weight_density": [args.density] if args.density is not None else None,
    }
    kind = WinogradPrune()
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    splits = datasets.load(args.dataset, seed=0)
    n_val, n_test = len(splits.y_val), len(splits.y_test)
    print(
        f"{args.dataset}: {len(splits.y_train)} training, {n_val} validation, {n_test} test images; one accuracy "
        f"point = {n_val / 100:g} validation or {n_test / 100:g} test images",
        flush=True,
    )
    runs = []
    for seed in range(args.seeds):
        config = kind.validate({**{k: v for k, v in overrides.items() if v is not None}, "seed": seed})
        t0 = time.time()
        result = run_winograd(
            WinogradConfig.from_config(config),
            JobInputs(seed=0, dataset=args.dataset, workdir=args.out / f"seed{seed}"),
            MemoryReporter(),
            splits=splits,
        )
        result["bench_seconds"] = time.time() - t0
        runs.append(result)
        print_seed(seed, result)
    report(runs, args, time.time() - started, n_test)


def print_seed(seed: int, result: dict) -> None:
    table = result["tables"][0]
    print(f"\nseed {seed} ({result['bench_seconds']:.0f} s), F({result['tile_size']}×{result['tile_size']}, 3×3)")
    head = f"{'test acc %':>11}{'loss pts':>9}{'mults/image':>13}{'reduction':>10}{'w dens':>8}{'a dens':>8}"
    print(f"  {'network':<32}{head}")
    for name, test, _val, loss, mults, reduction, w_dens, a_dens in table["rows"]:
        a = f"{a_dens:.3f}" if a_dens is not None else "-"
        print(f"  {name:<32}{test:>11.2f}{loss:>9.2f}{mults:>13,}{reduction:>9.2f}×{w_dens:>8.3f}{a:>8}")
    matched = "" if result["spatial_matches_accuracy"] else " (never reaches it: its most accurate round)"
    if result.get("spatial_reduction_is_lower_bound"):
        matched = " (its last round, still as accurate: a lower bound)"
    print(
        f"  spatial at the Winograd-ReLU validation accuracy: round {result['spatial_round_at_same_accuracy']}, "
        f"{result['spatial_reduction']:.2f}×{matched}; Winograd-ReLU independence estimate "
        f"{result['multiplications']['winograd_relu_pruned_independent_estimate']:,.0f} vs exact "
        f"{result['multiplications']['winograd_relu_pruned']:,.0f}",
        flush=True,
    )


def report(runs: list[dict], args: argparse.Namespace, seconds: float, n_test: int) -> None:
    def stats(key: str) -> tuple[float, float, float]:
        values = [r[key] for r in runs]
        return statistics.mean(values), min(values), max(values)

    reduction, loss, spatial = (
        stats("multiplication_reduction"),
        stats("accuracy_loss_points"),
        stats("spatial_reduction"),
    )
    print(f"\nover {len(runs)} seeds (mean, min … max):")
    print(f"  Winograd-ReLU multiplication reduction {reduction[0]:.2f}× ({reduction[1]:.2f} … {reduction[2]:.2f})")
    print(
        f"  accuracy loss vs dense direct {loss[0]:.2f} points ({loss[1]:.2f} … {loss[2]:.2f}); "
        f"one test point = {n_test / 100:g} images"
    )
    print(f"  spatially pruned at the same accuracy {spatial[0]:.2f}× ({spatial[1]:.2f} … {spatial[2]:.2f})")
    met = reduction[0] >= GOAL_REDUCTION and loss[0] <= GOAL_LOSS
    print(
        f"  goal ≥ {GOAL_REDUCTION:g}× at ≤ {GOAL_LOSS:g} points: {'met' if met else 'missed'}; {seconds:.0f} s in all"
    )
    (args.out / "result.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "seconds": seconds}, indent=2)
    )
    print(
        f"RESULT multiplication_reduction={reduction[0]:.2f} accuracy_loss_points={loss[0]:.2f} "
        f"spatial_reduction={spatial[0]:.2f}"
    )


if __name__ == "__main__":
    main()
