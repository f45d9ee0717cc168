"""The found cell against its base network at equal size, as the paper compares them.

Cai et al. 2018 (§4.2, Table 1) set a found cell beside its base at the same or fewer parameters: the network
with the found cell is made narrower until its parameters are at or below the base's, then both are trained from
scratch with the same recipe for the same epochs. A grown cell is wider than the base cell (a replicate-and-add of
a 3×3 separable convolution doubles it), so comparing it at its own size would credit the extra parameters, and
comparing the inherited network would credit the extra epochs. Several seeds, because one seed of a small network
moves by a point or more.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from search_spaces.kit import pathlevel as N
from search_spaces.kit import tree_cells as T

SEARCH_STEPS = 30  # bisection steps of the width factor (1e-9 in factor: far below one channel)


def params_of(arch: dict[str, Any]) -> int:
    """Parameters of the network ``arch`` builds (every element, as :func:`.kit.counting.count` counts them)."""
    return sum(p.numel() for p in N.build_network(arch).parameters())


def scaled(arch: dict[str, Any], factor: float) -> dict[str, Any]:
    """``arch`` with its widths multiplied by ``factor`` (rounded, at least 1): the stem and every stage width of a
    resnet base, the stem and the growth rate of a densenet base (its transitions halve what they are given)."""

    def width(w: int) -> int:
        return max(1, round(w * factor))

    out = {k: v for k, v in arch.items() if k not in ("edge_widths", "stem_transition", "trans_widths")}
    out["stem"] = width(arch["stem"])
    if arch["base"] == "resnet":
        out["widths"] = [width(w) for w in arch["widths"]]
    else:
        out["growth"] = width(arch["growth"])
    return out


def rescale_to_params(arch: dict[str, Any], max_params: int) -> tuple[dict[str, Any], float, int]:
    """The widest :func:`scaled` copy of ``arch`` with at most ``max_params`` parameters: ``(arch, factor, params)``.

    ``arch`` itself (factor 1) when it already fits; otherwise the factor is bisected (parameters grow with it),
    skipping widths the tree cannot take (a split needs a channel per branch). Raises ``ValueError`` when even the
    narrowest network is too large."""
    full = params_of(arch)
    if full <= max_params:
        return dict(arch), 1.0, full

    def fits(factor: float) -> int | None:
        try:
            candidate = N.complete(scaled(arch, factor))
        except T.TreeError:
            return None
        count = params_of(candidate)
        return count if count <= max_params else None

    lo, hi = 0.0, 1.0
    best: tuple[float, int] | None = None
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi) / 2
        count = fits(mid)
        if count is None:
            hi = mid
        else:
            lo, best = mid, (mid, count)
    if best is None:
        raise ValueError(f"no narrower copy of the network has at most {max_params:,} parameters")
    return N.complete(scaled(arch, best[0])), best[0], best[1]


def equal_size(
    base_arch: dict[str, Any],
    found_arch: dict[str, Any],
    data: dict[str, torch.Tensor],
    test: tuple[Any, Any],
    *,
    seeds: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    recipe: dict[str, Any],
    on_run: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train the base network and the found network scaled to at most the base's parameters from scratch for
    ``epochs`` each, with ``seeds`` seeds (run ``i`` of both uses seed ``seed·1000 + i`` for its weights and batch
    order); score both on the validation and ``test`` splits. ``on_run(i)`` is called after each of the
    ``2·seeds`` trainings (for progress and cancel checks)."""
    from search_spaces.kit import trainer

    base_params = params_of(base_arch)
    small, factor, small_params = rescale_to_params(found_arch, base_params)
    runs: list[dict[str, Any]] = []
    done = 0
    for i in range(seeds):
        run_seed = seed * 1000 + i
        row: dict[str, Any] = {"seed": run_seed}
        for name, arch in (("base", base_arch), ("found", small)):
            trainer.set_seed(run_seed)
            net = N.build_network(arch)
            result = trainer.train(
                net,
                data["x_train"],
                data["y_train"],
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                seed=run_seed,
                **recipe,
            )
            row[f"{name}_val_acc"] = trainer.evaluate(net, data["x_val"], data["y_val"])
            row[f"{name}_test_acc"] = trainer.evaluate(net, *test)
            row[f"{name}_train_s"] = result.seconds
            done += 1
            if on_run is not None:
                on_run(done)
        runs.append(row)
    base_mean = statistics.mean(r["base_test_acc"] for r in runs)
    found_mean = statistics.mean(r["found_test_acc"] for r in runs)
    widths = {"stem": small["stem"], "widths": small["widths"]} if small["base"] == "resnet" else {}
    if small["base"] == "densenet":
        widths = {"stem": small["stem"], "growth": small["growth"]}
    return {
        "epochs": epochs,
        "width_factor": factor,
        "found_widths": widths,
        "base_params": base_params,
        "found_params": small_params,
        "params_ratio": small_params / base_params,
        "runs": runs,
        "base_test_acc_mean": base_mean,
        "found_test_acc_mean": found_mean,
        "found_minus_base_points": 100 * (found_mean - base_mean),
        "seeds_found_wins": sum(r["found_test_acc"] > r["base_test_acc"] for r in runs),
    }
