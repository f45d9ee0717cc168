"""The chains users build (search → compress → FPGA), end to end over HTTP: gunicorn, a Celery worker, PostgreSQL
and Redis. Each child names only its parent; it works on the parent's dataset and starts from its output model."""

from __future__ import annotations

import pytest

from search_spaces import registry
from tests.e2e.conftest import USERS
from tests.stack import Stack

pytestmark = pytest.mark.e2e

DONE = {"succeeded", "failed", "cancelled"}


def _tiny(kind: str, **overrides: object) -> dict:
    return {**registry.get_kind(kind).tiny_config, **overrides}


def _chain(stack: Stack, steps: list[tuple[str, str | None]]) -> list[dict]:
    """Run ``steps`` (kind, dataset of the first step) one after another, each the parent of the next."""
    client = stack.client("alice", USERS["alice"])
    jobs: list[dict] = []
    for kind, dataset in steps:
        fields = {"parent": jobs[-1]["id"]} if jobs else ({"dataset": dataset} if dataset else {})
        job = client.wait_status(client.submit(kind, _tiny(kind), **fields)["id"], DONE, timeout=300)
        assert job["status"] == "succeeded", (kind, job["error"])
        if jobs:
            assert job["parent"] == jobs[-1]["id"] and job["dataset"] == jobs[-1]["dataset"]
            assert client.job(jobs[-1]["id"])["children"] == [job["id"]]
        jobs.append(job)
    return jobs


def test_a_found_cell_network_is_pruned_by_granularity(stack: Stack) -> None:
    nas, pruned = _chain(stack, [("pathlevel_nas", "digits"), ("granularity_sweep", None)])
    assert nas["result"]["output_arch"]["name"] == "pathlevel"
    assert pruned["result"]["output_arch"] == nas["result"]["output_arch"]  # masks keep the architecture
    assert pruned["result"]["summary"] and pruned["result"]["tables"], "the child's result shows its figures"


def test_a_found_cell_network_is_channel_pruned_by_amc(stack: Stack) -> None:
    """Channels coupled across the cells' merges and the residual sums are cut together: a smaller pathlevel net."""
    nas, pruned = _chain(stack, [("pathlevel_nas", "digits"), ("adc_prune", None)])
    found, cut = nas["result"]["output_arch"], pruned["result"]["output_arch"]
    assert found["name"] == cut["name"] == "pathlevel" and cut["tree"] == found["tree"]
    rows = {row["model"]: row for row in pruned["result"]["table"]}
    assert rows["amc"]["params"] < rows["original"]["params"]


@pytest.mark.parametrize("pruner", ["granularity_sweep", "adc_prune"])
def test_a_pruned_mlp_goes_to_the_fpga_sweep(stack: Stack, pruner: str) -> None:
    pruned, fpga = _chain(stack, [(pruner, "jets_synthetic"), ("hls4ml_sweep", None)])
    assert pruned["result"]["output_arch"]["name"] == "mlp"
    client = stack.client("alice", USERS["alice"])
    reports = client.get(f"/api/v1/fpga-reports/?job={fpga['id']}&page_size=100").json()["results"]
    assert reports and all(r["source"] == "estimate" and r["fixed_point_accuracy"] is not None for r in reports)
    # The sweep converted the pruned network, not a fresh one: its float model is the parent's architecture.
    assert fpga["result"]["output_arch"] == pruned["result"]["output_arch"]


def test_a_pruned_cnn_goes_to_the_fpga_sweep(stack: Stack) -> None:
    """The nearest CNN chain hls4ml_sweep converts today (pathlevel cells' add/concat merges are refused at
    submit): AMC channel-prunes the kit's VGG on digits, the FPGA sweep converts that network in io_stream and
    stores one estimate per trial with its bit-accurate fixed-point accuracy."""
    pruned, fpga = _chain(stack, [("adc_prune", "digits"), ("hls4ml_sweep", None)])
    assert pruned["result"]["output_arch"]["name"] == "vgg"
    client = stack.client("alice", USERS["alice"])
    reports = client.get(f"/api/v1/fpga-reports/?job={fpga['id']}&page_size=100").json()["results"]
    assert reports and all(r["source"] == "estimate" and r["io_type"] == "io_stream" for r in reports)
    assert all(r["fixed_point_accuracy"] is not None and r["latency_cycles"] > 0 for r in reports)
    assert fpga["result"]["output_arch"] == pruned["result"]["output_arch"]


def test_an_incompatible_parent_is_refused_over_http(stack: Stack) -> None:
    client = stack.client("alice", USERS["alice"])
    nas = client.wait_status(client.submit("pathlevel_nas", _tiny("pathlevel_nas"))["id"], DONE, timeout=300)
    r = client.post("/api/v1/jobs/", json={"kind": "hls4ml_sweep", "parent": nas["id"], "config": {}})
    assert r.status_code == 400
    assert "hls4ml_sweep cannot convert this pathlevel: its tree cells merge" in " ".join(r.json()["parent"])
    offered = client.get("/api/v1/jobs/?parent_for=hls4ml_sweep&page_size=100").json()["results"]
    assert nas["id"] not in {j["id"] for j in offered}
