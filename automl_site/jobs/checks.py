"""What the database can keep: checks that turn a value PostgreSQL would refuse (or a reply could not encode)
into a message for the person who sent it, before anything is written.

PostgreSQL stores no NUL character in text or JSON, an ``integer`` column holds 32 bits, a ``varchar(64)``
64 characters; a lone UTF-16 surrogate cannot be encoded at all; JSON replies carry no NaN or infinity; and a
value nested thousands deep exhausts Python's recursion in whatever reads it next.
"""

from __future__ import annotations

import math
from typing import Any

from django.db import models

MAX_JSON_DEPTH = 32
INT32 = (-(2**31), 2**31 - 1)
BIGINT = (-(2**63), 2**63 - 1)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or ``None``."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why ``value`` (parsed JSON) cannot be stored and served back, or ``None``. Walks without recursion, so
    any depth is answered. The message never repeats the value (it may be what cannot be encoded)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"is nested more than {max_depth} levels deep"
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        return "has a key that is not text"
                    problem = text_problem(key)
                    if problem:
                        return f"has a key that {problem}"
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return f"has text that {problem}"
        elif isinstance(item, float) and not math.isfinite(item):
            return "holds NaN or an infinity"
        elif isinstance(item, int) and not isinstance(item, bool) and not BIGINT[0] <= item <= BIGINT[1]:
            return "holds an integer beyond 64 bits"
    return None


def field_problems(model: type[models.Model], values: dict[str, Any]) -> dict[str, str]:
    """Per field of ``model``, why ``values[field]`` would not fit its column (type, range, length, text)."""
    problems: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        try:
            field = model._meta.get_field(name)
        except Exception:  # noqa: BLE001 - not a column: ForeignKey objects and the like are checked elsewhere
            continue
        problem = _value_problem(field, value)
        if problem:
            problems[name] = problem
    return problems


def _value_problem(field: Any, value: Any) -> str | None:
    if isinstance(field, models.JSONField):
        return json_problem(value)
    if isinstance(field, models.CharField | models.TextField):
        if not isinstance(value, str):
            return "must be text"
        if field.max_length is not None and len(value) > field.max_length:
            return f"is {len(value):,} characters long; at most {field.max_length} fit"
        return text_problem(value)
    if isinstance(field, models.IntegerField):  # also BigIntegerField and PositiveIntegerField
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be an integer"
        if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
            return f"{value!r} is not a whole number"
        low, high = BIGINT if isinstance(field, models.BigIntegerField) else INT32
        low = max(low, 0) if isinstance(field, models.PositiveIntegerField) else low
        if not low <= int(value) <= high:
            return f"{int(value):,} is out of range ({low:,} to {high:,})"
        return None
    if isinstance(field, models.FloatField):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if not math.isfinite(float(value)):
            return f"{value!r} is not a finite number"
    return None
