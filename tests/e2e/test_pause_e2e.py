"""Pause and resume over real HTTP with a real worker (gunicorn, Celery, PostgreSQL, Redis): a running job is
paused within a heartbeat of its next check, its worker takes other work meanwhile, and the resumed job
finishes with every trial exactly once, the trials stored before the pause not run again."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import USERS
from tests.stack import FAST_TIMINGS, Stack, wait_for

pytestmark = pytest.mark.e2e

# About a second per trial: long enough to pause in the middle of the job.
SLOW = {"trials": 8, "epochs": 120, "hidden_min": 64, "hidden_max": 128}
HEARTBEAT = float(FAST_TIMINGS["AUTOML_HEARTBEAT_SECONDS"])


def test_pause_frees_the_worker_and_resume_redoes_no_stored_trial(stack: Stack) -> None:
    client = stack.client("alice", USERS["alice"])
    job = client.submit("mlp_sweep", SLOW)
    wait_for(lambda: sum(t["state"] == "complete" for t in client.trials(job["id"])) >= 2, 90, "two finished trials")

    t0 = time.monotonic()
    r = client.post(f"/api/v1/jobs/{job['id']}/pause/")
    assert r.status_code == 200 and r.json()["pause_requested"], r.text
    paused = client.wait_status(job["id"], {"paused", "succeeded", "failed", "cancelled"}, timeout=10)
    elapsed = time.monotonic() - t0
    # Noticed at the next heartbeat, stopped at the algorithm's next check (between epochs).
    print(f"\npaused {elapsed:.2f} s after the request (heartbeat {HEARTBEAT} s)")
    assert paused["status"] == "paused" and elapsed < 5.0, (paused["status"], elapsed)
    assert paused["finished_at"] is None and not paused["pause_requested"]
    before = {t["number"]: t for t in client.trials(job["id"]) if t["state"] == "complete"}
    assert 2 <= len(before) < SLOW["trials"]

    # The worker is free: another job runs to the end while this one is paused, which stays paused.
    other = client.submit("mlp_sweep", {"trials": 2, "epochs": 3})
    assert client.wait_status(other["id"], {"succeeded", "failed"}, timeout=60)["status"] == "succeeded"
    time.sleep(2 * HEARTBEAT)
    assert client.job(job["id"])["status"] == "paused"
    assert client.get("/api/v1/jobs/?status=paused").json()["count"] >= 1

    r = client.post(f"/api/v1/jobs/{job['id']}/resume/")
    assert r.status_code == 200 and r.json()["status"] in ("queued", "running"), r.text
    done = client.wait_status(job["id"], {"succeeded", "failed", "cancelled", "paused"}, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    after = client.trials(job["id"])
    assert [t["number"] for t in after] == list(range(SLOW["trials"]))  # each trial number exactly once
    by_number = {t["number"]: t for t in after}
    for number, trial in before.items():
        assert by_number[number]["attempt"] == 1 and by_number[number]["started_at"] == trial["started_at"], (
            f"trial {number} was run again"
        )
    assert all(t["attempt"] == 2 for n, t in by_number.items() if n not in before)

    # A finished job cannot be paused; the reason is in the 400.
    r = client.post(f"/api/v1/jobs/{job['id']}/pause/")
    assert r.status_code == 400 and "only queued or running jobs can be paused" in r.json()["status"][0]
