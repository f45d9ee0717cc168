"""Does the cell pathlevel_nas finds beat its base network? (Cai et al. 2018; the spec's third figure.)

Runs the ``pathlevel_nas`` job kind with its defaults (or the overrides given) on a built-in dataset and
reads its equal-size comparison, the paper's way (Cai et al. 2018, Table 1): the found network's widths are
narrowed until its parameters are at or below the base's, and it and the base network are trained from scratch
for the same ``final_epochs`` with ``--seeds`` seeds (the job's ``compare_seeds``), scored on the test split.
The claim to check: the found cell is more accurate at the same or fewer parameters, on the seeds' mean. Also
shown: the found network at its own size, from inherited weights and from scratch.

    .venv/bin/python bench/nas_found_vs_base.py                          # mnist5k, defaults, 3 seeds
    .venv/bin/python bench/nas_found_vs_base.py --dataset digits --seeds 5

Writes ``bench/out/nas_found_vs_base.json``; the last line printed is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from search_spaces.base import JobInputs, MemoryReporter
from search_spaces.pathlevel_nas import PathlevelNas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the equal-size comparison (compare_seeds)")
    parser.add_argument("--config", default="{}", help="JSON overrides of the kind's defaults")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "nas_found_vs_base.json")
    args = parser.parse_args()
    kind = PathlevelNas()
    config = kind.validate({"compare_seeds": args.seeds, **json.loads(args.config)})
    workdir = args.out.parent / "nas_found_vs_base"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.perf_counter()
    result = kind.run(
        config, JobInputs(dataset=args.dataset, workdir=workdir, seed=config["seed"]), MemoryReporter(echo=True)
    )
    wall = time.perf_counter() - started
    base = result["base"]
    print(f"\n{args.dataset}, {result['networks']} networks sampled, {wall:.0f} s")
    print(f"{'network':<34} {'test acc':>9} {'params':>8} {'MACs':>10}")
    print(f"{'base (' + base['cell'] + ')':<34} {base['test_acc']:>9.4f} {base['params']:>8} {base['macs']:>10}")
    print(
        f"{'found, inherited + final training':<34} {result['test_acc']:>9.4f} {result['params']:>8} "
        f"{result['macs']:>10}"
    )
    print(
        f"{'found, from scratch':<34} {result['test_acc_from_scratch']:>9.4f} {result['params']:>8} "
        f"{result['macs']:>10}"
    )
    print(f"found cell: {result['best_cell']}")
    same = result["equal_size"]
    print(
        f"\nequal size: found widths x {same['width_factor']:.3f} ({same['found_widths']}), "
        f"{same['found_params']} params vs the base's {same['base_params']} ({same['params_ratio']:.3f}x); "
        f"both from scratch for {same['epochs']} epochs"
    )
    print(f"{'seed':>6} {'base test':>10} {'found test':>11}")
    for r in same["runs"]:
        print(f"{r['seed']:>6} {r['base_test_acc']:>10.4f} {r['found_test_acc']:>11.4f}")
    delta, ratio = same["found_minus_base_points"], same["params_ratio"]
    spread = [100 * (r["found_test_acc"] - r["base_test_acc"]) for r in same["runs"]]
    verdict = "met" if delta > 0 and ratio <= 1.0 else "not met"
    print(
        f"found cell vs base at {ratio:.2f}x the base's parameters: {delta:+.2f} points on the mean of "
        f"{len(spread)} seeds (per seed {', '.join(f'{d:+.2f}' for d in spread)}): claim {verdict}"
    )
    args.out.write_text(
        json.dumps(
            {
                "dataset": args.dataset,
                "config": config,
                "wall_s": wall,
                "result": result,
                "found_minus_base_points": delta,
                "params_ratio": ratio,
            },
            indent=2,
            default=float,
        )
    )
    print(
        f"RESULT dataset={args.dataset} seeds={len(spread)} networks={result['networks']} "
        f"found_minus_base_points={delta:.2f} params_ratio={ratio:.3f} seeds_found_wins={same['seeds_found_wins']} "
        f"base_test_mean={same['base_test_acc_mean']:.4f} found_test_mean={same['found_test_acc_mean']:.4f} "
        f"test_images={_test_images(args.dataset, config)} wall_s={wall:.0f}"
    )


def _test_images(dataset: str, config: dict) -> int:
    from search_spaces.kit import datasets

    return len(datasets.load(dataset, seed=config["seed"]).y_test)


if __name__ == "__main__":
    main()
