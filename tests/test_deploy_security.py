"""The production profile: TLS settings from the environment, `check --deploy` clean, secrets private."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
import threading
from io import StringIO
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _env(var_dir: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUTOML_", "DATABASE_", "CELERY_"))}
    return {**base, "AUTOML_VAR_DIR": str(var_dir), **extra}


def _check_deploy(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    return out.stdout + out.stderr


def test_check_deploy_is_clean_in_the_production_profile(tmp_path: Path) -> None:
    production = _env(
        tmp_path,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="automl.example.org",
        DJANGO_HTTPS="true",
    )
    report = _check_deploy(production)
    assert "System check identified no issues" in report, report


def test_each_tls_knob_comes_from_the_environment(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, getattr(s, 'SECURE_PROXY_SSL_HEADER', None))"
    )
    env = _env(
        tmp_path,
        DJANGO_SETTINGS_MODULE="automl_site.settings",
        DJANGO_HTTPS="true",
        DJANGO_SECURE_HSTS_SECONDS="60",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SECURE_PROXY_SSL_HEADER="true",
    )
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.stdout.split() == ["False", "60", "True", "True", "('HTTP_X_FORWARDED_PROTO',", "'https')"], out


def test_the_generated_secret_key_is_private_from_its_creation(tmp_path: Path) -> None:
    """The key file is created 0600 (os.open with the mode), not written world-readable and chmod-ed after."""
    seen: list[int] = []
    key = tmp_path / "secret_key"
    stop = threading.Event()

    def watch() -> None:  # what another user could have seen while the file was being written
        while not stop.is_set():
            try:
                seen.append(stat.S_IMODE(key.stat().st_mode))
            except FileNotFoundError:
                pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        subprocess.run(
            [sys.executable, "-c", "import django; django.setup()"],
            cwd=ROOT,
            env=_env(tmp_path, DJANGO_SETTINGS_MODULE="automl_site.settings"),
            check=True,
        )
    finally:
        stop.set()
        watcher.join()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert set(seen) <= {0o600}


@pytest.mark.django_db
def test_bootstrap_prints_where_the_admin_password_is_never_the_password(settings, tmp_path: Path) -> None:  # noqa: ANN001
    from django.core.management import call_command

    settings.VAR_DIR = tmp_path
    for _ in range(2):  # the first run creates the account, every later `make run` runs it again
        out = StringIO()
        call_command("bootstrap", stdout=out)
        credentials = (tmp_path / "admin-credentials.txt").read_text()
        password = credentials.split("password: ")[1].strip()
        assert password not in out.getvalue()
        assert str(tmp_path / "admin-credentials.txt") in out.getvalue()
    assert stat.S_IMODE((tmp_path / "admin-credentials.txt").stat().st_mode) == 0o600
