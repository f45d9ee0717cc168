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
# search_spaces/ modules that may import every kind: the registry and the command line that runs any of them.
SEES_ALL_KINDS = ("registry.py", "cli.py", "__main__.py")


def imports_of(path: Path, root: Path) -> list[str]:
    """Every module ``path`` imports (relative imports resolved against its package under ``root``)."""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.append(module)
            if "." not in module:  # ``from search_spaces import adc`` imports the package adc
                names += [f"{module}.{a.name}" for a in node.names]
    return names


def _py(root: Path, folder: str) -> list[Path]:
    return sorted((root / folder).rglob("*.py"))


def algorithm_layer_offenders(root: Path) -> list[str]:
    """search_spaces/ imports no web or worker code."""
    return [
        f"{p.relative_to(root)}: {n}"
        for p in _py(root, "search_spaces")
        for n in imports_of(p, root)
        if n.split(".")[0] in FORBIDDEN_IN_ALGORITHMS
    ]


def web_imports_worker_offenders(root: Path) -> list[str]:
    """automl_site/ and frontend/ import nothing from workers/ (they queue jobs by task name)."""
    return [
        f"{p.relative_to(root)}: {n}"
        for folder in ("automl_site", "frontend")
        for p in _py(root, folder)
        for n in imports_of(p, root)
        if n.split(".")[0] == "workers"
    ]


def kind_package_offenders(root: Path) -> list[str]:
    """The kit imports no kind package, and no kind package (or kind module) imports another's."""
    ss = root / "search_spaces"
    packages = {d.name for d in ss.iterdir() if (d / "__init__.py").exists() and d.name != "kit"}
    offenders = []
    for p in _py(root, "search_spaces"):
        parts = p.relative_to(ss).parts
        if len(parts) == 1 and parts[0] in SEES_ALL_KINDS:
            continue
        used = {n.split(".")[1] for n in imports_of(p, root) if n.startswith("search_spaces.") and n.count(".") >= 1}
        used &= packages
        if parts[0] == "kit":
            offenders += [f"{p.relative_to(root)}: the kit imports kind package {u}" for u in sorted(used)]
        elif len(parts) > 1:  # inside kind package parts[0]
            offenders += [f"{p.relative_to(root)}: imports kind package {u}" for u in sorted(used - {parts[0]})]
        elif len(used) > 1:  # a kind module drives one package
            offenders.append(f"{p.relative_to(root)}: imports kind packages {', '.join(sorted(used))}")
    return offenders


def frontend_kind_name_offenders(root: Path, kinds: list[str]) -> list[str]:
    """The pages are generic: no template, script or view names a job kind (they read the kinds from the API)."""
    offenders = []
    for p in sorted((root / "frontend").rglob("*")):
        if p.is_file() and p.suffix in (".py", ".js", ".html", ".css"):
            text = p.read_text()
            offenders += [f"{p.relative_to(root)}: {k}" for k in kinds if k in text]
    return offenders


def test_algorithms_import_no_web_or_worker_code() -> None:
    assert not algorithm_layer_offenders(ROOT)


def test_the_web_app_imports_no_worker_code() -> None:
    assert not web_imports_worker_offenders(ROOT)


def test_the_kit_and_the_kind_packages_import_no_other_kind_package() -> None:
    assert not kind_package_offenders(ROOT)


def test_the_frontend_names_no_kind() -> None:
    from search_spaces import registry

    assert not frontend_kind_name_offenders(ROOT, sorted(registry.KINDS))


def test_each_check_fails_on_its_forbidden_import(tmp_path: Path) -> None:
    """The checks above are not vacuous: a tree with one forbidden import of each sort is caught, each by its rule."""
    files = {
        "search_spaces/__init__.py": "",
        "search_spaces/kit/__init__.py": "",
        "search_spaces/kit/models.py": "from search_spaces.nas import network\n",
        "search_spaces/nas/__init__.py": "",
        "search_spaces/nas/search.py": "from django.db import models\nfrom ..adc import graph\n",
        "search_spaces/adc/__init__.py": "",
        "search_spaces/adc/graph.py": "import search_spaces.kit.models\n",
        "search_spaces/both_kinds.py": "from search_spaces.adc import graph\nfrom search_spaces.nas import search\n",
        "search_spaces/registry.py": "from search_spaces.adc import graph\nfrom search_spaces.nas import search\n",
        "automl_site/__init__.py": "",
        "automl_site/services.py": "def f():\n    from workers.celery_app import app\n",
        "frontend/static/app.js": "if (kind === 'hls4ml_sweep') {}\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert algorithm_layer_offenders(tmp_path) == ["search_spaces/nas/search.py: django.db"]
    assert web_imports_worker_offenders(tmp_path) == ["automl_site/services.py: workers.celery_app"]
    assert kind_package_offenders(tmp_path) == [
        "search_spaces/both_kinds.py: imports kind packages adc, nas",
        "search_spaces/kit/models.py: the kit imports kind package nas",
        "search_spaces/nas/search.py: imports kind package adc",
    ]
    assert frontend_kind_name_offenders(tmp_path, ["hls4ml_sweep", "mlp_sweep"]) == [
        "frontend/static/app.js: hls4ml_sweep"
    ]


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


def test_ruff_format_is_clean() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "format", "--check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-4000:]


def test_mypy_is_clean_on_search_spaces() -> None:
    mypy = Path(sys.executable).parent / "mypy"
    assert mypy.exists(), f"{mypy} is missing: mypy is pinned in requirements-dev.txt (make deps-dev)"
    out = subprocess.run([str(mypy), "search_spaces"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]


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
