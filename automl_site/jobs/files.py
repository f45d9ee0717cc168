"""Files under MEDIA_ROOT: written atomically and fingerprinted, for uploads and for the files jobs produce."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from django.conf import settings


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def store_file_atomically(src: Path, relative: str) -> tuple[str, int, str]:
    """Copy ``src`` under MEDIA_ROOT at ``relative`` via a temporary name and a rename.

    A crash never leaves a half file under the final name. Returns (relative name, size, sha256).
    """
    dest = Path(settings.MEDIA_ROOT) / relative
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    size = 0
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        for block in iter(lambda: fin.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
            fout.write(block)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dest)
    return relative, size, digest.hexdigest()
