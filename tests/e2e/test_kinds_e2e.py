"""The shared job-kind suite through the real service: every registered kind, with its tiny config,
runs to ``succeeded`` on a real worker and stores trials, metric points and artifacts.

Cancel and resume of each kind's algorithm are in tests/kinds/test_contract.py; the service's cancel
and kill -9 mechanics are in test_jobs_e2e.py.
"""

from __future__ import annotations

import pytest

from search_spaces import registry
from search_spaces.base import DataShape
from search_spaces.kit import datasets
from search_spaces.kit.models import complete_arch
from tests.e2e.conftest import USERS
from tests.stack import Stack, wait_for

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name", sorted(registry.KINDS))
def test_every_kind_runs_to_success_and_stores_its_work(stack: Stack, name: str) -> None:
    kind = registry.get_kind(name)
    client = stack.client("alice", USERS["alice"])
    job = client.submit(name, kind.tiny_config, name=f"suite {name}")
    job = client.wait_status(job["id"], {"succeeded", "failed", "cancelled"}, timeout=240)
    assert job["status"] == "succeeded", job["error"]
    trials = client.trials(job["id"])
    assert len([t for t in trials if t["state"] in ("complete", "pruned")]) >= 3
    assert client.get(f"/api/v1/jobs/{job['id']}/metrics/").json()["count"] > 0
    artifacts = client.get(f"/api/v1/jobs/{job['id']}/artifacts/").json()["results"]
    assert artifacts and all(a["size_bytes"] > 0 and len(a["sha256"]) == 64 for a in artifacts)
    if job["result"].get("output_model"):
        assert job["result"]["output_model"] in {a["name"] for a in artifacts}


def _chains_to_itself(name: str) -> bool:
    """Whether a kind's declared output model is one it can start from itself (on its default dataset)."""
    kind = registry.get_kind(name)
    info = datasets.BUILTIN[kind.default_dataset]
    data = DataShape(info.modality, tuple(info.input_shape), info.num_classes)
    arch = kind.output_arch(kind.validate(kind.tiny_config), data, None) if kind.accepts_model else None
    return arch is not None and not kind.input_model_problems(complete_arch(arch), data)


@pytest.mark.parametrize("name", sorted(k for k in registry.KINDS if _chains_to_itself(k)))
def test_a_succeeded_jobs_output_model_is_the_next_jobs_input(stack: Stack, name: str) -> None:
    kind = registry.get_kind(name)
    client = stack.client("alice", USERS["alice"])
    parent = client.wait_status(client.submit(name, kind.tiny_config)["id"], {"succeeded", "failed"}, timeout=240)
    assert parent["status"] == "succeeded" and parent["result"]["output_model"], parent
    child = client.submit(name, kind.tiny_config, parent=parent["id"], name="child")
    child = client.wait_status(child["id"], {"succeeded", "failed"}, timeout=240)
    assert child["status"] == "succeeded", child["error"]
    assert child["parent"] == parent["id"]


def test_the_embedded_default_runs_every_kind(embedded_stack: Stack) -> None:
    """SQLite holds Django's tables and Optuna's study side by side; the kinds must not lock each other out."""
    client = embedded_stack.client("alice", USERS["alice"])
    jobs = [client.submit(name, registry.get_kind(name).tiny_config) for name in sorted(registry.KINDS)]
    for job in jobs:
        done = client.wait_status(job["id"], {"succeeded", "failed", "cancelled"}, timeout=240)
        assert done["status"] == "succeeded", (done["kind"], done["error"])


def test_parallel_trials_spread_one_study_over_two_workers(stack: Stack) -> None:
    """granularity_sweep with parallel_trials=2: a helper task on a second worker runs trials of the
    job's Optuna study (PostgreSQL); together they run n_trials, each once."""
    stack.start_worker("worker2")
    try:
        client = stack.client("alice", USERS["alice"])
        # trials long enough (about half a second) that the helper, which starts in a few seconds, gets some
        config = {
            **registry.get_kind("granularity_sweep").tiny_config,
            "sampler": "tpe",  # n_trials counts (the default grid runs its own size)
            "n_trials": 16,
            "prune_steps": 3,
            "retrain_epochs": 3,
            "parallel_trials": 2,
        }
        job = client.wait_status(client.submit("granularity_sweep", config)["id"], {"succeeded", "failed"}, 240)
        assert job["status"] == "succeeded", job["error"]
        trials = client.trials(job["id"])
        assert len(trials) == 16 and sorted(t["number"] for t in trials) == list(range(16))
        # Two processes worked at once: some trials overlap in time (one process runs them one by one).
        spans = sorted((t["started_at"], t["finished_at"]) for t in trials)
        assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False)), spans
        line = f"job {job['id']} helper 1: "  # its end: "done", or "stopped" once the job has finished
        wait_for(lambda: line in stack.log_text("worker") + stack.log_text("worker2"), 30, "the helper's end")
    finally:
        stack.kill("worker2", 15, group=False)
