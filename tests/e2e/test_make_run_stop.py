"""A graceful stop of `make run` (honcho over the Procfile, Ctrl-C) hands the running job back to the queue at
once: honcho signals each process group, and the worker's pool process must not die with its job on that signal."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import requests

from tests.stack import VENV_BIN, Stack, free_port, wait_for

pytestmark = pytest.mark.e2e
SLOW = {"trials": 8, "epochs": 120, "hidden_min": 64, "hidden_max": 128}


def test_ctrl_c_of_make_run_requeues_the_running_job_without_the_reaper(tmp_path: Path) -> None:
    stack = Stack(tmp_path, {})  # the embedded default, as `make run` on a fresh machine
    port = free_port()
    try:
        stack.manage("migrate", "--noinput")
        stack.create_user("alice", "alice-pass-1")
        honcho = stack._spawn(
            "honcho",
            [str(VENV_BIN / "honcho"), "--procfile", "Procfile", "start"],
            {"PORT": str(port), "WEB_CONCURRENCY": "1", "WEB_ACCESS_LOG": ""},
        )
        stack.base_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(stack.base_url), 60, "make run's web server")
        client = stack.client("alice", "alice-pass-1")
        job = client.submit("mlp_sweep", SLOW)
        wait_for(lambda: any(t["state"] == "complete" for t in client.trials(job["id"])), 90, "a finished trial")
        t0 = time.monotonic()
        honcho.send_signal(signal.SIGINT)  # what Ctrl-C in make run's terminal does
        honcho.wait(timeout=30)
        stopped_in = time.monotonic() - t0
        row = (
            stack.manage(
                "shell",
                "-c",
                f"from automl_site.jobs.models import Job; j = Job.objects.get(pk={job['id']}); "
                "print(j.status, j.attempts, getattr(j, 'stopped_runs', 0), '|', j.progress_message)",
            )
            .strip()
            .splitlines()[-1]
        )  # after Django's "N objects imported automatically"
        status, attempts, stopped_runs, _ = row.split(maxsplit=3)
        assert status == "queued", (row, stack.log_text("honcho")[-3000:])
        assert int(attempts) - int(stopped_runs) <= 1  # handed back, not lost: the reaper never had to act
        print(f"\nmake run stopped {stopped_in:.2f} s after Ctrl-C, the running job handed back")
        assert stopped_in < 10, stopped_in
    finally:
        stack.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=5).status_code in (200, 503)
    except requests.RequestException:
        return False
