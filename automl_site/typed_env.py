"""The settings' one reader of environment variables: django-environ's ``Env``, made strict.

django-environ alone reads ``DJANGO_DEBUG=treu`` as false, takes ``AUTOML_HEARTBEAT_SECONDS=-1`` and reads
``2s`` as the float 2; a typo should stop start-up instead, with a message that says which variable, what it
holds and what it should hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
NOTSET = environ.Env.NOTSET


def invalid(var: str, value: Any, expected: str) -> ImproperlyConfigured:
    """The error for a variable whose value does not fit; settings raise it for their own checks too."""
    return ImproperlyConfigured(f"{var}={value!r} is not valid: expected {expected}")


class TypedEnv(environ.Env):
    """``Env`` whose ``bool``, ``int`` and ``float`` refuse what they do not understand, and take bounds.

    Booleans are true/false, 1/0, yes/no or on/off (any case); numbers must parse completely and be finite;
    ``gt``/``ge``/``le`` bound them. Defaults are checked like set values. Every refusal is an
    :class:`ImproperlyConfigured` from :func:`invalid`.
    """

    def bool(self, var: str, default: Any = NOTSET) -> bool:  # type: ignore[override]
        raw = self._raw(var, default)
        if isinstance(raw, bool):
            return raw
        value = BOOLEANS.get(str(raw).strip().lower())
        if value is None:
            raise invalid(var, raw, "a boolean: true/false, 1/0, yes/no or on/off")
        return value

    def int(  # type: ignore[override]
        self, var: str, default: Any = NOTSET, *, ge: int | None = None, le: int | None = None
    ) -> int:
        raw = self._raw(var, default)
        expected = "an integer" + _bounds(ge=ge, le=le)
        try:
            value = raw if isinstance(raw, int) and not isinstance(raw, bool) else int(str(raw).strip())
        except ValueError:
            raise invalid(var, raw, expected) from None
        if not _within(value, ge=ge, le=le):
            raise invalid(var, raw, expected)
        return value

    def float(  # type: ignore[override]
        self,
        var: str,
        default: Any = NOTSET,
        *,
        gt: float | None = None,
        ge: float | None = None,
        le: float | None = None,
    ) -> float:
        raw = self._raw(var, default)
        expected = "a number" + _bounds(gt=gt, ge=ge, le=le)
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise invalid(var, raw, expected) from None
        if not math.isfinite(value) or not _within(value, gt=gt, ge=ge, le=le):
            raise invalid(var, raw, expected)
        return value

    def choice(self, var: str, default: str, choices: Iterable[str]) -> str:
        """One of ``choices`` (compared case-insensitively, returned as listed)."""
        options = list(choices)
        raw = self.str(var, default=default)
        for option in options:
            if raw.strip().lower() == option.lower():
                return option
        raise invalid(var, raw, f"one of {', '.join(options)}")

    def _raw(self, var: str, default: Any) -> Any:
        # cast=str: the text as set (with django-environ's $VAR proxying), or the default untouched.
        return self.get_value(var, cast=str, default=default)


def _within(value: float, *, gt: float | None = None, ge: float | None = None, le: float | None = None) -> bool:
    return (gt is None or value > gt) and (ge is None or value >= ge) and (le is None or value <= le)


def _bounds(*, gt: float | None = None, ge: float | None = None, le: float | None = None) -> str:
    parts = [f"{op} {bound:g}" for op, bound in ((">", gt), (">=", ge), ("<=", le)) if bound is not None]
    return f" {' and '.join(parts)}" if parts else ""
