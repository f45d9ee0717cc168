"""The granularity_sweep kind end to end on digits with tiny budgets (no Django): trials, artifacts,
cancel, resume without rerunning finished trials, and n_trials counted across workers of one study (TPE);
the default grid study runs every point once (also resumed and shared) and reads the threshold crossing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jsonschema
import optuna
import plotly.graph_objects as go
import pytest

from search_spaces.base import ConfigError, JobCancelled, JobInputs, MemoryReporter
from search_spaces.granularity_sweep import GranularitySweep

KIND = GranularitySweep()
TINY = {"sampler": "tpe", "n_trials": 4, "pretrain_epochs": 3, "prune_steps": 1, "retrain_epochs": 1, "seed": 0}
GRID = {
    "pretrain_epochs": 3,
    "prune_steps": 1,
    "retrain_epochs": 1,
    "granularities": ["fine", "kernel"],
    "sparsity_grid": [0.5, 0.8, 0.9],
    "seeds": 2,
    "seed": 0,
}


def config(**overrides: Any) -> dict[str, Any]:
    return KIND.validate({**TINY, **overrides})


def inputs(tmp: Path, **kwargs: Any) -> JobInputs:
    return JobInputs(workdir=tmp, dataset="digits", **kwargs)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[MemoryReporter, dict[str, Any], Path]:
    workdir = tmp_path_factory.mktemp("first")
    reporter = MemoryReporter()
    result = KIND.run(config(), inputs(workdir), reporter)
    return reporter, result, workdir


def dense_checkpoint(first_run: tuple[MemoryReporter, dict[str, Any], Path]) -> bytes:
    blob = first_run[0].checkpoint
    assert blob is not None
    return blob


def test_schema_defaults_and_checks() -> None:
    jsonschema.Draft202012Validator.check_schema(KIND.schema)
    assert KIND.schema["additionalProperties"] is False
    for name, prop in KIND.schema["properties"].items():
        assert "default" in prop and "description" in prop, name
    defaults = KIND.validate({})
    assert defaults["granularities"] == ["fine", "vector", "kernel", "filter"]
    assert defaults["sampler"] == "grid" and defaults["retrain_epochs"] >= 5 and defaults["seeds"] >= 3
    assert defaults["dense_first_conv"] and defaults["val_fraction"] == 0.3
    assert 0 < KIND.budget(defaults) < 15
    with pytest.raises(ConfigError) as err:
        KIND.validate({"mode": "single"})  # the grid has no sparsity to fix in single mode
    assert "sampler" in err.value.errors
    with pytest.raises(ConfigError) as err:
        KIND.validate({"sparsity_min": 0.9, "sparsity_max": 0.6})
    assert "sparsity_min" in err.value.errors
    with pytest.raises(ConfigError):
        KIND.validate({"granularities": []})
    with pytest.raises(ConfigError):
        KIND.validate({"granularities": ["fine", "fine"]})
    with pytest.raises(ConfigError):
        KIND.validate({"parallel_trials": 9})


def test_module_top_imports_no_torch() -> None:
    code = (
        "import sys, search_spaces.granularity_sweep, search_spaces.granularity.storage; "
        "sys.exit(int(any(m in sys.modules for m in ('torch', 'optuna'))))"
    )
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_run_stores_trials_results_and_artifacts(first_run: tuple[MemoryReporter, dict[str, Any], Path]) -> None:
    reporter, result, workdir = first_run
    assert sorted(reporter.trials) == [0, 1, 2, 3]
    for trial in reporter.trials.values():
        assert trial["state"] == "complete"
        accuracy, ratio = trial["values"]
        assert 0.0 <= accuracy <= 1.0 and ratio > 1.0
        m = trial["metrics"]
        assert m["granularity"] in ("fine", "vector", "kernel", "filter")
        assert 0.0 < m["sparsity"] < 1.0 and m["index_bits"] == 4 and m["value_bits"] == 8
        assert m["compression_ratio"] == ratio and m["dense_accuracy"] > 0.8
        assert trial["started"] <= trial["finished"]
    assert any(name.startswith("pretrain/") for name, *_ in reporter.metrics)
    assert result["dense_accuracy"] > 0.8 and result["trials"]["complete"] == 4
    assert result["pareto"] and all(len(p["values"]) == 2 for p in result["pareto"])
    best = [b for b in result["best_by_granularity"].values() if b]
    assert best and all(0.0 <= b["test_accuracy"] <= 1.0 for b in best)
    assert result["output_model"] in {b["model"] for b in best}
    names = {name: (path, kind) for name, path, kind in reporter.artifacts}
    figures = ["pareto_front.json", "accuracy_vs_sparsity.json", "optimization_history.json"]
    assert result["plots"] == figures
    for plot in figures:
        path, kind = names[plot]
        text = path.read_text()
        assert kind == "figure" and len(text.encode()) <= 1_000_000
        assert not re.search(r"<script", text)  # figure JSON only: the page draws it with the served plotly.js
        figure = go.Figure(json.loads(text))  # plotly's validators accept it
        assert figure.data
    for b in best:
        assert names[b["model"]][1] == "model" and names[b["model"]][0].stat().st_size > 0
    assert (workdir / "summary.json").is_file()
    assert reporter.progress_values[-1][0] == 1.0


def test_cancel_then_in_memory_resume(tmp_path: Path, first_run: tuple[MemoryReporter, dict[str, Any], Path]) -> None:
    reporter = MemoryReporter(stop_after_trials=2, checkpoint=dense_checkpoint(first_run))
    with pytest.raises(JobCancelled):
        KIND.run(config(), inputs(tmp_path), reporter)
    done = reporter.finished_trials()
    assert [t.number for t in done] == [0, 1]
    resumed = MemoryReporter(checkpoint=reporter.checkpoint, completed=done)
    result = KIND.run(config(), inputs(tmp_path), resumed)
    assert sorted(resumed.trials) == [2, 3]  # 0 and 1 were not run again
    assert result["trials"]["complete"] == 4
    assert not any(name.startswith("pretrain/") for name, *_ in resumed.metrics)


def test_resume_with_sqlite_study(tmp_path: Path, first_run: tuple[MemoryReporter, dict[str, Any], Path]) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    job = inputs(tmp_path, optuna_storage=url, study_name="job-1")
    reporter = MemoryReporter(stop_after_trials=2, checkpoint=dense_checkpoint(first_run))
    with pytest.raises(JobCancelled):
        KIND.run(config(n_trials=5), job, reporter)
    study = optuna.load_study(study_name="job-1", storage=url)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2
    resumed = MemoryReporter(checkpoint=reporter.checkpoint, completed=reporter.finished_trials())
    result = KIND.run(config(n_trials=5), job, resumed)
    assert sorted(n for n, t in resumed.trials.items() if t["state"] == "complete") == [2, 3, 4]
    study = optuna.load_study(study_name="job-1", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5
    assert result["trials"]["complete"] == 5


def test_a_helper_shares_the_jobs_study_and_its_count(
    tmp_path: Path, first_run: tuple[MemoryReporter, dict[str, Any], Path]
) -> None:
    """The job (``run``) and a helper (``run_helper``, another worker process in the service) on one
    RDB study: together they run n_trials, each trial once; the helper starts from the job's checkpoint."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    cfg = config(n_trials=6, parallel_trials=2)
    assert KIND.helpers(cfg) == 1
    job = MemoryReporter(checkpoint=dense_checkpoint(first_run))

    class HelperReporter(MemoryReporter):
        def load_checkpoint(self) -> bytes | None:
            return job.checkpoint  # the job's checkpoint, as the service hands it over

    helper = HelperReporter()
    errors: list[BaseException] = []

    def help_() -> None:
        try:
            KIND.run_helper(cfg, inputs(tmp_path / "h", optuna_storage=url, study_name="shared"), helper, 1)
        except BaseException as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    thread = threading.Thread(target=help_)
    thread.start()
    result = KIND.run(cfg, inputs(tmp_path / "j", optuna_storage=url, study_name="shared"), job)
    thread.join()
    assert not errors
    assert not set(job.trials) & set(helper.trials), "a trial ran in both processes"
    assert sorted(set(job.trials) | set(helper.trials)) == [0, 1, 2, 3, 4, 5]
    assert result["trials"]["complete"] == 6 and not helper.artifacts


