"""Weight reuse in path-level NAS (Cai et al. 2018): inherited weights vs training from scratch.

One base network is trained; K cells are sampled from the tree space (uniformly, seeded). Each sampled
network is fine-tuned for ``--epochs`` epochs from the weights it inherits through the function-preserving
transformations; its validation accuracy after that is the target. The same architecture is then trained
from scratch (fresh weights, same optimiser, schedule over ``--scratch-epochs``) until it reaches the target.
The figure is the training time to reach the target, scratch / inherited (goal: ≥ 3×), per network and over
all K; the base network's training is shown separately, and amortised over the K networks.

    .venv/bin/python bench/nas_weight_reuse.py                       # mnist5k, 2,000 training images
    .venv/bin/python bench/nas_weight_reuse.py --dataset digits --networks 3 --epochs 1

Writes ``bench/out/nas_weight_reuse.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from search_spaces.base import MemoryReporter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--networks", type=int, default=4)
    parser.add_argument("--base-epochs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2, help="fine-tune epochs from inherited weights")
    parser.add_argument("--scratch-epochs", type=int, default=12, help="most epochs trained from scratch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "nas_weight_reuse.json")
    args = parser.parse_args()

    import torch

    from search_spaces.kit import datasets, trainer
    from search_spaces.kit import pathlevel as N
    from search_spaces.kit import tree_cells as T
    from search_spaces.nas import controller as C
    from search_spaces.nas import evaluate as E
    from search_spaces.nas.search import SearchConfig, _train_base

    torch.set_num_threads(1)
    splits = datasets.load(args.dataset, seed=args.seed, max_train=args.max_train)
    cfg = SearchConfig(base_epochs=args.base_epochs, seed=args.seed)
    data = {
        "x_train": torch.from_numpy(splits.x_train),
        "y_train": torch.from_numpy(splits.y_train),
        "x_val": torch.from_numpy(splits.x_val),
        "y_val": torch.from_numpy(splits.y_val),
    }
    state = _train_base(cfg, splits, data, MemoryReporter())
    base_s = state.base["seconds"]
    print(
        f"{args.dataset}: {len(splits.y_train)} train / {len(splits.y_val)} val; "
        f"base cell {T.describe(state.arch['tree'])} "
        f"val acc {state.base['val_acc']:.4f} after {args.base_epochs} epochs in {base_s:.1f} s",
        flush=True,
    )

    rng = torch.Generator().manual_seed(args.seed)
    rows = []
    while len(rows) < args.networks:
        ep = C.run_episode(state.arch["tree"], C.random_chooser(rng), max_depth=3, primitives=T.PRIMITIVES)
        if not ep.ops:
            continue
        net, arch = E.build_candidate(state.arch, state.parent, ep.ops, data["x_train"][:256])
        inherited = _curve(trainer, net, data, args.epochs, cfg, 2.0, cfg.finetune_lr)
        target = inherited[-1][1]
        trainer.set_seed(args.seed + len(rows))
        scratch = _curve(trainer, N.build_network(arch), data, args.scratch_epochs, cfg, target, cfg.lr)
        t_inh = next(t for t, a in inherited if a >= target)
        reached = [t for t, a in scratch if a >= target]
        t_scr = reached[0] if reached else scratch[-1][0]
        rows.append(
            {
                "cell": T.describe(ep.tree),
                "target_val_acc": target,
                "inherited_s": t_inh,
                "scratch_s": t_scr,
                "scratch_reached": bool(reached),
                "ratio": t_scr / t_inh,
                "inherited_curve": inherited,
                "scratch_curve": scratch,
            }
        )
        mark = "" if reached else " (never reached: lower bound)"
        print(
            f"  {rows[-1]['cell'][:60]:<60} target {target:.4f}: inherited {t_inh:6.1f} s, scratch {t_scr:6.1f} s "
            f"-> {t_scr / t_inh:5.1f}x{mark}",
            flush=True,
        )

    inh, scr = sum(r["inherited_s"] for r in rows), sum(r["scratch_s"] for r in rows)
    amortised = inh + base_s
    summary = {
        "dataset": args.dataset,
        "max_train": args.max_train,
        "networks": len(rows),
        "base_s": base_s,
        "ratio_all": scr / inh,
        "ratio_with_base": scr / amortised,
        "all_reached": all(r["scratch_reached"] for r in rows),
        "rows": rows,
    }
    print(
        f"time to reach the inherited networks' accuracy, scratch / inherited, over {len(rows)} networks: "
        f"{scr / inh:.1f}x (goal >= 3x); counting the base network's {base_s:.1f} s too: {scr / amortised:.1f}x"
        + ("" if summary["all_reached"] else "  [some scratch runs never reached the target: lower bound]")
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))


def _curve(trainer, net, data, epochs, cfg, target, lr) -> list[tuple[float, float]]:
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
    )
    return points


if __name__ == "__main__":
    main()
