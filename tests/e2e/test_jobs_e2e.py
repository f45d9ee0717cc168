"""The service end to end: real HTTP to gunicorn, a real Celery worker, PostgreSQL and Redis."""

from __future__ import annotations

import hashlib
import time

import pytest
import redis

from tests.e2e.conftest import REDIS_URL, USERS
from tests.stack import ApiClient, Stack, wait_for

pytestmark = pytest.mark.e2e

# Long enough per trial (about a second) that a test can act in the middle of a job.
SLOW = {"trials": 8, "epochs": 120, "hidden_min": 64, "hidden_max": 128}


def _alice(stack: Stack) -> ApiClient:
    return stack.client("alice", USERS["alice"])


def _assert_job_stored(client: ApiClient, job: dict, trials: int) -> None:
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0
    assert job["started_at"] and job["finished_at"] and job["worker_host"]
    stored = client.trials(job["id"])
    assert [t["number"] for t in stored] == list(range(trials))
    assert all(t["state"] == "complete" and 0.0 <= t["values"][0] <= 1.0 for t in stored)
    metrics = client.get(f"/api/v1/jobs/{job['id']}/metrics/").json()
    assert metrics["count"] > 0 and {p["name"] for p in metrics["results"]} >= {"train_loss", "val_accuracy"}
    # polling with ?since= returns only newer points
    assert client.get(f"/api/v1/jobs/{job['id']}/metrics/?since={metrics['last_id']}").json()["count"] == 0
    artifacts = client.get(f"/api/v1/jobs/{job['id']}/artifacts/").json()["results"]
    assert {a["name"] for a in artifacts} >= {"best_mlp.npz", "summary.json"}
    for artifact in artifacts:
        body = client.get(artifact["download_url"]).content
        assert len(body) == artifact["size_bytes"]
        assert hashlib.sha256(body).hexdigest() == artifact["sha256"]


def test_submit_runs_to_success_on_postgres_and_redis(stack: Stack) -> None:
    client = _alice(stack)
    job = client.submit("mlp_sweep", {"trials": 3, "epochs": 15}, name="e2e")
    assert job["status"] == "queued" and job["config"]["batch_size"] == 32  # defaults filled
    job = client.wait_status(job["id"], {"succeeded", "failed"}, timeout=90)
    _assert_job_stored(client, job, trials=3)
    assert job["result"]["test_accuracy"] > 0.8  # a real MLP on real digits


def test_submit_runs_to_success_on_the_embedded_default(embedded_stack: Stack) -> None:
    assert embedded_stack.env.get("DATABASE_URL") is None
    client = _alice(embedded_stack)
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "database": "ok", "broker": "ok"}
    job = client.submit("mlp_sweep", {"trials": 3, "epochs": 15})
    job = client.wait_status(job["id"], {"succeeded", "failed"}, timeout=120)
    _assert_job_stored(client, job, trials=3)
    assert (embedded_stack.var_dir / "db.sqlite3").exists() and (embedded_stack.var_dir / "broker.sqlite3").exists()


def test_cancel_stops_a_running_job_within_5_s_and_the_worker_takes_the_next(stack: Stack) -> None:
    client = _alice(stack)
    long_job = client.submit("mlp_sweep", {**SLOW, "trials": 50})
    client.wait_status(long_job["id"], "running", timeout=60)
    wait_for(lambda: client.trials(long_job["id"]), 60, "a first trial")
    next_job = client.submit("mlp_sweep", {"trials": 3, "epochs": 5})
    t0 = time.monotonic()
    r = client.post(f"/api/v1/jobs/{long_job['id']}/cancel/")
    assert r.status_code == 200, r.text
    cancelled = client.wait_status(long_job["id"], {"cancelled", "succeeded", "failed"}, timeout=10)
    elapsed = time.monotonic() - t0
    assert cancelled["status"] == "cancelled" and elapsed < 5.0, (cancelled["status"], elapsed)
    assert len(client.trials(long_job["id"])) < 50
    assert client.wait_status(next_job["id"], {"succeeded", "failed"}, timeout=60)["status"] == "succeeded"
    # a finished job cannot be cancelled again
    assert client.post(f"/api/v1/jobs/{long_job['id']}/cancel/").status_code == 400


def test_cancel_of_a_queued_job_is_immediate(stack: Stack) -> None:
    client = _alice(stack)
    blocker = client.submit("mlp_sweep", {**SLOW, "trials": 3})
    queued = client.submit("mlp_sweep", {"trials": 3, "epochs": 5})
    r = client.post(f"/api/v1/jobs/{queued['id']}/cancel/")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    client.wait_status(blocker["id"], "succeeded", timeout=90)
    time.sleep(1)
    assert client.job(queued["id"])["status"] == "cancelled" and not client.trials(queued["id"])


