"""A kind's typed config: the frozen dataclass its algorithm reads, built from the validated JSON config.

Every kind validates its config against its JSON Schema (``JobKind.validate``) and hands the algorithm an
instance of one dataclass whose fields are the schema's properties (the shared contract test checks that they
match, for every registered kind). JSON arrays become tuples, so the algorithm cannot change its own config and
a config can key a cache.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def frozen(value: Any) -> Any:
    """``value`` with every JSON array turned into a tuple (objects stay dicts, scalars stay as they are)."""
    if isinstance(value, list | tuple):
        return tuple(frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: frozen(v) for k, v in value.items()}
    return value


def typed_config(cls: type[T], config: Mapping[str, Any], **converted: Any) -> T:
    """An instance of the dataclass ``cls`` from a validated ``config``; ``converted`` overrides fields that need
    more than freezing (e.g. a part name looked up in a table). A key ``cls`` has no field for is an error, not
    silently dropped: it would be an option the schema offers and the algorithm ignores."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field for config key(s) {', '.join(unknown)}")
    values = {key: frozen(value) for key, value in config.items()}
    values.update(converted)
    return cls(**values)