def test_two_workers_on_one_study_run_n_not_2n(
    tmp_path: Path, first_run: tuple[MemoryReporter, dict[str, Any], Path]
) -> None:
    from search_spaces.granularity.sweep import SweepConfig, run_sweep

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = SweepConfig.from_config(config(n_trials=5))
    reporters = [MemoryReporter(checkpoint=dense_checkpoint(first_run)) for _ in range(2)]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            run_sweep(
                settings,
                inputs(tmp_path / f"w{index}", optuna_storage=url, study_name="shared"),
                reporters[index],
                worker_index=index,
            )
        except BaseException as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    study = optuna.load_study(study_name="shared", storage=url)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 5
    ran = [n for r in reporters for n, t in r.trials.items() if t["state"] == "complete"]
    assert sorted(ran) == [0, 1, 2, 3, 4]


def test_single_objective_mode_stores_pruned_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first_run: tuple[MemoryReporter, dict[str, Any], Path]
) -> None:
    # A pruner that gives up on every trial at its first reported epoch makes the pruned path certain.
    monkeypatch.setattr(optuna.pruners, "MedianPruner", lambda **_: optuna.pruners.ThresholdPruner(lower=2.0))
    reporter = MemoryReporter(checkpoint=dense_checkpoint(first_run))
    result = KIND.run(
        config(
            mode="single",
            target_compression=6.0,
            n_trials=2,
            granularities=["fine", "kernel"],
            retrain_epochs=2,
            prune_steps=2,
        ),
        inputs(tmp_path),
        reporter,
    )
    assert [t["state"] for t in reporter.trials.values()] == ["pruned", "pruned"]
    assert result["trials"] == {"complete": 0, "pruned": 2, "failed": 0}


