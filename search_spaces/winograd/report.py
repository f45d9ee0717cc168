"""The result of a ``winograd_prune`` job: the four-way comparison (dense direct, dense Winograd, spatially
pruned, Winograd-ReLU pruned), per layer and in total, its headline figures, the figures and the model files.

Headline figures (the two the paper reports for each network): ``multiplication_reduction`` is dense direct
multiplications over the Winograd-ReLU pruned network's exact count, ``accuracy_loss_points`` is dense direct
test accuracy minus the Winograd-ReLU pruned network's, in points (100 × the difference of fractions). Nothing
is selected on the test split: the prune schedule is fixed, and the spatial round compared "at the same
accuracy" is chosen on validation accuracy. Both networks follow the same density schedule, so when even the
spatial network's last round is at least as accurate as the Winograd-ReLU one, its reduction at exactly that
accuracy could be higher than the one reported (``spatial_reduction_is_lower_bound``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from search_spaces.base import JobInputs, Reporter, json_safe
from search_spaces.kit.results import headline, table, write_figure
from search_spaces.winograd.search import (
    SPATIAL,
    WINOGRAD_RELU,
    Data,
    JobState,
    WinogradConfig,
    save_outputs,
    settings_dict,
)

NOTE = (
    "Multiplications are counted, not skipped: a product is counted when both the weight and the activation it "
    "meets are non-zero, on the validation images. The PyTorch layers here compute every product, so no "
    "wall-clock speed-up is claimed. The paper's 10.4x is a CIFAR-10 figure; CIFAR-10 is not available offline."
)


def _rows(state: JobState, which: str) -> list[dict[str, Any]]:
    return sorted((r for r in state.rows if r["network"] == which), key=lambda r: r["round"])


def spatial_at_same_accuracy(spatial: list[dict[str, Any]], val_accuracy: float) -> tuple[dict[str, Any], bool]:
    """The spatial stage with the largest multiplication reduction whose validation accuracy is at least
    ``val_accuracy``, and True; if none reaches it, the most accurate spatial stage and False."""
    reaching = [r for r in spatial if r["val_accuracy"] >= val_accuracy]
    if reaching:
        return max(reaching, key=lambda r: r["multiplication_reduction"]), True
    return max(spatial, key=lambda r: (r["val_accuracy"], r["multiplication_reduction"])), False


def summarise(
    settings: WinogradConfig, inputs: JobInputs, state: JobState, data: Data, reporter: Reporter
) -> dict[str, Any]:
    """Write the figures, model files and summary.json; return the job's result."""
    workdir = Path(inputs.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    spatial, wrelu = _rows(state, SPATIAL), _rows(state, WINOGRAD_RELU)
    dense, spatial_final, wrelu_dense, wrelu_final = spatial[0], spatial[-1], wrelu[0], wrelu[-1]
    layers = dense["layers"]
    first = layers[0]["name"]
    dense_direct = sum(c["dense_direct"] for c in layers)
    # The first layer stays spatial in every network, so it costs its dense direct multiplications here too.
    dense_winograd = layers[0]["dense_direct"] + sum(c["dense_winograd"] for c in layers[1:])
    matched, matches = spatial_at_same_accuracy(spatial, wrelu_final["val_accuracy"])
    networks = {
        "dense direct": (dense, dense_direct),
        f"dense Winograd F({settings.tile_size}×{settings.tile_size}, 3×3)": (dense, dense_winograd),
        "spatially pruned": (spatial_final, spatial_final["multiplications"]),
        "Winograd-ReLU pruned": (wrelu_final, wrelu_final["multiplications"]),
    }
    reduction = dense_direct / wrelu_final["multiplications"]
    loss = 100.0 * (dense["test_accuracy"] - wrelu_final["test_accuracy"])
    n_val, n_test = len(data.y_val), len(data.y_test)
    summary = [
        headline("Multiplication reduction (Winograd-ReLU pruned vs dense direct)", reduction, "×"),
        headline("Accuracy loss vs dense direct (test)", loss, "points", "lower"),
        headline("Spatially pruned reduction at the same accuracy", matched["multiplication_reduction"], "×"),
        headline("Dense Winograd reduction", dense_direct / dense_winograd, "×"),
        headline("Test accuracy, Winograd-ReLU pruned", 100.0 * wrelu_final["test_accuracy"], "%"),
        headline("Test accuracy, dense direct", 100.0 * dense["test_accuracy"], "%"),
        headline("Test images per accuracy point", n_test / 100.0, "images", None),
    ]
    tables = [
        _four_way(networks, dense),
        _per_layer(layers, spatial_final, wrelu_final, settings.tile_size),
        _rounds(spatial + wrelu),
    ]
    figures = write_figures(networks, spatial, wrelu, dense_direct, workdir, reporter)
    files = save_outputs(settings, state, workdir)
    for name in files.values():
        reporter.artifact(name, workdir / name, "model")
    from search_spaces.kit import models

    result: dict[str, Any] = {
        "dataset": data.info.name,
        "model": state.source,
        "arch": state.arch,
        "tile_size": settings.tile_size,
        "multiplication_reduction": reduction,
        "accuracy_loss_points": loss,
        "spatial_reduction": matched["multiplication_reduction"],
        "spatial_round_at_same_accuracy": matched["round"],
        "spatial_matches_accuracy": matches,
        "spatial_reduction_is_lower_bound": matches and matched["round"] == spatial_final["round"],
        "dense_winograd_reduction": dense_direct / dense_winograd,
        "winograd_relu_dense_reduction": dense_direct / wrelu_dense["multiplications"],
        "accuracy": {
            "dense_direct": dense["test_accuracy"],
            "spatially_pruned": spatial_final["test_accuracy"],
            "winograd_relu_dense": wrelu_dense["test_accuracy"],
            "winograd_relu_pruned": wrelu_final["test_accuracy"],
        },
        "multiplications": {
            "dense_direct": dense_direct,
            "dense_winograd": dense_winograd,
            "spatially_pruned": spatial_final["multiplications"],
            "winograd_relu_pruned": wrelu_final["multiplications"],
            "winograd_relu_pruned_independent_estimate": wrelu_final["independent_estimate"],
        },
        "first_layer": {"name": first, "counted": "dense direct in every network (kept spatial and unpruned)"},
        "images": {"validation": n_val, "test": n_test, "per_accuracy_point_test": n_test / 100.0},
        "rounds": [{k: v for k, v in r.items() if k != "layers"} for r in spatial + wrelu],
        "layers": {SPATIAL: spatial_final["layers"], WINOGRAD_RELU: wrelu_final["layers"]},
        "summary": summary,
        "tables": tables,
        "figures": figures,
        "note": NOTE,
        # The Winograd-ReLU network is no kit family, and the spatially pruned one is a baseline: neither is
        # offered as another job's input.
        **models.output_entry(None, None),
        "settings": settings_dict(settings),
    }
    path = workdir / "summary.json"
    path.write_text(json.dumps(json_safe(result), indent=2))
    reporter.artifact("summary.json", path, "data")
    return result


def _pct(x: float) -> float:
    return round(100.0 * float(x), 2)


def _four_way(networks: dict[str, tuple[dict[str, Any], float]], dense: dict[str, Any]) -> dict[str, Any]:
    dense_direct = networks["dense direct"][1]
    rows = []
    for name, (row, mults) in networks.items():
        pruned = name.endswith("pruned")
        rows.append(
            [
                name,
                _pct(row["test_accuracy"]),
                _pct(row["val_accuracy"]),
                round(100.0 * (dense["test_accuracy"] - row["test_accuracy"]), 2),
                round(mults),
                round(dense_direct / mults, 2),
                round(row["weight_density"], 3) if pruned else 1.0,
                round(row["activation_density"], 3) if pruned else None,
            ]
        )
    return table(
        "Dense direct, dense Winograd, spatially pruned, Winograd-ReLU pruned",
        [
            "network",
            "test accuracy (%)",
            "validation accuracy (%)",
            "accuracy loss (points)",
            "multiplications per image",
            "reduction vs dense direct (×)",
            "weight density",
            "activation density (measured)",
        ],
        rows,
    )


def _per_layer(layers: list[dict[str, Any]], spatial: dict[str, Any], wrelu: dict[str, Any], m: int) -> dict[str, Any]:
    rows = []
    totals = [0.0, 0.0, 0.0, 0.0, 0.0]
    for i, (base, sp, wr) in enumerate(zip(layers, spatial["layers"], wrelu["layers"], strict=True)):
        winograd = base["dense_direct"] if i == 0 else base["dense_winograd"]
        values = [
            base["dense_direct"],
            winograd,
            sp["multiplications"],
            wr["multiplications"],
            wr["independent_estimate"],
        ]
        totals = [t + v for t, v in zip(totals, values, strict=True)]
        rows.append(
            [
                base["name"],
                f"{base['c_in']}→{base['c_out']}",
                f"{base['h']}×{base['w']}",
                *[round(v) for v in values],
                round(wr["weight_density"], 3),
                round(wr["activation_density"], 3),
            ]
        )
    rows.append(["total", "", "", *[round(v) for v in totals], None, None])
    return table(
        "Multiplications per image, per layer (first layer: dense direct everywhere)",
        [
            "layer",
            "channels",
            "map",
            "dense direct",
            f"dense Winograd F({m}×{m}, 3×3)",
            "spatially pruned",
            "Winograd-ReLU pruned",
            "Winograd-ReLU, density product (independence estimate)",
            "Winograd-ReLU weight density",
            "Winograd-ReLU activation density",
        ],
        rows,
    )


def _rounds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return table(
        "Prune/retrain rounds",
        [
            "network",
            "round",
            "weight density",
            "activation density",
            "validation accuracy (%)",
            "test accuracy (%)",
            "multiplications per image",
            "reduction vs dense direct (×)",
        ],
        [
            [
                "spatial" if r["network"] == SPATIAL else "Winograd-ReLU",
                r["round"],
                round(r["weight_density"], 3),
                round(r["activation_density"], 3),
                _pct(r["val_accuracy"]),
                _pct(r["test_accuracy"]),
                round(r["multiplications"]),
                round(r["multiplication_reduction"], 2),
            ]
            for r in rows
        ],
    )


def write_figures(
    networks: dict[str, tuple[dict[str, Any], float]],
    spatial: list[dict[str, Any]],
    wrelu: list[dict[str, Any]],
    dense_direct: float,
    workdir: Path,
    reporter: Reporter,
) -> list[str]:
    """Two figure artifacts (plotly JSON written by the kit): test accuracy vs multiplication reduction for every
    round of both pruned networks and the two dense baselines, and the four networks' multiplications per layer."""
    import plotly.graph_objects as go

    scatter = go.Figure()
    for rows, name, colour in ((spatial, "spatial (prune rounds)", "#1f77b4"), (wrelu, "Winograd-ReLU", "#d62728")):
        scatter.add_trace(
            go.Scatter(
                x=[r["multiplication_reduction"] for r in rows],
                y=[100.0 * r["test_accuracy"] for r in rows],
                mode="lines+markers",
                name=name,
                line={"color": colour},
                text=[f"round {r['round']}, weight density {r['weight_density']:.2f}" for r in rows],
                hovertemplate="%{text}<br>%{x:.2f}× fewer multiplications<br>test accuracy %{y:.2f}%",
            )
        )
    for name, (row, mults) in list(networks.items())[:2]:
        scatter.add_trace(
            go.Scatter(
                x=[dense_direct / mults],
                y=[100.0 * row["test_accuracy"]],
                mode="markers",
                name=name,
                marker={"size": 11, "symbol": "diamond"},
            )
        )
    scatter.update_layout(
        title="Test accuracy vs multiplication reduction (exact counts on validation images)",
        xaxis={"title": "multiplication reduction vs dense direct (×, log)", "type": "log"},
        yaxis={"title": "test accuracy (%)"},
    )
    bars = go.Figure()
    names = [c["name"] for c in networks["dense direct"][0]["layers"]]
    for label, (row, _) in networks.items():
        if label == "dense direct":
            values = [c["dense_direct"] for c in row["layers"]]
        elif label.startswith("dense Winograd"):
            values = [c["dense_direct"] if i == 0 else c["dense_winograd"] for i, c in enumerate(row["layers"])]
        else:
            values = [c["multiplications"] for c in row["layers"]]
        bars.add_trace(go.Bar(x=names, y=values, name=label))
    bars.update_layout(
        title="Multiplications per image, per layer", barmode="group", yaxis={"title": "multiplications"}
    )
    return [
        write_figure(reporter, workdir, "accuracy_vs_reduction.json", scatter),
        write_figure(reporter, workdir, "multiplications_per_layer.json", bars),
    ]
