"""The result of a ``dgc_train`` job: each run's totals, the runs side by side (accuracy gaps, bytes saved,
compression, projected time on a link), the final models scored on the test split and saved as artifacts,
the headline figures, the DGC vs dense table and the per-epoch figure."""

from __future__ import annotations

import itertools
from typing import Any, Protocol

from search_spaces.base import JobInputs, Reporter
from search_spaces.dgc.config import DgcConfig, expected_sends_per_entry


class RunHistory(Protocol):
    """What the summary reads of the job's checkpoint: each run's finished epochs and final weights."""

    def history(self, mode: str) -> list[dict[str, Any]]: ...

    def model_state(self, mode: str) -> bytes | None: ...


def projected_seconds(compute_s: float, payload_bytes: float, *, mode: str, workers: int, link_gbps: float) -> float:
    """Compute time plus the time the exchange would take on a link of ``link_gbps``.

    Bytes each worker moves per exchange: a ring all-reduce of the dense gradient sends 2(N−1)/N of it,
    an all-gather of sparse pieces N−1 pieces (each worker must see every other worker's piece).
    """
    n = max(workers, 1)
    traffic = payload_bytes * (2 * (n - 1) / n if mode == "dense" else (n - 1))
    return compute_s + traffic * 8 / (link_gbps * 1e9)


def summarise(
    config: DgcConfig,
    splits: Any,
    arch: dict[str, Any],
    checkpoint: RunHistory,
    modes: list[str],
    inputs: JobInputs,
    reporter: Reporter,
) -> dict[str, Any]:
    """Both runs side by side; final models saved as artifacts, scored on the test split."""
    from search_spaces.kit import models, trainer
    from search_spaces.kit.checkpoint import from_bytes

    world = config.world_size
    runs: dict[str, Any] = {}
    for mode in modes:
        history = checkpoint.history(mode)
        state = checkpoint.model_state(mode)
        if not history or state is None:
            raise RuntimeError(f"the {mode} run finished no epoch")
        model = models.build_model(arch)
        model.load_state_dict(from_bytes(state))
        name = f"{mode}_model.pt"
        path = inputs.workdir / name
        models.save_model(model, arch, path)
        reporter.artifact(name, path, "model")
        runs[mode] = _run_summary(config, history, mode, world)
        runs[mode]["test_accuracy"] = trainer.evaluate(model, splits.x_test, splits.y_test)
        runs[mode]["model_artifact"] = name
    n_train = len(splits.y_train)
    summary: dict[str, Any] = {
        "dataset": splits.info.name,
        "model": arch["name"],
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "one_dimensional_share": sum(p.numel() for p in model.parameters() if p.dim() <= 1)
        / max(sum(p.numel() for p in model.parameters()), 1),
        "workers": world,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "expected_sends_per_entry": expected_sends_per_entry(
            n_train,
            world,
            config.batch,
            epochs=config.epochs,
            warmup_epochs=config.warmup_epochs,
            sparsity=config.sparsity,
        ),
        "sparsity": config.sparsity,
        "value_dtype": config.value_dtype,
        "link_gbps": config.link_gbps,
        "val_images": len(splits.y_val),
        "test_images": len(splits.y_test),
        "dgc": runs["dgc"],
        "dense": runs.get("dense"),
        "reference": runs.get("reference"),
        **models.output_entry("dgc_model.pt", arch),
    }
    if "dense" in runs:
        dgc, dense = runs["dgc"], runs["dense"]
        summary["accuracy_gap_points"] = 100 * (dgc["val_accuracy"] - dense["val_accuracy"])
        summary["test_accuracy_gap_points"] = 100 * (dgc["test_accuracy"] - dense["test_accuracy"])
        summary["bytes_saved_factor"] = dense["bytes_per_worker"] / max(dgc["bytes_per_worker"], 1)
        summary["projected_speedup"] = dense["projected_s"] / max(dgc["projected_s"], 1e-12)
        if "reference" in runs:
            ref = runs["reference"]
            summary["reference_accuracy_gap_points"] = 100 * (ref["val_accuracy"] - dense["val_accuracy"])
            summary["reference_test_accuracy_gap_points"] = 100 * (ref["test_accuracy"] - dense["test_accuracy"])
    summary.update(_shown(summary, checkpoint, modes, inputs, reporter))
    return summary


