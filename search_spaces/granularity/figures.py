"""The granularity sweep's headline figures and plotly figures (accuracy vs compression, the per-granularity
curves at the threshold, the study's history).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search_spaces.granularity.results import pareto_set
from search_spaces.granularity.trial import SweepRun

_COLOURS = {"fine": "#1f77b4", "vector": "#2ca02c", "kernel": "#ff7f0e", "filter": "#d62728"}


def shown(
    run: SweepRun,
    best: dict[str, Any],
    front: list[dict[str, Any]],
    complete: int,
    crossings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The result's headlines (dense accuracy; each granularity's compression ratio at the accuracy threshold,
    or without a grid its best trial's) and its tables (the ratios at the threshold with the sparsities and the
    ratio to fine-grained, as in Mao et al. Table 2; the best trial per granularity; the Pareto set)."""
    from search_spaces.kit.results import headline, is_number, summary, table

    tables = []
    if crossings is not None:
        found = {g: c for g, c in crossings["granularities"].items() if c}
        seeds = run.settings.seeds
        ratios = [
            headline(
                f"{g}: compression ratio at the accuracy threshold (mean of {seeds} seed{'s' if seeds != 1 else ''})",
                c["compression_ratio"],
                "×",
            )
            for g, c in found.items()
        ]
        ratios += [
            headline(f"{g} / fine compression ratio at the threshold", c["ratio_vs_fine"], "×")
            for g, c in found.items()
            if g != "fine" and is_number(c.get("ratio_vs_fine"))
        ]
        tables.append(
            table(
                "At the accuracy threshold",
                [
                    "granularity",
                    "norm",
                    "seeds",
                    "target sparsity",
                    "weight sparsity",
                    "compression ratio (mean)",
                    "ratio min",
                    "ratio max",
                    "ratio vs fine",
                    "every seed crossed",
                ],
                [
                    [
                        g,
                        c["norm"],
                        len(c["seeds"]),
                        c["target_sparsity"],
                        c["weight_sparsity"],
                        c["compression_ratio"],
                        c["ratio_min"],
                        c["ratio_max"],
                        c.get("ratio_vs_fine"),
                        c["all_crossed"],
                    ]
                    for g, c in found.items()
                ],
            )
        )
    else:
        ratios = [
            headline(f"{g}: compression ratio of the best trial", b["compression_ratio"], "×")
            for g, b in best.items()
            if b and is_number(b["compression_ratio"])
        ]
    return {
        "summary": summary(
            headline("Dense validation accuracy", 100 * run.dense.val_accuracy, "%"),
            *ratios,
            headline("Complete trials", complete, "", None),
        ),
        "tables": [
            *tables,
            table(
                "Best per granularity",
                [
                    "granularity",
                    "trial",
                    "within threshold",
                    "val accuracy",
                    "test accuracy",
                    "sparsity",
                    "compression ratio",
                    "ratio vs fine",
                ],
                [
                    [
                        g,
                        b["trial"],
                        b["within_threshold"],
                        b["accuracy"],
                        b["test_accuracy"],
                        b["sparsity"],
                        b["compression_ratio"],
                        b.get("ratio_vs_fine"),
                    ]
                    for g, b in best.items()
                    if b
                ],
            ),
            table(
                "Pareto set",
                ["trial", "granularity", "val accuracy", "compression ratio", "sparsity"],
                [
                    [r["number"], r["metrics"]["granularity"], r["values"][0], r["values"][1], r["metrics"]["sparsity"]]
                    for r in front
                ],
            ),
        ],
    }


