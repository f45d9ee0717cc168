"""What a job's result shows first: headline figures, named tables and plotly figures.

Every kind builds its result's ``summary`` with :func:`headline`, its ``tables`` with :func:`table`, and stores
its plots with :func:`write_figure`: plotly figure JSON (``{"data", "layout"}``, no plotly.js inside, at most
:data:`MAX_FIGURE_BYTES`), which the job page draws with the locally served plotly.js. plotly is imported inside
the functions, so the web process can import this module without it.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeGuard

from search_spaces.base import Reporter, json_safe

Better = Literal["higher", "lower"] | None
MAX_FIGURE_BYTES = 1_000_000
_MAX_STRIDE = 64  # thin a figure at most this much before refusing it


class FigureTooLarge(ValueError):
    """A figure whose JSON stays over the limit even thinned to one point in :data:`_MAX_STRIDE`."""


def headline(label: str, value: float | int | str, unit: str = "", better: Better = "higher") -> dict[str, Any]:
    """One headline figure of a result: ``{"label", "value", "unit", "better"}``.

    ``value`` is a finite number or a string (a NumPy or torch scalar becomes a Python number); ``unit`` a short
    word such as ``"%"``, ``"points"``, ``"×"``, ``"ms"``, ``"bytes"`` (empty: a plain number); ``better`` says
    which way is good (``None``: neither)."""
    if better not in ("higher", "lower", None):
        raise ValueError(f"better must be 'higher', 'lower' or None, not {better!r}")
    value = json_safe(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"headline {label!r}: value must be a finite number or a string, not {value!r}")
    return {"label": str(label), "value": value, "unit": str(unit), "better": better}


def summary(*entries: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The headlines given, without the ``None`` ones (a figure the run could not measure is left out)."""
    return [e for e in entries if e is not None]


def is_number(value: Any) -> TypeGuard[float | int]:
    """Whether ``value`` is a number a headline can show (not ``None``, NaN or infinite)."""
    if value is None or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def table(name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """A named table of a result: ``{"name", "columns", "rows"}``, every row as long as ``columns``; cells are
    JSON (NaN and infinities become ``null``)."""
    cols = [str(c) for c in columns]
    out = []
    for i, row in enumerate(rows):
        cells = list(row)
        if len(cells) != len(cols):
            raise ValueError(f"table {name!r}: row {i} has {len(cells)} cells for {len(cols)} columns")
        out.append(json_safe(cells))
    return {"name": str(name), "columns": cols, "rows": out}


def figure_json(figure: Any, max_bytes: int = MAX_FIGURE_BYTES) -> str:
    """``figure`` (a plotly ``Figure`` or a ``{"data", "layout"}`` dict) as validated plotly JSON.

    Serialised by plotly's own encoder (arrays as typed arrays), not the HTML writer. Over ``max_bytes`` its
    traces are thinned (every 2nd, 4th, ... point) until it fits; :class:`FigureTooLarge` if it never does."""
    import plotly.graph_objects as go
    import plotly.io as pio

    fig = figure if isinstance(figure, go.Figure) else go.Figure(figure)
    plain = fig.to_plotly_json()
    text = pio.to_json(fig, validate=True, pretty=False)
    stride = 1
    while len(text.encode()) > max_bytes:
        stride *= 2
        if stride > _MAX_STRIDE:
            raise FigureTooLarge(
                f"figure JSON is {len(text.encode())} bytes thinned 1:{_MAX_STRIDE}; limit {max_bytes}"
            )
        thinned = {"data": [_thin(trace, stride) for trace in plain["data"]], "layout": plain["layout"]}
        text = pio.to_json(go.Figure(thinned), validate=True, pretty=False)
    return text


def _thin(trace: dict[str, Any], stride: int) -> dict[str, Any]:
    """Every ``stride``-th point of a trace: each per-point array (as long as its x or y) is cut alike."""
    n = next((len(trace[k]) for k in ("x", "y") if _is_array(trace.get(k))), None)
    if n is None:
        return trace

    def cut(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if _is_array(value) and len(value) == n:
            return value[::stride]
        return value

    return {k: cut(v) for k, v in trace.items()}


def _is_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or (hasattr(value, "ndim") and getattr(value, "ndim", 0) == 1)


def write_figure(reporter: Reporter, workdir: Path, name: str, figure: Any) -> str:
    """Write ``figure`` as plotly JSON to ``workdir/name`` (``.json`` added if missing) and report it as an
    artifact of kind ``figure``; returns the artifact's name."""
    if not name.endswith(".json"):
        name += ".json"
    text = figure_json(figure)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=workdir)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    reporter.artifact(name, path, "figure")
    return name