def test_single_objective_mode_reaches_the_budget(
    tmp_path: Path, first_run: tuple[MemoryReporter, dict[str, Any], Path]
) -> None:
    reporter = MemoryReporter(checkpoint=dense_checkpoint(first_run))
    KIND.run(config(mode="single", target_compression=6.0, n_trials=2), inputs(tmp_path), reporter)
    for trial in reporter.trials.values():
        assert len(trial["values"]) == 1
        assert trial["metrics"]["meets_budget"] and trial["metrics"]["compression_ratio"] >= 6.0


def test_input_model_is_pruned_without_pretraining(
    tmp_path: Path, first_run: tuple[MemoryReporter, dict[str, Any], Path]
) -> None:
    reporter, result, workdir = first_run
    model_file = workdir / result["output_model"]  # a pruned model of the first run, in the kit's format
    again = MemoryReporter()
    out = KIND.run(config(n_trials=1, granularities=["filter"]), inputs(tmp_path, model_path=model_file), again)
    assert out["dense_model"] == "input model"
    assert not any(name.startswith("pretrain/") for name, *_ in again.metrics)
    assert again.trials[0]["metrics"]["granularity"] == "filter"


# --- the default grid study -----------------------------------------------------------------------------


def _grid_points(reporter: MemoryReporter) -> list[tuple[str, float, int]]:
    return sorted(
        (t["params"]["granularity"], t["params"]["sparsity"], t["params"]["retrain_seed"])
        for t in reporter.trials.values()
        if t["state"] == "complete"
    )


FULL_GRID = sorted((g, s, r) for g in ("fine", "kernel") for s in (0.5, 0.8, 0.9) for r in (0, 1))