def test_kill_9_of_the_worker_resumes_from_checkpoint_without_redoing_trials(stack: Stack) -> None:
    client = _alice(stack)
    job = client.submit("mlp_sweep", SLOW)
    wait_for(
        lambda: len([t for t in client.trials(job["id"]) if t["state"] == "complete"]) >= 2, 90, "two finished trials"
    )
    before = {t["number"]: t for t in client.trials(job["id"]) if t["state"] == "complete"}
    stack.kill("worker")  # SIGKILL to the worker and its pool child: no chance to clean up
    assert client.job(job["id"])["status"] == "running"  # orphaned, until the heartbeat goes stale
    stack.start_worker("worker")
    done = client.wait_status(job["id"], {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    after = {t["number"]: t for t in client.trials(job["id"])}
    assert sorted(after) == list(range(SLOW["trials"]))
    for number, trial in before.items():
        assert after[number]["attempt"] == 1 and after[number]["started_at"] == trial["started_at"], (
            f"trial {number} was run again"
        )
    assert any(t["attempt"] == 2 for t in after.values())
    assert done["result"]["best_val_accuracy"] >= max(t["values"][0] for t in before.values())


def test_jobs_lost_by_the_broker_are_reenqueued_and_all_finish(stack: Stack) -> None:
    client = _alice(stack)
    stack.kill("worker", 15)  # a clean stop: no worker consumes while the broker forgets
    jobs = [client.submit("mlp_sweep", {"trials": 3, "epochs": 5}) for _ in range(3)]
    assert redis.Redis.from_url(REDIS_URL).llen("celery") >= 3
    redis.Redis.from_url(REDIS_URL).flushdb()
    stack.start_worker("worker")
    for job in jobs:
        assert client.wait_status(job["id"], {"succeeded", "failed"}, timeout=90)["status"] == "succeeded"


def test_rerun_makes_a_new_job_with_the_same_config(stack: Stack) -> None:
    client = _alice(stack)
    job = client.submit("mlp_sweep", {"trials": 3, "epochs": 4}, name="original")
    client.wait_status(job["id"], "succeeded", timeout=60)
    r = client.post(f"/api/v1/jobs/{job['id']}/rerun/")
    assert r.status_code == 201
    again = r.json()
    assert again["id"] != job["id"] and again["config"] == client.job(job["id"])["config"]
    assert client.wait_status(again["id"], "succeeded", timeout=60)["result"] == client.job(job["id"])["result"]


def test_a_web_restart_while_jobs_run_loses_and_duplicates_nothing(stack: Stack) -> None:
    client = _alice(stack)
    jobs = [client.submit("mlp_sweep", {"trials": 3, "epochs": 30}) for _ in range(3)]
    stack.kill("web", 15)
    stack.start_web()
    client = _alice(stack)
    for job in jobs:
        done = client.wait_status(job["id"], {"succeeded", "failed"}, timeout=90)
        assert done["status"] == "succeeded" and done["attempts"] == 1
        assert [t["number"] for t in client.trials(job["id"])] == [0, 1, 2]


def test_a_submit_while_the_broker_is_unreachable_is_accepted_and_runs_later(stack: Stack) -> None:
    # A second web server whose broker is unreachable (a closed port), on the same database.
    url = stack.start_web("web-no-broker", {"CELERY_BROKER_URL": "redis://127.0.0.1:1/0"})
    try:
        client = ApiClient(url, "alice", USERS["alice"])
        assert client.get("/healthz").status_code == 503
        job = client.submit("mlp_sweep", {"trials": 3, "epochs": 5})
        assert client.job(job["id"])["status"] == "queued"
        # the maintenance loop (on the real broker) sends its message; the worker runs it
        done = _alice(stack).wait_status(job["id"], {"succeeded", "failed"}, timeout=60)
        assert done["status"] == "succeeded"
    finally:
        stack.kill("web-no-broker", 15)


def test_a_graceful_worker_stop_hands_its_job_back_and_it_resumes(stack: Stack) -> None:
    client = _alice(stack)
    job = client.submit("mlp_sweep", SLOW)
    wait_for(
        lambda: len([t for t in client.trials(job["id"]) if t["state"] == "complete"]) >= 2, 90, "two finished trials"
    )
    t0 = time.monotonic()
    stack.kill("worker", 15, group=False)  # SIGTERM to the main process: Celery's warm shutdown
    assert time.monotonic() - t0 < 10, "the shutdown waited for the whole job"
    before = {t["number"]: t for t in client.trials(job["id"]) if t["state"] == "complete"}
    assert client.job(job["id"])["status"] == "queued"
    stack.start_worker("worker")
    done = client.wait_status(job["id"], {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    after = {t["number"]: t for t in client.trials(job["id"])}
    assert sorted(after) == list(range(SLOW["trials"]))
    assert all(after[n]["started_at"] == t["started_at"] for n, t in before.items())
