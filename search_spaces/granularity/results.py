"""The granularity sweep's result: finished trials, the Pareto set, the best per granularity, the comparison at
the accuracy threshold, the kept models and the summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from search_spaces.base import JobInputs, check_stop, json_safe
from search_spaces.granularity.config import SweepConfig
from search_spaces.granularity.curve import CurvePoint, threshold_crossing
from search_spaces.granularity.study import best_key, trial_values
from search_spaces.granularity.trial import SweepRun, prune_configuration
from search_spaces.kit.studies import pareto_mask


def _finished(run: SweepRun) -> list[dict[str, Any]]:
    rows = []
    for t in run.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        metrics = t.user_attrs.get("metrics")
        if metrics:
            rows.append(
                {
                    "number": int(t.user_attrs.get("report_number", t.number)),
                    "params": dict(t.params),
                    "metrics": metrics,
                    "values": trial_values(metrics, "multi"),
                }
            )
    return sorted(rows, key=lambda r: r["number"])


def pareto_set(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials no other trial beats on both accuracy and compression ratio (ties kept)."""
    if not rows:
        return []
    mask = pareto_mask([row["values"] for row in rows], ("maximize", "maximize"))
    return sorted((row for row, on in zip(rows, mask, strict=True) if on), key=lambda row: row["values"][1])


def best_by_granularity(rows: list[dict[str, Any]], granularities: tuple[str, ...]) -> dict[str, dict[str, Any] | None]:
    """Per granularity, the highest compression ratio among trials within the accuracy threshold of the
    dense model (Mao et al.'s comparison at equal accuracy), else the most accurate trial, flagged."""
    best: dict[str, dict[str, Any] | None] = {}
    for g in granularities:
        mine = [row for row in rows if row["metrics"]["granularity"] == g]
        best[g] = max(mine, key=lambda row: best_key(row["metrics"])) if mine else None
    return best


