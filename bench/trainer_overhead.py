"""How much slower is ``search_spaces.kit.trainer.train`` than a plain hand-written PyTorch loop?

Both loops train copies of the same initial model on the same data with the same batch size, optimizer,
learning-rate schedule and epoch permutations; the repetitions alternate (plain, kit, plain, kit, …) so
drift in the machine's speed hits both alike. ``train`` is given a reporter (cancel checks and metric
points on) because that is how jobs call it. The goal is a ratio kit/plain ≥ 0.95, taken as the
median over repetitions of the ratio within each adjacent (plain, kit) pair, which cancels the slow
drift of a shared machine; the best-run ratio (``timeit``'s advice: the fastest run is the least
disturbed) is printed beside it.

Run: ``.venv/bin/python bench/trainer_overhead.py`` (under half a minute on two cores).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.base import MemoryReporter
from search_spaces.kit import datasets, models, trainer

CASES = (
    # (dataset, architecture, batch size, epochs): a tiny MLP shows per-batch overhead at its worst,
    # a CNN shows the common case.
    ("jets_synthetic", "mlp", 64, 10),
    ("mnist5k", "vgg", 64, 1),
)


def plain_loop(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, batch_size: int, seed: int
) -> None:
    """The loop anyone would write: SGD + momentum, cosine per epoch, shuffled index batches."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 * (1 + math.cos(math.pi * e / epochs)))
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()


def kit_loop(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, batch_size: int, seed: int
) -> None:
    trainer.train(
        model,
        x,
        y,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        reporter=MemoryReporter(),
        metric_prefix="bench/",
    )


def bench_case(dataset: str, arch_name: str, batch_size: int, epochs: int, reps: int) -> dict[str, list[float]]:
    """Samples/s of every repetition of the plain loop and of ``train`` for one case."""
    splits = datasets.load(dataset, seed=0)
    x, y = torch.from_numpy(splits.x_train), torch.from_numpy(splits.y_train)
    torch.manual_seed(0)
    initial = models.build_model(models.default_arch(arch_name, splits.info))
    rates: dict[str, list[float]] = {"plain": [], "kit": []}
    samples = len(x) * epochs
    for loop in (plain_loop, kit_loop):  # warm-up: first-call allocations and lazy inits
        loop(copy.deepcopy(initial), x, y, epochs=1, lr=0.05, batch_size=batch_size, seed=0)
    for rep in range(reps):
        runs = [("plain", plain_loop), ("kit", kit_loop)]
        for label, loop in runs if rep % 2 == 0 else runs[::-1]:
            model = copy.deepcopy(initial)
            started = time.perf_counter()
            loop(model, x, y, epochs=epochs, lr=0.05, batch_size=batch_size, seed=rep)
            rates[label].append(samples / (time.perf_counter() - started))
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9, help="repetitions per loop and case")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch's default); 1 is steadier on a shared machine",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.reps} alternating reps per loop")
    print(f"{'case':<26}{'plain samples/s':>18}{'train() samples/s':>19}{'paired ratio':>14}{'best ratio':>12}")
    worst = math.inf
    for dataset, arch_name, batch_size, epochs in CASES:
        rates = bench_case(dataset, arch_name, batch_size, epochs, args.reps)
        paired = statistics.median(k / p for p, k in zip(rates["plain"], rates["kit"], strict=True))
        best = max(rates["kit"]) / max(rates["plain"])
        worst = min(worst, paired)
        print(
            f"{dataset + '/' + arch_name + f' bs{batch_size}':<26}{statistics.median(rates['plain']):>18,.0f}"
            f"{statistics.median(rates['kit']):>19,.0f}{paired:>14.3f}{best:>12.3f}"
        )
    print(
        f"samples/s are medians; worst paired ratio {worst:.3f} (goal ≥ 0.95): "
        f"{'OK' if worst >= 0.95 else 'BELOW GOAL'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
