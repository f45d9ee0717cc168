"""The `automl` command line (client/, installed into the venv by `make deps-dev`) against the real server:
gunicorn, a Celery worker, PostgreSQL and Redis. Tiny configs throughout (the kinds' own `tiny` examples)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests

from search_spaces import registry
from tests.e2e.conftest import USERS
from tests.stack import VENV_BIN, Stack, wait_for

pytestmark = pytest.mark.e2e

AUTOML = str(VENV_BIN / "automl")


class Cli:
    """Runs `automl` as a user would, with its own config file and nothing of the server's environment."""

    def __init__(self, stack: Stack, home: Path) -> None:
        self.stack = stack
        self.config = home / "automl" / "config.json"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOML_", "DJANGO_", "DATABASE_"))}
        self.env = {**base, "HOME": str(home), "AUTOML_CONFIG": str(self.config)}

    def __call__(self, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AUTOML, *args], input=stdin, capture_output=True, text=True, timeout=300, env={**self.env, **(env or {})}
        )

    def ok(self, *args: str, **kw: object) -> str:
        out = self(*args, **kw)  # type: ignore[arg-type]
        assert out.returncode == 0, f"automl {' '.join(args)} exited {out.returncode}: {out.stderr}"
        return out.stdout


@pytest.fixture
def cli(stack: Stack, tmp_path: Path) -> Cli:
    cli = Cli(stack, tmp_path)
    cli.ok("login", "--url", stack.base_url, "-u", "alice", "--password-stdin", stdin=USERS["alice"] + "\n")
    return cli


def _tiny(kind: str) -> str:
    return json.dumps(registry.get_kind(kind).tiny_config)


def test_login_writes_a_file_only_its_owner_reads(cli: Cli) -> None:
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    stored = json.loads(cli.config.read_text())
    assert stored["url"] == cli.stack.base_url and stored["token"]
    assert "mlp_sweep" in cli.ok("kinds").split()
    kinds = json.loads(cli.ok("kinds", "--json"))
    assert {k["name"] for k in kinds} == set(registry.KINDS)


