"""AMC's policy against uniform channel pruning at the same FLOPs budget (He et al. 2018, Table 2's claim).

For each model family (the kit's small VGG and MobileNet-style nets) one dense network is trained once;
then for each FLOPs target (50% and 25%) and each seed, the ``adc_prune`` driver searches a policy
(episodes of the DDPG agent, reward = validation accuracy before fine-tuning) and builds the uniform
policy (one keep ratio for every layer) at the same budget with the same pruning step (L1 channel
selection, least-squares refit, BatchNorm re-estimation). No fine-tuning: the table compares accuracy
right after pruning. Validation accuracy is what the agent optimised (and picked its best episode by);
test accuracy is the unbiased comparison. Also shown: the FLOPs error against the target and the measured
CPU latency drop (batch of 32, one thread).

    .venv/bin/python bench/amc_vs_uniform.py                       # mnist5k, 3 seeds, ~10 minutes on 2 cores
    .venv/bin/python bench/amc_vs_uniform.py --dataset digits --seeds 0 --episodes 40   # quick look

Writes ``bench/out/amc_vs_uniform/result.json``.
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
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--models", nargs="+", default=["vgg", "mobilenet"])
    parser.add_argument("--targets", nargs="+", type=float, default=[0.5, 0.25])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=25)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--calibration-batches", type=int, default=8)
    parser.add_argument("--channel-round", type=int, default=1, help="kept channel counts are multiples of this")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "amc_vs_uniform")
    args = parser.parse_args()

    import torch

    from search_spaces.adc.search import AdcConfig, SearchState, dump_checkpoint, load_data, prepare_dense, run_adc
    from search_spaces.kit import datasets

    torch.set_num_threads(1)
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    splits = datasets.load(args.dataset, seed=0)
    runs = []
    for family in args.models:
        base = AdcConfig(model=family, pretrain_epochs=args.pretrain_epochs, seed=0)
        t0 = time.time()
        dense = prepare_dense(base, JobInputs(dataset=args.dataset), load_data(splits, base), MemoryReporter())
        print(f"{family}: dense validation accuracy {dense.val_accuracy:.4f} ({time.time() - t0:.0f} s)", flush=True)
        checkpoint = dump_checkpoint(SearchState(dense, history=[]), None)  # every run prunes this same network
        for target in args.targets:
            for seed in args.seeds:
                t0 = time.time()
                settings = AdcConfig(
                    model=family,
                    target_ratio=target,
                    episodes=args.episodes,
                    warmup_episodes=args.warmup,
                    calibration_batches=args.calibration_batches,
                    channel_round=args.channel_round,
                    fine_tune_epochs=0,
                    seed=seed,
                )
                workdir = args.out / f"{family}_{target}_{seed}"
                result = run_adc(
                    settings,
                    JobInputs(seed=0, dataset=args.dataset, workdir=workdir),
                    MemoryReporter(checkpoint=checkpoint),
                    splits=splits,
                )
                rows = {row["model"]: row for row in result["table"]}
                runs.append(
                    {
                        "model": family,
                        "target": target,
                        "seed": seed,
                        "seconds": time.time() - t0,
                        "original": rows["original"],
                        "amc": rows["amc"],
                        "uniform": rows["uniform"],
                    }
                )
                print(
                    f"  target {target:.2f} seed {seed}: AMC val {rows['amc']['val_accuracy']:.4f} test "
                    f"{rows['amc']['test_accuracy']:.4f} | uniform val {rows['uniform']['val_accuracy']:.4f} test "
                    f"{rows['uniform']['test_accuracy']:.4f} ({time.time() - t0:.0f} s)",
                    flush=True,
                )
    print_table(runs, args)
    print(f"\nTotal {time.time() - started:.0f} s, torch threads {torch.get_num_threads()}.")
    (args.out / "result.json").write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "seconds": time.time() - started},
            indent=2,
            default=str,
        )
    )


def print_table(runs: list[dict], args: argparse.Namespace) -> None:
    print(
        f"\n{args.dataset}, {args.episodes} episodes ({args.warmup} warm-up), seeds {args.seeds}; accuracy right "
        f"after pruning (no fine-tuning), mean ± spread over seeds"
    )
    header = (
        f"{'model':<10}{'target':>7}{'dense test':>11}{'AMC val':>9}{'unif val':>9}{'AMC test':>17}"
        f"{'unif test':>17}{'wins':>6}{'test ratio':>11}{'FLOPs err':>10}{'lat. drop':>10}"
    )
    print(header)
    print("-" * len(header))
    ratios = []
    for family in args.models:
        for target in args.targets:
            mine = [r for r in runs if r["model"] == family and r["target"] == target]
            if not mine:
                continue
            amc_t = [r["amc"]["test_accuracy"] for r in mine]
            uni_t = [r["uniform"]["test_accuracy"] for r in mine]
            amc_v = statistics.mean(r["amc"]["val_accuracy"] for r in mine)
            uni_v = statistics.mean(r["uniform"]["val_accuracy"] for r in mine)
            wins = sum(a > u for a, u in zip(amc_t, uni_t, strict=True))
            ratio = statistics.mean(amc_t) / statistics.mean(uni_t)
            ratios.append(ratio)
            flops_err = max(abs(r["amc"]["flops_ratio"] / target - 1) for r in mine)
            drop = statistics.mean(1 - r["amc"]["latency_ms"] / r["original"]["latency_ms"] for r in mine)
            print(
                f"{family:<10}{target:>7.2f}{mine[0]['original']['test_accuracy']:>11.4f}{amc_v:>9.4f}{uni_v:>9.4f}"
                f"{_spread(amc_t):>17}{_spread(uni_t):>17}{f'{wins}/{len(mine)}':>6}{ratio:>11.4f}"
                f"{flops_err:>10.2%}{drop:>10.1%}"
            )
    if ratios:
        print(
            f"\nAMC / uniform test accuracy (geometric mean over rows): "
            f"{statistics.geometric_mean(ratios):.4f}. 'FLOPs err' is the worst |FLOPs/target − 1| over seeds "
            f"(kit counter); 'lat. drop' the mean measured CPU latency cut of the AMC model vs the original."
        )


def _spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    half = (max(values) - min(values)) / 2
    return f"{mean:.4f} ± {half:.4f}"


if __name__ == "__main__":
    main()