@pytest.fixture(scope="module")
def grid_run(
    tmp_path_factory: pytest.TempPathFactory, first_run: tuple[MemoryReporter, dict[str, Any], Path]
) -> tuple[MemoryReporter, dict[str, Any]]:
    reporter = MemoryReporter(checkpoint=dense_checkpoint(first_run))
    result = KIND.run(KIND.validate(GRID), inputs(tmp_path_factory.mktemp("grid")), reporter)
    return reporter, result


def test_the_grid_runs_every_point_once_and_reads_the_threshold_crossing(
    grid_run: tuple[MemoryReporter, dict[str, Any]],
) -> None:
    reporter, result = grid_run
    assert _grid_points(reporter) == FULL_GRID
    assert result["trials"]["complete"] == 12 and result["val_images"] == 539  # 30% of digits' 1,797
    for trial in reporter.trials.values():
        m = trial["metrics"]
        assert (
            m["retrain_epochs"] == 1 and m["dense_first_conv"] and m["target_sparsity"] == trial["params"]["sparsity"]
        )
    crossings = result["at_threshold"]
    assert crossings["threshold"] == pytest.approx(result["dense_accuracy"] - 0.005)
    for g in ("fine", "kernel"):
        c = crossings["granularities"][g]
        assert [s["seed"] for s in c["seeds"]] == [0, 1] and all(s["points"] == 3 for s in c["seeds"])
        ratios = [s["compression_ratio"] for s in c["seeds"]]
        assert c["compression_ratio"] == pytest.approx(sum(ratios) / 2) and c["ratio_min"] <= c["ratio_max"]
    assert crossings["granularities"]["kernel"]["ratio_vs_fine"] == pytest.approx(
        crossings["granularities"]["kernel"]["compression_ratio"]
        / crossings["granularities"]["fine"]["compression_ratio"]
    )
    at = next(t for t in result["tables"] if t["name"] == "At the accuracy threshold")
    assert [row[0] for row in at["rows"]] == ["fine", "kernel"]
    labels = [h["label"] for h in result["summary"]]
    assert any(label.startswith("kernel / fine") for label in labels)


def test_the_grid_keeps_the_first_convolution_dense(grid_run: tuple[MemoryReporter, dict[str, Any]]) -> None:
    import torch

    from search_spaces.kit.models import load_model

    reporter, result = grid_run
    path = {name: p for name, p, _ in reporter.artifacts}[result["output_model"]]
    model, _ = load_model(path)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert bool((convs[0].weight != 0).all())
    assert all(bool((m.weight == 0).any()) for m in convs[1:])


def test_a_resumed_grid_runs_only_the_missing_points(
    tmp_path: Path, first_run: tuple[MemoryReporter, dict[str, Any], Path]
) -> None:
    reporter = MemoryReporter(stop_after_trials=5, checkpoint=dense_checkpoint(first_run))
    with pytest.raises(JobCancelled):
        KIND.run(KIND.validate(GRID), inputs(tmp_path), reporter)
    done = reporter.finished_trials()
    resumed = MemoryReporter(checkpoint=reporter.checkpoint, completed=done)
    KIND.run(KIND.validate(GRID), inputs(tmp_path), resumed)
    assert not {t.number for t in done} & set(resumed.trials)
    points = [(t.params["granularity"], t.params["sparsity"], t.params["retrain_seed"]) for t in done]
    assert sorted(points + _grid_points(resumed)) == FULL_GRID


def test_two_workers_share_one_grid(tmp_path: Path, first_run: tuple[MemoryReporter, dict[str, Any], Path]) -> None:
    from search_spaces.granularity.sweep import SweepConfig, run_sweep

    url = f"sqlite:///{tmp_path / 'grid.db'}"
    settings = SweepConfig.from_config(KIND.validate(GRID))
    reporters = [MemoryReporter(checkpoint=dense_checkpoint(first_run)) for _ in range(2)]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            run_sweep(
                settings,
                inputs(tmp_path / f"w{index}", optuna_storage=url, study_name="grid"),
                reporters[index],
                worker_index=index,
            )
        except BaseException as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(_grid_points(reporters[0]) + _grid_points(reporters[1])) == FULL_GRID
