"""Real processes for end-to-end tests: gunicorn, Celery workers and the maintenance loop.

Each process runs in its own session so a test can ``kill -9`` a worker with all its children, as a
machine that dies would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
VENV_BIN = Path(sys.executable).parent

# Short timings so faults are noticed in seconds, not minutes.
FAST_TIMINGS = {
    "AUTOML_HEARTBEAT_SECONDS": "0.5",
    "AUTOML_STALE_AFTER_SECONDS": "3",
    "AUTOML_MAINTENANCE_SECONDS": "1",
    "AUTOML_REQUEUE_AFTER_SECONDS": "4",
    "AUTOML_MAX_ATTEMPTS": "3",
    # Suites make many uploads and logins from one address; the throttles have their own tests.
    "AUTOML_UPLOAD_RATE": "100000/hour",
    "AUTOML_LOGIN_FAILURES": "100000/minute",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Stack:
    def __init__(self, var_dir: Path, env: dict[str, str]) -> None:
        self.var_dir = var_dir
        var_dir.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_", "AUTOML_"))}
        base.pop("DJANGO_SETTINGS_MODULE", None)
        self.env = {**base, "AUTOML_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1", **FAST_TIMINGS, **env}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.base_url = ""

    # --- processes ------------------------------------------------------------------------------
    def manage(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.var_dir / f"{name}.log"
        self.logs[name] = log
        fh = open(log, "ab")
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        fh.close()
        self.procs[name] = proc
        return proc

    def log_text(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace") if name in self.logs else ""

    def start_web(self, name: str = "web", extra_env: dict[str, str] | None = None) -> str:
        """Start gunicorn; the first one's URL becomes ``base_url``. Returns this one's URL."""
        port = free_port()
        self._spawn(
            name,
            [str(VENV_BIN / "gunicorn"), "--config", "deploy/gunicorn.conf.py"],
            {"PORT": str(port), "WEB_CONCURRENCY": "2", "WEB_ACCESS_LOG": "", **(extra_env or {})},
        )
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            self._check_alive(name)
            try:
                return requests.get(f"{url}/healthz", timeout=5).status_code in (200, 503)
            except requests.RequestException:
                return False

        wait_for(answers, 60, f"the web server {name}")
        if name == "web":
            self.base_url = url
        return url

    def start_worker(self, name: str = "worker", concurrency: int = 1) -> None:
        self._spawn(
            name,
            [
                str(VENV_BIN / "celery"),
                "-A",
                "workers.celery_app",
                "worker",
                "--loglevel=INFO",
                f"--concurrency={concurrency}",
                f"--hostname={name}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            {"AUTOML_HOSTNAME": name},
        )
        wait_for(lambda: self._check_alive(name) or " ready." in self.log_text(name), 60, f"{name} ready")

    def start_maintenance(self) -> None:
        self._spawn("maintenance", [sys.executable, "manage.py", "run_maintenance"])

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_text(name)[-4000:]}")

    def kill(self, name: str, sig: int = signal.SIGKILL, *, group: bool = True) -> None:
        """Signal the whole process group (a prefork worker and its pool children, as a machine that dies),
        or with ``group=False`` the main process only (as systemd's KillMode=mixed or a supervisor does)."""
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)

    def stop(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self.procs.pop(name, None)

    # --- users and HTTP ---------------------------------------------------------------------------
    def create_user(self, username: str, password: str, staff: bool = False) -> None:
        code = (
            "from django.contrib.auth import get_user_model as g; U = g(); "
            f"u = U.objects.filter(username={username!r}).first() or U(username={username!r}); "
            f"u.set_password({password!r}); u.is_staff = u.is_superuser = {staff!r}; u.save()"
        )
        self.manage("shell", "-c", code)

    def client(self, username: str, password: str) -> ApiClient:
        return ApiClient(self.base_url, username, password)


class ApiClient:
    """A REST automation user: token auth over real HTTP."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        r = self.session.post(
            f"{base_url}/api/v1/auth/token/", json={"username": username, "password": password}, timeout=10
        )
        r.raise_for_status()
        self.session.headers["Authorization"] = f"Token {r.json()['token']}"

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.session.post(self.base_url + path, timeout=30, **kw)

    def submit(self, kind: str, config: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        r = self.post("/api/v1/jobs/", json={"kind": kind, "config": config or {}, **fields})
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: int) -> dict[str, Any]:
        r = self.get(f"/api/v1/jobs/{job_id}/")
        r.raise_for_status()
        return r.json()

    def wait_status(self, job_id: int, statuses: set[str] | str, timeout: float = 120) -> dict[str, Any]:
        wanted = {statuses} if isinstance(statuses, str) else statuses
        return wait_for(
            lambda: (j := self.job(job_id))["status"] in wanted and j, timeout, f"job {job_id} to reach {wanted}"
        )

    def trials(self, job_id: int) -> list[dict[str, Any]]:
        """Every trial of the job, following ``next`` (the API caps a trial page at 500)."""
        rows: list[dict[str, Any]] = []
        url: str | None = f"{self.base_url}/api/v1/jobs/{job_id}/trials/?page_size=500"
        while url:
            r = self.session.get(url, timeout=30)
            r.raise_for_status()
            rows += r.json()["results"]
            url = r.json()["next"]
        return rows


@contextmanager
def scratch_pg_stack(var_dir: Path, redis_url: str, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A migrated stack on a scratch PostgreSQL database and a flushed Redis database; its processes are
    stopped and the database dropped afterwards. Start the web server and workers you need."""
    import psycopg
    import redis

    name = f"automl_scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(redis_url).flushdb()
    stack = Stack(
        var_dir,
        {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
            "CELERY_BROKER_URL": redis_url,
            **(extra_env or {}),
        },
    )
    try:
        stack.manage("migrate", "--noinput")
        yield stack
    finally:
        stack.stop()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
