"""Hostile upload files, made in memory without ever holding what they claim to hold.

Each is small on the wire; what it declares or inflates to is not. The service and kit tests, and the schema
fuzzer's multipart bodies, use them."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np


def npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """A version 1.0 .npy header declaring ``shape`` of ``dtype`` (no data follows)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _labels(n: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(n) % 2)
    return buf.getvalue()


def zero_bomb_npz(x_bytes: int = 300 * 1024 * 1024, rows: int = 1000) -> bytes:
    """An .npz whose ``x`` inflates to ``x_bytes`` of zeros (about a thousandth of that on the wire)."""
    cols = x_bytes // 8 // rows
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(npy_header((rows, cols)))
            block = bytes(1 << 20)
            left = rows * cols * 8
            while left:
                member.write(block[: min(left, len(block))])
                left -= min(left, len(block))
        archive.writestr("y.npy", _labels(rows))
    return out.getvalue()


def huge_header_npz(shape: tuple[int, ...] = (4 * 10**12,)) -> bytes:
    """An .npz whose ``x`` header declares ``shape`` (default 29 TiB of float64) and holds no data."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("x.npy", npy_header(shape))
        archive.writestr("y.npy", _labels(20))
    return out.getvalue()


def good_npz(rows: int = 40, features: int = 4, compressed: bool = True) -> bytes:
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(out, x=rng.normal(size=(rows, features)).astype(np.float32), y=np.arange(rows) % 2)
    return out.getvalue()


def _member_offsets(data: bytes, name: str) -> tuple[int, int, zipfile.ZipInfo]:
    """(start of the member's data, its local header's offset, its info)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    local = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[local + 26 : local + 30])
    return local + 30 + name_len + extra_len, local, info


def bad_crc_zip(data: bytes | None = None, name: str = "x.npy") -> bytes:
    """``data`` (default a good .npz) with ``name``'s CRC-32 wrong in both headers."""
    data = bytearray(data or good_npz(compressed=False))
    _, local, info = _member_offsets(bytes(data), name)
    wrong = struct.pack("<I", (info.CRC ^ 0xFFFFFFFF) & 0xFFFFFFFF)
    data[local + 14 : local + 18] = wrong
    for start in _central_entries(bytes(data)):
        if bytes(data[start + 46 : start + 46 + len(name)]) == name.encode():
            data[start + 16 : start + 20] = wrong
    return bytes(data)


def _central_entries(data: bytes) -> list[int]:
    starts, at = [], data.find(b"PK\x01\x02")
    while at != -1:
        starts.append(at)
        at = data.find(b"PK\x01\x02", at + 4)
    return starts


def false_size_zip(data: bytes | None = None, name: str = "x.npy", factor: int = 1000) -> bytes:
    """``data`` with ``name``'s uncompressed size in the central directory multiplied by ``factor`` (a lie)."""
    data = bytearray(data or good_npz())
    for start in _central_entries(bytes(data)):
        if bytes(data[start + 46 : start + 46 + len(name)]) == name.encode():
            (size,) = struct.unpack("<I", data[start + 24 : start + 28])
            data[start + 24 : start + 28] = struct.pack("<I", min(size * factor, 0xFFFFFFFE))
    return bytes(data)


def corrupt_deflate_zip(data: bytes | None = None, name: str = "x.npy") -> bytes:
    """``data`` (default a compressed .npz) whose ``name`` member is not a valid deflate stream."""
    data = bytearray(data or good_npz(rows=400, features=16))
    start, _, _ = _member_offsets(bytes(data), name)
    data[start] = 0xFF  # the first block's type bits say 11: no such deflate block type
    return bytes(data)


def zip_of(members: dict[str, bytes], compressed: bool = True) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def state_dict_bytes(arch_shapes: dict[str, tuple[int, ...]] | None = None) -> bytes:
    """A tiny torch ``state_dict`` (1 KB): whatever architecture is named beside it, these weights are small."""
    import torch

    buf = io.BytesIO()
    torch.save({k: torch.zeros(v) for k, v in (arch_shapes or {"fc1.weight": (2, 2)}).items()}, buf)
    return buf.getvalue()
