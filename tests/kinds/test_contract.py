"""The shared job-kind test suite: every registered kind runs it (like Optuna's pytest_samplers).

Algorithm level, no Django: schema and defaults, a tiny run that stores trials/metrics/artifacts,
cancel honoured, and a resume after a stop that does not redo finished trials. The same properties
through a real worker and broker are in tests/e2e/test_kinds_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from search_spaces import registry
from search_spaces.base import METRIC_GROUPS, ConfigError, JobCancelled, JobInputs, MemoryReporter
from search_spaces.kit.results import MAX_FIGURE_BYTES

KINDS = sorted(registry.KINDS)
_TINY_RUNS: dict[str, tuple[dict[str, Any], MemoryReporter]] = {}


def _tiny_run(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], MemoryReporter]:
    """The kind's tiny config run once per session; the tests that read its result share it."""
    if name not in _TINY_RUNS:
        kind = registry.get_kind(name)
        reporter = MemoryReporter()
        workdir = tmp_path_factory.mktemp(f"tiny-{name}")
        result = kind.run(kind.validate(kind.tiny_config), _inputs(name, workdir), reporter)
        _TINY_RUNS[name] = (result, reporter)
    return _TINY_RUNS[name]


def _inputs(kind_name: str, tmp_path: Path, seed: int = 0) -> JobInputs:
    kind = registry.get_kind(kind_name)
    return JobInputs(
        seed=seed,
        dataset=kind.default_dataset,
        workdir=tmp_path,
        optuna_storage=f"sqlite:///{tmp_path / 'optuna.sqlite3'}",
        study_name="contract",
    )


@pytest.mark.parametrize("name", KINDS)
def test_the_typed_config_is_the_schema(name: str) -> None:
    """The dataclass the algorithm reads has a field for every schema property (no option silently ignored),
    extra fields only with defaults, and is built from the validated defaults and the tiny config."""
    import dataclasses

    from search_spaces.kit.config import typed_config

    kind = registry.get_kind(name)
    cls = kind.config_type()
    assert cls is not None and dataclasses.is_dataclass(cls), f"{name} has no typed config"
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(kind.schema["properties"]) <= set(fields), sorted(set(kind.schema["properties"]) - set(fields))
    for extra in set(fields) - set(kind.schema["properties"]):
        assert (
            fields[extra].default is not dataclasses.MISSING or fields[extra].default_factory is not dataclasses.MISSING
        )
    for config in (kind.validate({}), kind.validate(kind.tiny_config)):
        typed = cls.from_config(config) if hasattr(cls, "from_config") else typed_config(cls, config)
        assert isinstance(typed, cls)


@pytest.mark.parametrize("name", KINDS)
def test_schema_is_valid_and_documented(name: str) -> None:
    kind = registry.get_kind(name)
    jsonschema.Draft202012Validator.check_schema(kind.schema)
    assert kind.schema.get("additionalProperties") is False, "unknown keys must be refused"
    for key, prop in kind.schema["properties"].items():
        assert "default" in prop and prop.get("description"), f"{name}.{key} needs a default and a description"
    assert kind.validate({}) == kind.defaults()
    assert kind.validate(kind.tiny_config)
    assert kind.title and kind.description and kind.default_dataset


@pytest.mark.parametrize("name", KINDS)
def test_bad_configs_are_refused_per_field(name: str) -> None:
    kind = registry.get_kind(name)
    with pytest.raises(ConfigError) as exc:
        kind.validate({"no_such_option": 1})
    assert "no_such_option" in exc.value.errors
    first_int = next(k for k, p in kind.schema["properties"].items() if p.get("type") == "integer")
    with pytest.raises(ConfigError) as exc:
        kind.validate({first_int: "many"})
    assert first_int in exc.value.errors
    for key, prop in kind.schema["properties"].items():  # 2.0 is no integer here, whatever JSON Schema says
        if "integer" in (prop.get("type") if isinstance(prop.get("type"), list) else [prop.get("type")]):
            with pytest.raises(ConfigError) as exc:
                kind.validate({key: float(prop["default"] or prop.get("minimum", 1))})
            assert key in exc.value.errors, key


