"""The hls4ml sweep's result: the finished trials and their Pareto front, the figures, the archived projects
and configurations of the front, the float model, the summary with its headlines and table."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from search_spaces.base import json_safe
from search_spaces.hls.config import SweepError
from search_spaces.hls.emulation import EMULATION_LOG
from search_spaces.hls.network import _kit_model
from search_spaces.hls.study import finished, pareto
from search_spaces.hls.trial import _note, _Run
from search_spaces.kit import models

MAX_PARETO_ARCHIVES = 8


def summarise(run: _Run) -> dict[str, Any]:
    rows = []
    failed = []
    for t in finished(run.study):
        if t.state == TrialState.COMPLETE and t.user_attrs.get("metrics"):
            rows.append(
                {
                    "number": t.number,
                    "params": dict(t.params),
                    "values": list(t.values),
                    "metrics": t.user_attrs["metrics"],
                }
            )
        elif t.state == TrialState.FAIL:
            failed.append({"number": t.number, "error": t.user_attrs.get("failure", "worker lost")})
    if not rows:
        first = failed[0]["error"] if failed else "no trial ran"
        raise SweepError(f"every trial failed ({len(failed)}); the first: {first}")
    front = pareto(rows)
    from search_spaces.hls import plots

    artifacts_dir = run.workdir / "artifacts"
    artifacts_dir.mkdir(exist_ok=True)
    figures = plots.write_figures(rows, front, run.settings.cost, run.reporter, artifacts_dir)
    archived = []
    for row in front[:MAX_PARETO_ARCHIVES]:
        project = run.workdir / row["metrics"]["project"]
        if not project.is_dir():
            continue  # a trial from before a resume on another host: its project is gone
        archive = artifacts_dir / f"hls4ml_project_trial{row['number']}.tar.gz"
        _archive_project(project, archive)
        run.reporter.artifact(archive.name, archive, "archive")
        yml = project / "hls4ml_config.yml"
        if yml.exists():
            target = artifacts_dir / f"hls4ml_config_trial{row['number']}.yml"
            shutil.copyfile(yml, target)
            run.reporter.artifact(target.name, target, "config")
        archived.append(row["number"])
    model_path = artifacts_dir / "float_model.pt"
    models.save_model(*_kit_model(run.net), model_path)
    run.reporter.artifact(model_path.name, model_path, "model")
    for child in run.workdir.glob("trial_*"):
        shutil.rmtree(child, ignore_errors=True)
    run.reporter.progress(1.0, "done")

    def brief(row: dict[str, Any]) -> dict[str, Any]:
        m = row["metrics"]
        return {
            "number": row["number"],
            "fixed_accuracy": m["fixed_accuracy"],
            "dsp": m["dsp"],
            "lut": m["lut"],
            "bram": m["bram"],
            "latency_ns": m["latency_ns"],
            "initiation_interval": m["initiation_interval"],
            "reuse_factor": m["reuse_factor"],
            "strategy": m["strategy"],
            "mean_bits": m["mean_bits"],
            "sparsity": row["params"].get("sparsity", 0.0),
            "utilisation": m["utilisation"],
        }

    best = max(rows, key=lambda r: (r["metrics"]["fixed_accuracy"], -r["values"][1]), default=None)
    return json_safe(
        {
            "float_accuracy": run.net.float_accuracy,
            "part": run.settings.part.part,
            "clock_period_ns": run.settings.clock_period_ns,
            "trials": len(rows) + len(failed),
            "failed": failed,
            "compiles": run.compiles,
            "emulations_reused": run.cache_hits,
            "compile_seconds": round(run.compile_seconds, 2),
            "pareto": [brief(r) for r in front],
            "best_accuracy": brief(best) if best else None,
            "archived_trials": archived,
            "estimate_note": _note("io_stream" if run.net.convolutional else "io_parallel"),
            **models.output_entry("float_model.pt", run.net.arch),
            "plots": figures,
            **shown(run, front, best),
        }
    )


def shown(run: _Run, front: list[dict[str, Any]], best: dict[str, Any] | None) -> dict[str, Any]:
    """The result's headlines (float and best fixed-point accuracy, the most accurate trial's estimated cost) and
    the Pareto front as a table."""
    from search_spaces.kit.results import headline, summary, table

    def rf(m: dict[str, Any]) -> str:
        return ", ".join(f"{layer}={r}" for layer, r in sorted(m["reuse_factor"].items()))

    m = best["metrics"] if best else None
    return {
        "summary": summary(
            headline("Float accuracy", 100 * run.net.float_accuracy, "%"),
            headline("Best fixed-point accuracy", 100 * m["fixed_accuracy"], "%") if m else None,
            headline("DSP of that trial (estimate)", m["dsp"], "DSP", "lower") if m else None,
            headline("Latency of that trial (estimate)", m["latency_ns"], "ns", "lower") if m else None,
            headline("Pareto-optimal trials", len(front), "", None),
        ),
        "tables": [
            table(
                "Pareto front (estimates)",
                [
                    "trial",
                    "fixed-point accuracy",
                    "DSP",
                    "LUT",
                    "FF",
                    "BRAM",
                    "latency ns",
                    "II",
                    "mean bits",
                    "strategy",
                    "reuse factors",
                ],
                [
                    [
                        r["number"],
                        r["metrics"]["fixed_accuracy"],
                        r["metrics"]["dsp"],
                        r["metrics"]["lut"],
                        r["metrics"]["ff"],
                        r["metrics"]["bram"],
                        r["metrics"]["latency_ns"],
                        r["metrics"]["initiation_interval"],
                        r["metrics"]["mean_bits"],
                        r["metrics"]["strategy"],
                        rf(r["metrics"]),
                    ]
                    for r in front
                ],
            )
        ],
    }


def _archive_project(project: Path, target: Path) -> None:
    """The project as ``vivado_hls -f build_prj.tcl`` wants it, without the host-specific emulation library."""
    tmp = target.with_suffix(".partial")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(project.rglob("*")):
            if path.is_file() and path.suffix != ".so" and path.name not in ("emulation_outputs.npy", EMULATION_LOG):
                tar.add(path, arcname=str(Path(project.name) / path.relative_to(project)))
    tmp.replace(target)
