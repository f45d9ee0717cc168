"""The sweep's figures (plotly JSON artifacts the job page draws): the Pareto front (DSP vs latency, coloured by
fixed-point accuracy), DSP and latency vs reuse factor, and fixed-point vs float accuracy against bit width."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search_spaces.base import Reporter


def write_figures(
    rows: list[dict[str, Any]], front: list[dict[str, Any]], cost: str, reporter: Reporter, workdir: Path
) -> list[str]:
    """Write the three figures into ``workdir`` and report them as ``figure`` artifacts; their names."""
    import plotly.graph_objects as go

    from search_spaces.kit.results import write_figure

    cost_label = "max utilisation (%)" if cost == "utilisation" else "DSP (estimate)"
    on_front = {r["number"] for r in front}

    def hover(r: dict[str, Any]) -> str:
        m = r["metrics"]
        return (
            f"trial {r['number']}<br>acc {m['fixed_accuracy']:.4f} (float {m['float_accuracy']:.4f})<br>"
            f"DSP {m['dsp']} · LUT {m['lut']} · BRAM {m['bram']}<br>latency {m['latency_ns']} ns · "
            f"II {m['initiation_interval']}<br>RF {m['reuse_factor']}<br>{m['strategy']}, "
            f"{m['mean_bits']:.0f} bits"
        )

    pareto = go.Figure()
    for label, group in (
        ("trials", [r for r in rows if r["number"] not in on_front]),
        ("Pareto front", [r for r in rows if r["number"] in on_front]),
    ):
        pareto.add_trace(
            go.Scatter(
                x=[r["values"][1] for r in group],
                y=[r["metrics"]["latency_ns"] for r in group],
                mode="markers",
                name=label,
                text=[hover(r) for r in group],
                hoverinfo="text",
                marker={
                    "size": 12 if label == "Pareto front" else 8,
                    "symbol": "diamond" if label == "Pareto front" else "circle",
                    "color": [r["metrics"]["fixed_accuracy"] for r in group],
                    "colorscale": "Viridis",
                    "showscale": label == "Pareto front",
                    "colorbar": {"title": "fixed-point acc."},
                },
            )
        )
    pareto.update_layout(
        title="Pareto front: resources vs latency (colour: fixed-point accuracy)",
        xaxis_title=cost_label,
        yaxis_title="latency (ns, estimate)",
        height=480,
    )

    by_rf = go.Figure()
    rf = [r["metrics"]["mean_reuse_factor"] for r in rows]
    by_rf.add_trace(
        go.Scatter(
            x=rf,
            y=[r["metrics"]["dsp"] for r in rows],
            mode="markers",
            name="DSP",
            text=[hover(r) for r in rows],
            hoverinfo="text",
        )
    )
    by_rf.add_trace(
        go.Scatter(
            x=rf,
            y=[r["metrics"]["latency_ns"] for r in rows],
            mode="markers",
            name="latency (ns)",
            yaxis="y2",
            text=[hover(r) for r in rows],
            hoverinfo="text",
        )
    )
    by_rf.update_layout(
        title="DSP and latency vs reuse factor (mean over layers)",
        height=420,
        xaxis={"title": "reuse factor", "type": "log"},
        yaxis={"title": "DSP"},
        yaxis2={"title": "latency (ns)", "overlaying": "y", "side": "right"},
    )

    by_bits = go.Figure()
    bits = [r["metrics"]["mean_bits"] for r in rows]
    by_bits.add_trace(
        go.Scatter(
            x=bits,
            y=[r["metrics"]["fixed_accuracy"] for r in rows],
            mode="markers",
            name="fixed-point",
            text=[hover(r) for r in rows],
            hoverinfo="text",
        )
    )
    by_bits.add_trace(
        go.Scatter(
            x=bits,
            y=[r["metrics"]["float_accuracy"] for r in rows],
            mode="markers",
            name="float",
            marker={"symbol": "x"},
        )
    )
    by_bits.update_layout(
        title="Validation accuracy vs bit width",
        xaxis_title="total bits (mean over layers)",
        yaxis_title="accuracy",
        height=420,
    )

    return [
        write_figure(reporter, workdir, name, fig)
        for name, fig in (
            ("hls4ml_pareto.json", pareto),
            ("hls4ml_reuse_factor.json", by_rf),
            ("hls4ml_bit_width.json", by_bits),
        )
    ]
