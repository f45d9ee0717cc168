"""The REST API of the AutoML job service, one method per operation (``/api/schema/`` is the contract)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import requests
from urllib3.exceptions import ProtocolError

# Methods that may be sent twice to the same effect (RFC 9110 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

# A job in one of these will not change by itself: a wait ends there.
SETTLED = frozenset({"succeeded", "failed", "cancelled", "paused"})


class ApiError(Exception):
    """A request the service refused or could not answer; ``str()`` is one line fit for a terminal."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def error_message(body: Any) -> str:
    """The server's own words, on one line: ``{"config.trials": ["..."]}`` becomes ``config.trials: ...``."""
    if isinstance(body, dict):
        if set(body) == {"detail"}:
            return str(body["detail"])
        parts = []
        for field, messages in body.items():
            text = " ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
            parts.append(text if field in ("non_field_errors", "detail") else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(body, list):
        return "; ".join(str(m) for m in body)
    return str(body)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _reason(exc: requests.RequestException) -> str:
    """The cause at the bottom of requests' and urllib3's nested messages (``[Errno 111] Connection refused``)."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = _one_line(str(exc))
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return found.group(0) if found else text


def _dropped(exc: requests.ConnectionError) -> bool:
    """The connection broke with the request sent and no answer read (not: refused, unresolvable, timed out)."""
    return bool(exc.args) and isinstance(exc.args[0], ProtocolError)


class Client:
    """A token-authenticated session with one service (``url`` is its root, e.g. ``http://127.0.0.1:8000``)."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    @classmethod
    def from_config(cls, **kwargs: Any) -> Client:
        """The service named by ``AUTOML_URL``/``AUTOML_TOKEN``, else by the file ``automl login`` wrote."""
        from automl_client.config import load

        url, token = load()
        return cls(url, token, **kwargs)

    # --- HTTP -------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``path`` is below the service's root (``/api/v1/...``) or a full URL the service handed out."""
        url = path if path.startswith(("http://", "https://")) else self.url + path
        try:
            response = self._send(method, url, **kwargs)
        except requests.RequestException as exc:
            raise ApiError(f"cannot reach {self.url}: {_reason(exc)}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                message = error_message(body)
            except ValueError:
                body, message = response.text, f"HTTP {response.status_code} {response.reason} from {method} {url}"
            raise ApiError(_one_line(message), response.status_code, body)
        return response

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            # A kept-alive connection the server closed as this request went out: no answer came, so an idempotent
            # request goes again, once, on a new connection (RFC 9112 9.3.1). A POST does not: whether it ran cannot
            # be known, and the error says so.
            if method.upper() not in IDEMPOTENT or not _dropped(exc):
                raise
            return self.session.request(method, url, timeout=self.timeout, **kwargs)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def _pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every row of a paginated list, following ``next``."""
        page: Any = self._json("GET", path, params={"page_size": 1000, **(params or {})})
        while True:
            yield from page["results"]
            if not page.get("next"):
                return
            page = self._json("GET", page["next"])

    # --- the operations -----------------------------------------------------------------------------------
    @staticmethod
    def obtain_token(url: str, username: str, password: str, *, timeout: float = 30.0) -> str:
        """A new API token for ``username`` (``POST /api/v1/auth/token/``)."""
        body = Client(url, timeout=timeout)._json(
            "POST", "/api/v1/auth/token/", json={"username": username, "password": password}
        )
        return str(body["token"])

    def kinds(self) -> list[dict[str, Any]]:
        """Every job kind with its config schema, defaults and examples (at least ``tiny`` and ``default``)."""
        return list(self._pages("/api/v1/job-kinds/"))

    def kind(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/job-kinds/{name}/")

    def submit(
        self,
        kind: str,
        config: dict[str, Any] | None = None,
        *,
        name: str = "",
        dataset: str | int | None = None,
        parent: int | None = None,
        model: int | None = None,
    ) -> dict[str, Any]:
        """Queue a job; the service fills the config's defaults and refuses it whole (a 400) if any of it is bad."""
        body: dict[str, Any] = {"kind": kind, "config": config or {}, "name": name}
        for key, value in (("dataset", dataset), ("parent", parent), ("model", model)):
            if value is not None:
                body[key] = value
        return self._json("POST", "/api/v1/jobs/", json=body)

    def job(self, job_id: int) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/jobs/{job_id}/")

    def jobs(self, **filters: Any) -> list[dict[str, Any]]:
        """Your jobs, newest first (filters: ``kind``, ``status``)."""
        return list(self._pages("/api/v1/jobs/", filters))

    def _act(self, job_id: int, action: str) -> dict[str, Any]:
        return self._json("POST", f"/api/v1/jobs/{job_id}/{action}/")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._act(job_id, "cancel")

    def pause(self, job_id: int) -> dict[str, Any]:
        """A queued job is paused at once, a running one at its next heartbeat (``pause_requested`` until then)."""
        return self._act(job_id, "pause")

    def resume(self, job_id: int) -> dict[str, Any]:
        return self._act(job_id, "resume")

    def rerun(self, job_id: int) -> dict[str, Any]:
        return self._act(job_id, "rerun")

    def trials(self, job_id: int) -> list[dict[str, Any]]:
        return list(self._pages(f"/api/v1/jobs/{job_id}/trials/"))

    def artifacts(self, job_id: int) -> list[dict[str, Any]]:
        return list(self._pages(f"/api/v1/jobs/{job_id}/artifacts/"))

    def wait(
        self,
        job_id: int,
        *,
        interval: float = 1.0,
        timeout: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the job until it settles (succeeded, failed, cancelled or paused); ``on_update`` sees each poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_update is not None:
                on_update(job)
            if job["status"] in SETTLED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise ApiError(f"job {job_id} is still {job['status']} after {timeout:g} s")
            time.sleep(interval)

    def download(self, job_id: int, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Every artifact of the job into ``out_dir`` under its name; each file's sha256 is checked against the
        one the API lists, and a file that does not match is not kept."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return [self.download_artifact(artifact, out) for artifact in self.artifacts(job_id)]

    def download_artifact(self, artifact: dict[str, Any], out_dir: Path) -> Path:
        target = out_dir / _safe_relative(artifact["name"])
        target.parent.mkdir(parents=True, exist_ok=True)
        response = self.request("GET", artifact["download_url"], stream=True)
        digest = hashlib.sha256()
        # Written beside the target and renamed once checked, so a broken download never looks whole.
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    digest.update(chunk)
                    fh.write(chunk)
            if digest.hexdigest() != artifact["sha256"]:
                raise ApiError(
                    f"{artifact['name']}: sha256 {digest.hexdigest()} does not match the API's {artifact['sha256']}"
                )
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target


def _safe_relative(name: str) -> Path:
    """An artifact's name as a path inside the output folder (no absolute path, no ``..``)."""
    parts = [p for p in PurePosixPath(name).parts if p not in ("/", "", ".", "..")]
    if not parts:
        raise ApiError(f"artifact name {name!r} is not a file name")
    return Path(*parts)
