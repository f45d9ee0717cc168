"""Weight reuse in path-level NAS (Cai et al. 2018): inherited weights vs training from scratch.

Per seed, one base network is trained (the job's recipe: Nesterov SGD, weight decay 1e-4, cosine per batch);
K cells are sampled from the tree space (uniformly, seeded). Each sampled network is built from the weights it
inherits through the transformations (perturbed copies; a pooling cell's mimic step, timed with it) and fine-tuned
for ``--epochs`` epochs; its validation accuracy after that is the target. The same architecture is then trained
from scratch (fresh weights, same recipe, schedule over ``--scratch-epochs``) until it reaches the target. The
figures: the training time to reach the target, scratch / inherited, over all networks and seeds (goal: ≥ 3×;
the base network's training shown separately and amortised over the K networks), and how far the inherited
networks end above the base network they came from (goal: > 0 points).

    .venv/bin/python bench/nas_weight_reuse.py                       # mnist5k, 2,000 training images, 1 seed
    .venv/bin/python bench/nas_weight_reuse.py --dataset digits --seeds 3

Writes ``bench/out/nas_weight_reuse.json``; the last line printed is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from search_spaces.base import MemoryReporter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1: split, base network and cells")
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--networks", type=int, default=4, help="sampled cells per seed")
    parser.add_argument("--base-epochs", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=2, help="fine-tune epochs from inherited weights")
    parser.add_argument("--scratch-epochs", type=int, default=15, help="most epochs trained from scratch")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "nas_weight_reuse.json")
    args = parser.parse_args()

    import torch

    from search_spaces.kit import datasets, trainer
    from search_spaces.kit import pathlevel as N
    from search_spaces.kit import tree_cells as T
    from search_spaces.nas import controller as C
    from search_spaces.nas import evaluate as E
    from search_spaces.nas.search import SearchConfig, _network_seed, _train_base, tensors

    torch.set_num_threads(1)
    started = time.perf_counter()
    rows, bases = [], []
    for seed in range(args.seeds):
        splits = datasets.load(args.dataset, seed=seed, max_train=args.max_train)
        cfg = SearchConfig(base_epochs=args.base_epochs, seed=seed)
        data = tensors(splits, seed)
        state = _train_base(cfg, splits, data, MemoryReporter())
        base_s, base_val = state.base["seconds"], state.base["val_acc"]
        bases.append({"seed": seed, "seconds": base_s, "val_acc": base_val})
        print(
            f"{args.dataset} seed {seed}: {len(splits.y_train)} train / {len(splits.y_val)} val; "
            f"base cell {T.describe(state.arch['tree'])} val acc {base_val:.4f} after {args.base_epochs} epochs "
            f"in {base_s:.1f} s",
            flush=True,
        )
        rng = torch.Generator().manual_seed(seed)
        k = 0
        while k < args.networks:
            ep = C.run_episode(state.arch["tree"], C.random_chooser(rng), max_depth=3, primitives=T.PRIMITIVES)
            if not ep.ops:
                continue
            t0 = time.perf_counter()
            net, arch = E.build_candidate(
                state.arch,
                state.parent,
                ep.ops,
                data["x_train"][:256],
                noise=cfg.transform_noise,
                seed=_network_seed(cfg, k),
                mimic_x=data["x_mimic"],
                mimic_epochs=cfg.mimic_epochs,
            )
            build_s = time.perf_counter() - t0  # inheriting (and a pooling cell's mimic step) is part of its cost
            curve = _curve(trainer, net, data, args.epochs, cfg, 2.0, cfg.finetune_lr)
            inherited = [(t + build_s, a) for t, a in curve]
            target = inherited[-1][1]
            trainer.set_seed(seed * 1000 + k)
            scratch = _curve(trainer, N.build_network(arch), data, args.scratch_epochs, cfg, target, cfg.lr)
            t_inh = next(t for t, a in inherited if a >= target)
            reached = [t for t, a in scratch if a >= target]
            t_scr = reached[0] if reached else scratch[-1][0]
            rows.append(
                {
                    "seed": seed,
                    "cell": T.describe(ep.tree),
                    "target_val_acc": target,
                    "base_val_acc": base_val,
                    "inherited_minus_base_points": 100 * (target - base_val),
                    "build_s": build_s,
                    "inherited_s": t_inh,
                    "scratch_s": t_scr,
                    "scratch_reached": bool(reached),
                    "ratio": t_scr / t_inh,
                    "inherited_curve": inherited,
                    "scratch_curve": scratch,
                }
            )
            k += 1
            mark = "" if reached else " (never reached: lower bound)"
            print(
                f"  {rows[-1]['cell'][:56]:<56} target {target:.4f} ({100 * (target - base_val):+.2f} vs base): "
                f"inherited {t_inh:6.1f} s (build {build_s:.1f}), scratch {t_scr:6.1f} s "
                f"-> {t_scr / t_inh:5.1f}x{mark}",
                flush=True,
            )

    inh, scr = sum(r["inherited_s"] for r in rows), sum(r["scratch_s"] for r in rows)
    base_total = sum(b["seconds"] for b in bases)
    gain = statistics.mean(r["inherited_minus_base_points"] for r in rows)
    val_images = len(splits.y_val)
    wall = time.perf_counter() - started
    summary = {
        "dataset": args.dataset,
        "args": {k: str(v) for k, v in vars(args).items()},
        "networks": len(rows),
        "bases": bases,
        "ratio_all": scr / inh,
        "ratio_with_base": scr / (inh + base_total),
        "inherited_minus_base_points": gain,
        "all_reached": all(r["scratch_reached"] for r in rows),
        "val_images": val_images,
        "wall_s": wall,
        "rows": rows,
    }
    print(
        f"time to reach the inherited networks' accuracy, scratch / inherited, over {len(rows)} networks and "
        f"{args.seeds} seeds: {scr / inh:.1f}x (goal >= 3x); counting the base networks' {base_total:.1f} s too: "
        f"{scr / (inh + base_total):.1f}x"
        + ("" if summary["all_reached"] else "  [some scratch runs never reached the target: lower bound]")
    )
    print(
        f"inherited networks vs their base, validation accuracy: {gain:+.2f} points on average (goal > 0); "
        f"{val_images} validation images, one accuracy point = {val_images / 100:.1f} images"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(
        f"RESULT dataset={args.dataset} seeds={args.seeds} networks={len(rows)} reuse_speedup={scr / inh:.2f} "
        f"reuse_speedup_with_base={scr / (inh + base_total):.2f} inherited_minus_base_points={gain:.2f} "
        f"scratch_all_reached={str(summary['all_reached']).lower()} val_images={val_images} wall_s={wall:.0f}"
    )


def _curve(trainer, net, data, epochs, cfg, target, lr) -> list[tuple[float, float]]:
    from search_spaces.nas import evaluate as E

    """(cumulative training seconds, validation accuracy) after each epoch; stops once ``target`` is reached."""
    points: list[tuple[float, float]] = []
    elapsed = [0.0]
    last = [time.perf_counter()]

    def on_epoch(epoch, result) -> bool:
        elapsed[0] += time.perf_counter() - last[0]
        acc = trainer.evaluate(net, data["x_val"], data["y_val"])
        points.append((elapsed[0], acc))
        last[0] = time.perf_counter()
        return acc >= target

    trainer.train(
        net,
        data["x_train"],
        data["y_train"],
        epochs=epochs,
        lr=lr,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        on_epoch_end=on_epoch,
        **E.TRAIN_RECIPE,
    )
    return points


if __name__ == "__main__":
    main()