def at_threshold(rows: list[dict[str, Any]], s: SweepConfig, dense_accuracy: float) -> dict[str, Any]:
    """Per granularity (grid sampler): every seed's accuracy-vs-sparsity curve cut at the threshold
    (:func:`.curve.threshold_crossing`), and the seeds' mean compression ratio and sparsity there (Mao et al.'s
    comparison at equal accuracy). With several norms, the norm whose mean ratio is higher; ``ratio_vs_fine``
    divides by fine-grained's mean ratio. ``all_crossed`` is false when a seed's curve stayed above (a lower
    bound) or started below the threshold on the grid (an upper bound)."""
    threshold = dense_accuracy - s.accuracy_threshold
    out: dict[str, Any] = {}
    for g in s.granularities:
        best: dict[str, Any] | None = None
        for norm in s.norms:
            per_seed = []
            for seed in range(s.seeds):
                mine = [
                    r["metrics"]
                    for r in rows
                    if r["metrics"]["granularity"] == g
                    and r["metrics"]["norm"] == norm
                    and r["metrics"].get("retrain_seed", 0) == seed
                ]
                if not mine:
                    continue
                points = [
                    CurvePoint(m["target_sparsity"], m["accuracy"], m["compressed_bits"], m["sparsity"]) for m in mine
                ]
                crossing = threshold_crossing(points, threshold, float(mine[0]["dense_bits"]))
                per_seed.append({"seed": seed, "points": len(points), **crossing.as_dict()})
            if not per_seed:
                continue
            ratios = [p["compression_ratio"] for p in per_seed]
            entry = {
                "norm": norm,
                "seeds": per_seed,
                "compression_ratio": sum(ratios) / len(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "weight_sparsity": sum(p["weight_sparsity"] for p in per_seed) / len(per_seed),
                "target_sparsity": sum(p["target_sparsity"] for p in per_seed) / len(per_seed),
                "all_crossed": all(p["status"] == "crossed" for p in per_seed),
            }
            if best is None or entry["compression_ratio"] > best["compression_ratio"]:
                best = entry
        out[g] = best
    fine = out.get("fine")
    for entry in out.values():
        if entry and fine:
            entry["ratio_vs_fine"] = entry["compression_ratio"] / fine["compression_ratio"]
    return {"threshold": threshold, "granularities": out}


def summarise(run: SweepRun, inputs: JobInputs) -> dict[str, Any]:
    """The result: Pareto set, best per granularity with test accuracy, saved models and plots."""
    from search_spaces.granularity.figures import shown, write_figures  # they import this module's pareto_set
    from search_spaces.kit import models, trainer

    s, splits, reporter = run.settings, run.splits, run.reporter
    rows = _finished(run)
    states = [t.state for t in run.study.get_trials(deepcopy=False)]
    workdir = Path(inputs.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dense_model = run.dense.build(run.device)
    dense_test = float(trainer.evaluate(dense_model, splits.x_test, splits.y_test, device=run.device))
    best = best_by_granularity(rows, s.granularities)
    best_out: dict[str, Any] = {}
    output_model, output_key = None, None
    for g, row in best.items():
        if row is None:
            best_out[g] = None
            continue
        check_stop(reporter)
        number = row["number"]
        state = run.kept_models.get(number)
        rebuilt = state is None
        if state is None:  # a trial of an earlier attempt or of another worker: prune it again (deterministic)
            model = prune_configuration(row["params"], number=number, run=run, report=False).model
        else:
            model = run.dense.build(run.device)
            model.load_state_dict(state)
        test_acc = float(trainer.evaluate(model, splits.x_test, splits.y_test, device=run.device))
        name = f"pruned_{g}_trial{number}.pt"
        models.save_model(model, run.dense.arch, workdir / name)
        reporter.artifact(name, workdir / name, "model")
        m = row["metrics"]
        best_out[g] = {
            "trial": number,
            "params": row["params"],
            "within_threshold": m["within_threshold"],
            "accuracy": m["accuracy"],
            "test_accuracy": test_acc,
            "sparsity": m["sparsity"],
            "pruned_layer_sparsity": m["pruned_layer_sparsity"],
            "compression_ratio": m["compression_ratio"],
            "index_entries": m["index_entries"],
            "model": name,
            "rebuilt": rebuilt,
        }
        key = best_key(m)
        if output_key is None or key > output_key:
            output_model, output_key = name, key
    fine = best_out.get("fine")
    for entry in best_out.values():
        if entry and fine and fine["within_threshold"] and entry["within_threshold"]:
            entry["ratio_vs_fine"] = entry["compression_ratio"] / fine["compression_ratio"]
    crossings = at_threshold(rows, s, run.dense.val_accuracy) if s.grid and s.mode == "multi" and rows else None
    plots = write_figures(run, rows, workdir, crossings)
    result = {
        "dataset": splits.info.name,
        "mode": s.mode,
        "dense_model": run.dense.source,
        "dense_accuracy": run.dense.val_accuracy,
        "dense_test_accuracy": dense_test,
        "accuracy_threshold": s.accuracy_threshold,
        "value_bits": s.value_bits,
        "index_bits": s.index_bits,
        "trials": {
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL),
        },
        "pareto": [
            {
                "trial": r["number"],
                "params": r["params"],
                "values": r["values"],
                "granularity": r["metrics"]["granularity"],
                "sparsity": r["metrics"]["sparsity"],
            }
            for r in pareto_set(rows)
        ],
        "best_by_granularity": best_out,
        **models.output_entry(output_model, run.dense.arch),
        "plots": plots,
        "val_images": len(splits.y_val),
        "test_images": len(splits.y_test),
        "at_threshold": crossings,
        "sweep_seconds": time.time() - run.started,
        **shown(run, best_out, pareto_set(rows), states.count(TrialState.COMPLETE), crossings),
    }
    path = workdir / "summary.json"
    path.write_text(json.dumps(json_safe(result), indent=2))
    reporter.artifact("summary.json", path, "data")
    return result