def _shown(
    summary: dict[str, Any], checkpoint: RunHistory, modes: list[str], inputs: JobInputs, reporter: Reporter
) -> dict[str, Any]:
    """Headlines (accuracy gap, bytes saved, steady-phase compression, projected speed-up), the DGC vs dense
    table (the two runs side by side) and the per-epoch figure, reported as an artifact."""
    import plotly.graph_objects as go

    from search_spaces.kit.results import headline, is_number, table, write_figure
    from search_spaces.kit.results import summary as headlines

    dgc, ref = summary["dgc"], summary.get("reference") or {}

    def maybe(label: str, key: str, unit: str, source: dict[str, Any] = summary) -> dict[str, Any] | None:
        return headline(label, source[key], unit) if is_number(source.get(key)) else None

    fig = go.Figure()
    for mode in modes:
        history = sorted(checkpoint.history(mode), key=lambda item: item["epoch"])
        epochs = [item["epoch"] + 1 for item in history]
        sent = list(itertools.accumulate(float(item["stats"]["bytes_per_worker"]) for item in history))
        fig.add_trace(
            go.Scatter(x=epochs, y=[float(i["stats"]["accuracy"]) for i in history], name=f"{mode}: val accuracy")
        )
        fig.add_trace(
            go.Scatter(x=epochs, y=sent, name=f"{mode}: bytes sent per worker", yaxis="y2", line={"dash": "dot"})
        )
    fig.update_layout(
        title={"text": "DGC vs dense: validation accuracy and gradient bytes sent per worker"},
        xaxis={"title": {"text": "epoch"}, "dtick": 1},
        yaxis={"title": {"text": "validation accuracy"}},
        yaxis2={
            "title": {"text": "bytes sent per worker (cumulative)"},
            "overlaying": "y",
            "side": "right",
            "type": "log",
        },
        legend={"orientation": "h", "y": -0.2},
    )
    write_figure(reporter, inputs.workdir, "dgc_vs_dense.json", fig)
    columns = [
        "run",
        "epochs",
        "val accuracy",
        "test accuracy",
        "final loss",
        "bytes per worker",
        "compression ratio",
        "density",
        "compute s",
        "comm s",
        "projected s",
    ]
    keys = [
        "epochs",
        "val_accuracy",
        "test_accuracy",
        "final_loss",
        "bytes_per_worker",
        "compression_ratio",
        "density",
        "compute_s",
        "comm_s",
        "projected_s",
    ]
    rows = [[mode, *(summary[mode].get(k) for k in keys)] for mode in modes]
    return {
        "summary": headlines(
            maybe("DGC vs dense, validation accuracy", "accuracy_gap_points", "points"),
            maybe("Gradient bytes sent, dense / DGC", "bytes_saved_factor", "×"),
            maybe("Steady-phase compression ratio", "steady_compression_ratio", "×", dgc),
            maybe(
                "Reference way (1-D dense, k exact): steady-phase compression ratio",
                "steady_compression_ratio",
                "×",
                ref,
            ),
            maybe("Reference way vs dense, validation accuracy", "reference_accuracy_gap_points", "points"),
            maybe(f"Projected speed-up at {summary['link_gbps']:g} Gb/s", "projected_speedup", "×"),
            headline("DGC test accuracy", 100 * dgc["test_accuracy"], "%"),
            headline("Bytes sent per worker (DGC)", dgc["bytes_per_worker"], "bytes", "lower"),
            headline(
                "Expected sends per gradient entry after the warm-up", summary["expected_sends_per_entry"], "", None
            ),
            headline("Batch per worker", summary["batch_size"], "", None),
        ),
        "tables": [table("DGC vs dense", columns, rows)],
    }


def _run_summary(config: DgcConfig, history: list[dict[str, Any]], mode: str, world: int) -> dict[str, Any]:
    stats = [item["stats"] for item in sorted(history, key=lambda item: item["epoch"])]

    def total(key: str, rows: list[dict[str, Any]] = stats) -> float:
        return float(sum(float(r[key]) for r in rows))

    steady = [r for r, item in zip(stats, history, strict=True) if item["epoch"] >= config.warmup_epochs]
    nbytes, dense_bytes = total("bytes_per_worker"), total("dense_bytes_per_worker")
    steps = total("steps")
    return {
        "epochs": len(stats),
        "val_accuracy": float(stats[-1]["accuracy"]),
        "final_loss": float(stats[-1]["loss"]),
        "bytes_per_worker": nbytes,
        "dense_bytes_per_worker": dense_bytes,
        "bytes_per_step": nbytes / max(steps, 1),
        "compression_ratio": dense_bytes / nbytes if nbytes else None,
        "steady_compression_ratio": (
            total("dense_bytes_per_worker", steady) / total("bytes_per_worker", steady)
            if mode != "dense" and steady
            else None
        ),
        "density": float(sum(float(r["density"]) * float(r["steps"]) for r in stats) / max(steps, 1)),
        "compute_s": total("compute_s"),
        "comm_s": total("comm_s"),
        "select_s": total("select_s"),
        "wall_s": total("epoch_s"),
        "projected_s": projected_seconds(
            total("compute_s"), nbytes, mode=mode, workers=world, link_gbps=config.link_gbps
        ),
    }