def test_submit_waits_with_a_progress_bar_then_trials_and_a_verified_download(cli: Cli, tmp_path: Path) -> None:
    out = cli("submit", "mlp_sweep", "--config", '{"trials": 3, "epochs": 5}', "--name", "from-cli", "--wait")
    assert out.returncode == 0, out.stderr
    job_id = int(out.stdout.strip())
    assert "[" in out.stderr and "100%" in out.stderr and "succeeded" in out.stderr  # the bar, to its end
    job = json.loads(cli.ok("status", str(job_id)))
    assert job["status"] == "succeeded" and job["name"] == "from-cli" and job["config"]["trials"] == 3

    trials = json.loads(cli.ok("trials", str(job_id), "--format", "json"))
    assert [t["number"] for t in trials] == [0, 1, 2]
    rows = list(csv.DictReader(io.StringIO(cli.ok("trials", str(job_id), "--format", "csv"))))
    assert [r["number"] for r in rows] == ["0", "1", "2"] and all(r["params.hidden"] for r in rows)
    table = cli.ok("trials", str(job_id)).splitlines()
    assert table[0].split()[:3] == ["number", "state", "attempt"] and len(table) == 4

    paths = [Path(p) for p in cli.ok("download", str(job_id), "--out", str(tmp_path / "out")).split()]
    api = cli.stack.client("alice", USERS["alice"])
    listed = api.get(f"/api/v1/jobs/{job_id}/artifacts/?page_size=1000").json()["results"]
    assert sorted(p.name for p in paths) == sorted(a["name"] for a in listed) and len(paths) >= 2
    for artifact in listed:
        body = (tmp_path / "out" / artifact["name"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == artifact["sha256"]


def test_a_chain_of_two_kinds_each_the_parent_of_the_next(cli: Cli, tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "dataset: jets_synthetic\n"
        "steps:\n"
        "  - kind: granularity_sweep\n"
        "    example: tiny\n"
        "  - kind: hls4ml_sweep\n"
        f"    config: {_tiny('hls4ml_sweep')}\n"
        "    name: fpga\n"
    )
    out = cli("chain", str(pipeline))
    assert out.returncode == 0, out.stderr
    pruned_id, fpga_id = (int(line) for line in out.stdout.split())
    api = cli.stack.client("alice", USERS["alice"])
    pruned, fpga = api.job(pruned_id), api.job(fpga_id)
    assert pruned["kind"] == "granularity_sweep" and pruned["status"] == "succeeded"
    tiny = registry.get_kind("granularity_sweep").tiny_config
    assert {k: pruned["config"][k] for k in tiny} == tiny  # the kind's tiny example, filled with the defaults
    assert fpga["kind"] == "hls4ml_sweep" and fpga["status"] == "succeeded" and fpga["name"] == "fpga"
    assert fpga["parent"] == pruned_id and fpga["dataset"] == pruned["dataset"]
    assert "step 1/2" in out.stderr and "step 2/2" in out.stderr


def test_pause_then_resume_from_the_command_line_redoes_no_trial(cli: Cli) -> None:
    trials = 6
    config = json.dumps({"trials": trials, "epochs": 120, "hidden_min": 64, "hidden_max": 128})
    job_id = int(cli.ok("submit", "mlp_sweep", "--config", config).strip())
    api = cli.stack.client("alice", USERS["alice"])
    wait_for(lambda: sum(t["state"] == "complete" for t in api.trials(job_id)) >= 2, 90, "two finished trials")
    t0 = time.monotonic()
    assert cli.ok("pause", str(job_id), "--wait", "--interval", "0.2").strip() == f"job {job_id}: paused"
    assert time.monotonic() - t0 < 5.0
    before = [t for t in json.loads(cli.ok("trials", str(job_id), "--format", "json")) if t["state"] == "complete"]
    assert 2 <= len(before) < trials

    out = cli("resume", str(job_id), "--wait", "--interval", "0.5")
    assert out.returncode == 0 and out.stdout.strip() == f"job {job_id}: succeeded", out.stderr
    after = json.loads(cli.ok("trials", str(job_id), "--format", "json"))
    assert [t["number"] for t in after] == list(range(trials))
    assert [t["attempt"] for t in after[: len(before)]] == [1] * len(before)  # the stored ones were not rerun
    assert {t["attempt"] for t in after[len(before) :]} == {2}


def test_errors_are_one_line_with_the_servers_message_and_a_nonzero_exit(cli: Cli) -> None:
    api = cli.stack.client("alice", USERS["alice"])
    url = cli.stack.base_url

    refused = requests.get(f"{url}/api/v1/job-kinds/", headers={"Authorization": "Token wrong"}, timeout=10)
    out = cli("kinds", env={"AUTOML_TOKEN": "wrong"})
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip() == f"automl: error: {refused.json()['detail']}"

    body = api.post("/api/v1/jobs/", json={"kind": "mlp_sweep", "config": {"trials": 0}}).json()
    out = cli("submit", "mlp_sweep", "--config", '{"trials": 0}')
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.strip() == f"automl: error: config.trials: {' '.join(body['config.trials'])}"

    out = cli("submit", "no_such_kind")
    assert out.returncode == 1 and "unknown kind 'no_such_kind'" in out.stderr

    out = cli("submit", "mlp_sweep", "--config", "{not json")
    assert out.returncode == 1 and "--config: not JSON" in out.stderr

    finished = api.submit("mlp_sweep", {"trials": 2, "epochs": 2})
    api.wait_status(finished["id"], "succeeded", timeout=60)
    out = cli("pause", str(finished["id"]))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"automl: error: status: job {finished['id']} is succeeded; only queued or running jobs can be paused"
    )

    out = cli("status", "1", env={"AUTOML_URL": "http://127.0.0.1:9"})
    assert out.returncode == 1 and out.stderr.startswith("automl: error: cannot reach http://127.0.0.1:9")


def test_submit_from_a_file_with_a_dataset_and_a_parent_then_cancel(cli: Cli, tmp_path: Path) -> None:
    api = cli.stack.client("alice", USERS["alice"])
    config = tmp_path / "granularity.json"
    config.write_text(_tiny("granularity_sweep"))
    parent_id = int(
        cli.ok("submit", "granularity_sweep", "--config", f"@{config}", "--dataset", "jets_synthetic", "--wait").strip()
    )
    parent = api.job(parent_id)
    assert parent["status"] == "succeeded" and parent["config"]["sparsity_grid"] == [0.5, 0.8]  # from the file
    # A child from the parent's model, long enough to be cancelled while it runs.
    child_id = int(
        cli.ok("submit", "hls4ml_sweep", "--parent", str(parent_id), "--config", '{"n_trials": 200}').strip()
    )
    child = api.job(child_id)
    assert child["parent"] == parent_id and child["dataset"] == parent["dataset"]
    assert cli.ok("cancel", str(child_id)).strip().startswith(f"job {child_id}")
    assert api.wait_status(child_id, {"cancelled", "failed", "succeeded"}, timeout=60)["status"] == "cancelled"
    out = cli("cancel", str(child_id))  # already final: the server's refusal, one line, non-zero
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1 and "cancelled" in out.stderr
