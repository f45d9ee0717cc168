"""One checkpoint format for every kind: a format tag, torch state (state dicts, tensors) and JSON meta.

A kind packs what it must keep between attempts with :func:`pack` and hands the bytes to
``reporter.save_checkpoint``; on a resume :func:`unpack` reads ``reporter.load_checkpoint()`` back. The bytes
are one ``torch.save`` of ``{"format", "state", "meta"}``: ``state`` holds tensors and containers of them
(read with ``torch.load(weights_only=True)``, so a checkpoint can never run code), ``meta`` everything else as
one JSON string (history rows, settings, the best so far), so it comes back exactly as it went in, NaN
included. The format tag (``"<kind>/<version>"``) keeps one kind from reading another's, or an older layout.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any


class CheckpointError(ValueError):
    """The bytes are not a checkpoint of the expected format."""


def pack(format: str, *, state: Mapping[str, Any] | None = None, meta: Any = None) -> bytes:
    """``format``-tagged checkpoint bytes of ``state`` (tensors, state dicts, their containers) and JSON ``meta``."""
    import torch

    buffer = io.BytesIO()
    torch.save({"format": format, "state": dict(state or {}), "meta": json.dumps(meta)}, buffer)
    return buffer.getvalue()


def unpack(blob: bytes, format: str) -> tuple[dict[str, Any], Any]:
    """``(state, meta)`` of bytes written by :func:`pack` with ``format``; :class:`CheckpointError` otherwise.

    Tensors come back on the CPU."""
    import torch

    try:
        payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds on bytes that are not its own
        raise CheckpointError(f"not a {format} checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != format:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise CheckpointError(f"not a {format} checkpoint" + (f" (it is {found})" if found else ""))
    return payload["state"], json.loads(payload["meta"])


def to_bytes(obj: Any) -> bytes:
    """``torch.save`` bytes of ``obj`` (a state dict sent between processes or kept in a checkpoint)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes) -> Any:
    """What :func:`to_bytes` wrote, on the CPU, read with ``weights_only=True``."""
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def bytes_tensor(data: bytes) -> Any:
    """``data`` as a uint8 tensor, so opaque bytes (another process's ``torch.save``) fit a checkpoint's state."""
    import torch

    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def tensor_bytes(tensor: Any) -> bytes:
    """The bytes :func:`bytes_tensor` wrapped."""
    return bytes(tensor.numpy().tobytes())