@pytest.mark.parametrize("name", KINDS)
def test_tiny_run_stores_trials_metrics_artifacts(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    result, reporter = _tiny_run(name, tmp_path_factory)
    json.dumps(result)  # the result summary must be storable as JSON
    finished = [t for t in reporter.trials.values() if t["state"] in ("complete", "pruned")]
    assert len(finished) >= 3
    assert reporter.metrics, "no metric points reported"
    assert reporter.artifacts, "no artifacts reported"
    for _, path, _ in reporter.artifacts:
        assert path.exists() and path.stat().st_size > 0
    assert reporter.progress_values[-1][0] == 1.0
    if result.get("output_model"):
        assert result["output_model"] in {a[0] for a in reporter.artifacts}


@pytest.mark.parametrize("name", KINDS)
def test_result_shows_headlines_and_tables(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    result, _ = _tiny_run(name, tmp_path_factory)
    json.dumps(result, allow_nan=False)
    assert result["summary"], "no headline figures in the result's summary"
    for entry in result["summary"]:
        assert set(entry) == {"label", "value", "unit", "better"}, entry
        assert isinstance(entry["label"], str) and entry["label"]
        assert isinstance(entry["value"], (int, float, str)) and not isinstance(entry["value"], bool), entry
        assert isinstance(entry["unit"], str) and entry["better"] in ("higher", "lower", None), entry
    assert result["tables"], "no tables in the result"
    for t in result["tables"]:
        assert isinstance(t["name"], str) and t["name"] and t["columns"], t
        assert all(isinstance(c, str) for c in t["columns"])
        assert t["rows"], f"table {t['name']!r} is empty"
        for row in t["rows"]:
            assert isinstance(row, list) and len(row) == len(t["columns"]), (t["name"], row)


@pytest.mark.parametrize("name", KINDS)
def test_figures_are_plotly_json_under_a_megabyte(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    import plotly.graph_objects as go

    _, reporter = _tiny_run(name, tmp_path_factory)
    figures = [(n, path) for n, path, kind in reporter.artifacts if kind == "figure"]
    assert figures, "no artifact of kind 'figure'"
    for artifact, path in figures:
        raw = path.read_bytes()
        assert len(raw) <= MAX_FIGURE_BYTES, f"{artifact} is {len(raw)} bytes"
        figure = json.loads(raw)
        assert set(figure) >= {"data", "layout"} and figure["data"], artifact
        assert b"<script" not in raw and b"plotly.js" not in raw.lower()
        go.Figure(figure)  # validates every trace and layout property
    assert not [n for n, _, kind in reporter.artifacts if kind == "plot" and n.endswith(".html")], (
        "self-contained HTML plots are replaced by figure artifacts"
    )


@pytest.mark.parametrize("name", KINDS)
def test_declared_metrics_cover_the_reported_ones(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    kind = registry.get_kind(name)
    assert kind.metrics, f"{name} declares no metrics"
    for spec in kind.metrics:
        assert spec.group in METRIC_GROUPS and isinstance(spec.unit, str)
    _, reporter = _tiny_run(name, tmp_path_factory)
    reported = {metric for metric, *_ in reporter.metrics}
    undeclared = sorted(m for m in reported if kind.metric_spec(m) is None)
    assert not undeclared, f"metrics reported but not declared: {undeclared}"


@pytest.mark.parametrize("name", KINDS)
def test_objectives_name_every_trial_value(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The trial table heads a column per objective and marks the best trial by the first: every finished trial's
    values are as many as the kind declares, and the schema's "x-advanced" flags (the form's fold) are booleans."""
    kind = registry.get_kind(name)
    objectives = kind.objectives(kind.validate(kind.tiny_config))
    assert objectives and all(o.name and o.direction in ("maximize", "minimize") for o in objectives)
    for key, prop in kind.schema["properties"].items():
        assert isinstance(prop.get("x-advanced", False), bool), key
    _, reporter = _tiny_run(name, tmp_path_factory)
    lengths = {len(t["values"]) for t in reporter.trials.values() if t["state"] == "complete" and t["values"]}
    assert lengths == {len(objectives)}, (lengths, objectives)


@pytest.mark.parametrize("name", KINDS)
def test_examples_hold_tiny_and_default_configs(name: str) -> None:
    kind = registry.get_kind(name)
    examples = kind.examples
    assert {"tiny", "default"} <= set(examples)
    assert examples["tiny"] == kind.tiny_config
    for config in examples.values():
        kind.validate(config)


@pytest.mark.parametrize("name", KINDS)
def test_cancel_is_honoured(name: str, tmp_path: Path) -> None:
    kind = registry.get_kind(name)
    reporter = MemoryReporter(stop_after_trials=1)
    with pytest.raises(JobCancelled):
        kind.run(kind.validate(kind.tiny_config), _inputs(name, tmp_path), reporter)
    finished = [t for t in reporter.trials.values() if t["state"] != "running"]
    assert 1 <= len(finished) <= 2, "the kind kept working after should_stop() said stop"


@pytest.mark.parametrize("name", KINDS)
def test_resume_does_not_redo_finished_trials(name: str, tmp_path: Path) -> None:
    kind = registry.get_kind(name)
    config = kind.validate(kind.tiny_config)
    first = MemoryReporter(stop_after_trials=2)
    with pytest.raises(JobCancelled):
        kind.run(config, _inputs(name, tmp_path), first)
    done = first.finished_trials()
    assert len(done) >= 2
    second = MemoryReporter(checkpoint=first.checkpoint, completed=done)
    kind.run(config, _inputs(name, tmp_path), second)
    redone = {t.number for t in done} & set(second.trials)
    assert not redone, f"trials {sorted(redone)} were run again after the resume"
    assert len(done) + len(second.trials) >= 3
