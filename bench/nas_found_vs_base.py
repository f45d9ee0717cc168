"""Does the cell pathlevel_nas finds beat its base network? (Cai et al. 2018; the spec's third figure.)

Runs the ``pathlevel_nas`` job kind with its defaults (or the overrides given) on a built-in dataset and
sets the base network beside the best found network: test accuracy after the same final training,
parameters and MACs, and the found architecture trained from scratch for the same epochs as the base (the
like-for-like pair). The claim to check: the found cell is more accurate at the same or fewer parameters.

    .venv/bin/python bench/nas_found_vs_base.py                          # mnist5k, defaults (~11 min, 2 cores)
    .venv/bin/python bench/nas_found_vs_base.py --dataset digits

Writes ``bench/out/nas_found_vs_base.json``.
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
    parser.add_argument("--config", default="{}", help="JSON overrides of the kind's defaults")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "nas_found_vs_base.json")
    args = parser.parse_args()
    kind = PathlevelNas()
    config = kind.validate(json.loads(args.config))
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
    # The fair pair: both trained from fresh weights for the same number of epochs (final_epochs = base_epochs by
    # default); the inherited network has had base_epochs + final_epochs of training in all.
    same_epochs = config["final_epochs"] == config["base_epochs"]
    delta = 100 * (result["test_acc_from_scratch"] - base["test_acc"])
    ratio = result["params"] / base["params"]
    verdict = "met" if delta > 0 and ratio <= 1.0 else "not met"
    print(
        f"found cell from scratch vs base, {config['final_epochs']} vs {config['base_epochs']} epochs: "
        f"{delta:+.2f} points at {ratio:.2f}x the base's parameters: claim {verdict}"
        + ("" if same_epochs else " (epochs differ: not a like-for-like comparison)")
    )
    args.out.write_text(
        json.dumps(
            {
                "dataset": args.dataset,
                "config": config,
                "wall_s": wall,
                "result": result,
                "delta_points": delta,
                "params_ratio": ratio,
            },
            indent=2,
            default=float,
        )
    )


if __name__ == "__main__":
    main()
