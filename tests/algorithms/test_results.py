"""The kit's result helpers: headlines, tables and the one figure writer every kind uses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search_spaces.base import MemoryReporter, MetricSpec
from search_spaces.kit import results


def test_headline_takes_numbers_and_strings_only() -> None:
    assert results.headline("Speed-up", np.float32(2.5), "×") == {
        "label": "Speed-up",
        "value": 2.5,
        "unit": "×",
        "better": "higher",
    }
    assert results.headline("Cell", "conv3x3", better=None)["value"] == "conv3x3"
    for bad in (float("nan"), None, True, [1]):
        with pytest.raises(ValueError):
            results.headline("x", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        results.headline("x", 1, better="up")  # type: ignore[arg-type]
    assert results.summary(None, results.headline("a", 1)) == [results.headline("a", 1)]
    assert results.is_number(3) and not results.is_number(None) and not results.is_number(float("inf"))


def test_table_rows_match_their_columns() -> None:
    t = results.table("t", ["a", "b"], [[1, float("nan")], (2, np.int64(3))])
    assert t == {"name": "t", "columns": ["a", "b"], "rows": [[1, None], [2, 3]]}
    with pytest.raises(ValueError, match="row 0"):
        results.table("t", ["a", "b"], [[1]])


def test_write_figure_stores_plotly_json_without_plotly_js(tmp_path: Path) -> None:
    import plotly.graph_objects as go

    reporter = MemoryReporter()
    fig = go.Figure(go.Scatter(x=np.arange(10), y=np.linspace(0, 1, 10)))
    name = results.write_figure(reporter, tmp_path, "curve", fig)
    assert name == "curve.json" and reporter.artifacts == [(name, tmp_path / name, "figure")]
    text = (tmp_path / name).read_text()
    assert "<script" not in text and len(text) < 20_000
    go.Figure(json.loads(text))  # valid for plotly's own validators


def test_a_large_figure_is_thinned_and_a_hopeless_one_refused() -> None:
    import plotly.graph_objects as go

    n = 60_000
    fig = go.Figure(go.Scatter(x=list(range(n)), y=[i * 0.5 for i in range(n)], text=[f"p{i}" for i in range(n)]))
    text = results.figure_json(fig, max_bytes=300_000)
    thinned = json.loads(text)["data"][0]
    assert len(text) <= 300_000 and len(thinned["text"]) < n
    assert len(thinned["text"]) == len(thinned["x"]) == len(thinned["y"])  # every per-point array cut alike
    assert thinned["text"][1] == f"p{thinned['x'][1]}"
    with pytest.raises(results.FigureTooLarge):
        results.figure_json(go.Figure(layout={"title": {"text": "x" * 5000}}), max_bytes=1000)


def test_metric_specs_match_names_and_globs() -> None:
    spec = MetricSpec("pretrain/*", "fraction", "accuracy")
    assert spec.matches("pretrain/val_acc") and not spec.matches("val_acc")
    with pytest.raises(ValueError):
        MetricSpec("x", group="speed")
