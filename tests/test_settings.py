"""Settings refuse values they cannot use: each bad one stops ``django.setup()`` with an ImproperlyConfigured that
names the variable, its value and what it should be. Each case runs in a fresh interpreter, as a deployment would."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFUSED = 3
CODE = """
import json, sys, django
from django.core.exceptions import ImproperlyConfigured
try:
    django.setup()
except ImproperlyConfigured as exc:
    print(exc)
    sys.exit(3)
from django.conf import settings
print(json.dumps({"DEBUG": settings.DEBUG, "LOG_LEVEL": settings.LOGGING["root"]["level"], **settings.AUTOML}))
"""


def setup(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "automl_site.settings",
        "AUTOML_VAR_DIR": str(tmp_path / "var"),
        **variables,
    }
    return subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DJANGO_DEBUG", "treu", "a boolean: true/false, 1/0, yes/no or on/off"),
        ("DJANGO_DEBUG", "2", "a boolean"),
        ("AUTOML_MAX_ATTEMPTS", "three", "an integer >= 1"),
        ("AUTOML_MAX_ATTEMPTS", "0", "an integer >= 1"),
        ("AUTOML_HEARTBEAT_SECONDS", "-1", "a number > 0"),
        ("AUTOML_HEARTBEAT_SECONDS", "2s", "a number > 0"),
        ("AUTOML_MAINTENANCE_SECONDS", "nan", "a number > 0"),
        ("AUTOML_MAX_UPLOAD_BYTES", "1.5", "an integer >= 1"),
        ("AUTOML_TORCH_THREADS", "all", "an integer >= 1"),
        ("API_PAGE_SIZE", "", "an integer >= 1"),
        ("LOG_LEVEL", "loud", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("DJANGO_CSRF_TRUSTED_ORIGINS", "automl.example.org", "origins with a scheme"),
    ],
)
def test_a_bad_value_is_refused_with_its_name_and_what_is_expected(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    out = setup(tmp_path, **{variable: value})
    assert out.returncode == REFUSED, out.stderr[-2000:]
    assert out.stdout.startswith(f"{variable}={value!r} is not valid: expected {expected}"), out.stdout


def test_a_stale_limit_within_two_heartbeats_is_refused(tmp_path: Path) -> None:
    out = setup(tmp_path, AUTOML_HEARTBEAT_SECONDS="5", AUTOML_STALE_AFTER_SECONDS="9")
    assert out.returncode == REFUSED, out.stderr[-2000:]
    assert "AUTOML_STALE_AFTER_SECONDS=9.0" in out.stdout and "twice AUTOML_HEARTBEAT_SECONDS (5)" in out.stdout


def test_good_values_are_read_with_their_types(tmp_path: Path) -> None:
    out = setup(
        tmp_path,
        DJANGO_DEBUG="Yes",
        AUTOML_MAX_ATTEMPTS=" 5 ",
        AUTOML_HEARTBEAT_SECONDS="0.5",
        AUTOML_STALE_AFTER_SECONDS="4",
        AUTOML_TORCH_THREADS="2",
        LOG_LEVEL="warning",
    )
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["DEBUG"] is True and got["LOG_LEVEL"] == "WARNING"
    assert (got["MAX_ATTEMPTS"], got["HEARTBEAT_SECONDS"], got["STALE_AFTER_SECONDS"]) == (5, 0.5, 4.0)
    assert got["TORCH_THREADS"] == 2
    assert setup(tmp_path, DJANGO_DEBUG="off").returncode == 0


def test_env_example_lists_every_variable_the_settings_read() -> None:
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', (ROOT / "automl_site" / "settings.py").read_text()))
    listed = set(re.findall(r"^# ([A-Z_]+)=", (ROOT / ".env.example").read_text(), flags=re.M))
    assert read and read <= listed, sorted(read - listed)
