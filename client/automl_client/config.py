"""Where the service and the token come from: ``AUTOML_URL``/``AUTOML_TOKEN``, else the file ``automl login``
writes (``$AUTOML_CONFIG``, default ``~/.config/automl/config.json``; readable by its owner only)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from automl_client.api import ApiError


def config_path() -> Path:
    if os.environ.get("AUTOML_CONFIG"):
        return Path(os.environ["AUTOML_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "automl" / "config.json"


def load() -> tuple[str, str | None]:
    """The service's URL and the token; the environment wins over the file."""
    stored: dict[str, str] = {}
    path = config_path()
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ApiError(f"cannot read {path}: {exc}") from None
    url = os.environ.get("AUTOML_URL") or stored.get("url")
    token = os.environ.get("AUTOML_TOKEN") or stored.get("token")
    if not url:
        raise ApiError(f"no service URL: set AUTOML_URL or run 'automl login' (it writes {path})")
    return url, token


def save(url: str, token: str) -> Path:
    """Write the file with mode 0600 from its creation (its folder 0700): the token is a password."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token}, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o600)  # an older file of that name kept its mode through O_TRUNC
    os.replace(tmp, path)
    return path
