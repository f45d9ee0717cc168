"""The shape of the house (STYLE.md), checked: layers point one way, the web process stays light,
and the code passes the linter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_ALGORITHMS = ("django", "rest_framework", "automl_site", "workers", "frontend", "celery")


def test_algorithms_import_no_web_or_worker_code() -> None:
    offenders = []
    for path in (ROOT / "search_spaces").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN_IN_ALGORITHMS]
    assert not offenders, offenders


def test_the_web_process_starts_without_torch_or_optuna() -> None:
    code = (
        "import json, sys, django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'automl_site.settings';"
        "django.setup();"
        "from django.urls import get_resolver; get_resolver().url_patterns;"
        "import automl_site.wsgi, automl_site.jobs.api.views, frontend.views, automl_site.jobs.admin;"
        "print(json.dumps(sorted(m for m in ('torch', 'optuna', 'hls4ml', 'sklearn') if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "AUTOML_VAR_DIR": str(ROOT / "var" / "arch-test")},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_ruff_is_clean() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-4000:]


def test_worker_processes_limit_torch_threads_before_torch_loads() -> None:
    code = (
        "import workers.celery_app, torch, json;"
        "print(json.dumps([torch.get_num_threads(), __import__('os').environ['OMP_NUM_THREADS']]))"
    )

    def threads(extra: dict[str, str]) -> list:
        env = {"PATH": "/usr/bin:/bin", "AUTOML_VAR_DIR": str(ROOT / "var" / "arch-test"), **extra}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert threads({}) == [1, "1"]
    assert threads({"AUTOML_TORCH_THREADS": "2"}) == [2, "2"]
    assert threads({"AUTOML_TORCH_THREADS": "2", "OMP_NUM_THREADS": "1"})[1] == "1"  # the operator's setting wins