def write_figures(
    run: SweepRun, rows: list[dict[str, Any]], workdir: Path, crossings: dict[str, Any] | None = None
) -> list[str]:
    """Figure artifacts (plotly JSON): Pareto front, accuracy vs sparsity (with the grid's seed-mean curve and
    where each granularity crosses the threshold), optimisation history; their names."""
    import plotly.graph_objects as go

    from search_spaces.kit.results import write_figure

    dense, threshold = run.dense.val_accuracy, run.settings.accuracy_threshold
    front = {r["number"] for r in pareto_set(rows)}
    pareto = go.Figure()
    accuracy = go.Figure()
    for g in run.settings.granularities:
        mine = [r for r in rows if r["metrics"]["granularity"] == g]
        if not mine:
            continue
        text = [
            f"trial {r['number']}<br>sparsity {r['metrics']['sparsity']:.3f}<br>norm {r['params'].get('norm')}"
            for r in mine
        ]
        pareto.add_trace(
            go.Scatter(
                x=[r["metrics"]["compression_ratio"] for r in mine],
                y=[r["metrics"]["accuracy"] for r in mine],
                mode="markers",
                name=g,
                text=text,
                hovertemplate="%{text}<br>ratio %{x:.2f}×<br>acc %{y:.4f}",
                marker={
                    "color": _COLOURS.get(g),
                    "size": [13 if r["number"] in front else 7 for r in mine],
                    "line": {"width": [2 if r["number"] in front else 0 for r in mine], "color": "black"},
                },
            )
        )
        accuracy.add_trace(
            go.Scatter(
                x=[r["metrics"]["sparsity"] for r in mine],
                y=[r["metrics"]["accuracy"] for r in mine],
                mode="markers",
                name=g,
                text=text,
                legendgroup=g,
                marker={"color": _COLOURS.get(g)},
                hovertemplate="%{text}<br>acc %{y:.4f}",
            )
        )
        crossing = (crossings or {}).get("granularities", {}).get(g)
        if crossing:
            curve = _mean_curve([r for r in mine if r["metrics"]["norm"] == crossing["norm"]])
            accuracy.add_trace(
                go.Scatter(
                    x=[p[0] for p in curve],
                    y=[p[1] for p in curve],
                    mode="lines",
                    name=f"{g}: mean of seeds",
                    legendgroup=g,
                    line={"color": _COLOURS.get(g)},
                )
            )
            accuracy.add_trace(
                go.Scatter(
                    x=[p["weight_sparsity"] for p in crossing["seeds"]],
                    y=[dense - threshold] * len(crossing["seeds"]),
                    mode="markers",
                    name=f"{g}: at the threshold",
                    legendgroup=g,
                    marker={"color": _COLOURS.get(g), "symbol": "x", "size": 11},
                    hovertemplate="sparsity %{x:.3f} at the threshold",
                )
            )
            continue
        envelope = _sparsity_envelope(mine)
        accuracy.add_trace(
            go.Scatter(
                x=[p[0] for p in envelope],
                y=[p[1] for p in envelope],
                mode="lines",
                name=f"{g}: best at ≥ sparsity",
                legendgroup=g,
                showlegend=False,
                line={"color": _COLOURS.get(g), "shape": "vh"},
                hoverinfo="skip",
            )
        )
    front_rows = pareto_set(rows)
    pareto.add_trace(
        go.Scatter(
            x=[r["values"][1] for r in front_rows],
            y=[r["values"][0] for r in front_rows],
            mode="lines",
            name="Pareto front",
            line={"color": "black", "dash": "dot"},
        )
    )
    for fig in (pareto, accuracy):
        fig.add_hline(
            y=dense,
            line_dash="dash",
            line_color="grey",
            annotation_text=f"dense {dense:.4f}",
            annotation_position="top left",
        )
        fig.add_hline(
            y=dense - threshold,
            line_dash="dot",
            line_color="grey",
            annotation_text=f"threshold (dense − {threshold:g})",
            annotation_position="bottom left",
        )
    pareto.update_layout(
        title="Accuracy vs compression ratio (large, outlined: Pareto-optimal)",
        xaxis_title="compression ratio (dense bits / compressed bits)",
        yaxis_title="validation accuracy",
    )
    accuracy.update_layout(
        title="Accuracy vs sparsity per granularity", xaxis_title="weight sparsity", yaxis_title="validation accuracy"
    )
    history = _history_figure(run)
    return [
        write_figure(run.reporter, workdir, name, fig)
        for name, fig in (
            ("pareto_front.json", pareto),
            ("accuracy_vs_sparsity.json", accuracy),
            ("optimization_history.json", history),
        )
    ]


def _mean_curve(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(mean weight sparsity, mean validation accuracy) per grid sparsity, over the seeds."""
    by_target: dict[float, list[dict[str, Any]]] = {}
    for r in rows:
        by_target.setdefault(float(r["metrics"]["target_sparsity"]), []).append(r["metrics"])
    return [
        (sum(m["sparsity"] for m in ms) / len(ms), sum(m["accuracy"] for m in ms) / len(ms))
        for _, ms in sorted(by_target.items())
    ]


def _sparsity_envelope(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """The best accuracy reached at each sparsity or above: the accuracy-vs-sparsity trade-off curve of a
    granularity (Mao et al., Fig. 3), as a step line over the trials."""
    points = sorted(((r["metrics"]["sparsity"], r["metrics"]["accuracy"]) for r in rows), reverse=True)
    envelope, best = [], -math.inf
    for sparsity, acc in points:
        if acc > best:
            best = acc
            envelope.append((sparsity, acc))
    return envelope[::-1]


def _history_figure(run: SweepRun) -> Any:
    import plotly.graph_objects as go

    if any(t.state == TrialState.COMPLETE for t in run.study.get_trials(deepcopy=False)):
        fig = optuna.visualization.plot_optimization_history(
            run.study, target=lambda t: t.values[0], target_name="validation accuracy"
        )
    else:
        fig = go.Figure()
    fig.update_layout(title="Optimisation history (validation accuracy)")
    return fig
