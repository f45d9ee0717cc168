"""The chains users build (search → compress → FPGA), end to end over HTTP: gunicorn, a Celery worker, PostgreSQL
and Redis. Each child names only its parent; it works on the parent's dataset and starts from its output model."""

from __future__ import annotations

import io
import json

import pytest
import torch

from search_spaces import registry
from tests.e2e.conftest import USERS
from tests.stack import Stack

pytestmark = pytest.mark.e2e

DONE = {"succeeded", "failed", "cancelled"}


def _tiny(kind: str, **overrides: object) -> dict:
    return {**registry.get_kind(kind).tiny_config, **overrides}


def _chain(stack: Stack, steps: list[tuple[str, str | None]], first: dict | None = None) -> list[dict]:
    """Run ``steps`` (kind, dataset of the first step) one after another, each the parent of the next; ``first``
    overrides the first step's tiny config."""
    client = stack.client("alice", USERS["alice"])
    jobs: list[dict] = []
    for kind, dataset in steps:
        fields = {"parent": jobs[-1]["id"]} if jobs else ({"dataset": dataset} if dataset else {})
        config = _tiny(kind, **(first or {})) if not jobs else _tiny(kind)
        job = client.wait_status(client.submit(kind, config, **fields)["id"], DONE, timeout=300)
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
    """AMC channel-prunes the kit's VGG on digits, the FPGA sweep converts that network in io_stream and stores
    one estimate per trial with its bit-accurate fixed-point accuracy."""
    pruned, fpga = _chain(stack, [("adc_prune", "digits"), ("hls4ml_sweep", None)])
    assert pruned["result"]["output_arch"]["name"] == "vgg"
    client = stack.client("alice", USERS["alice"])
    reports = client.get(f"/api/v1/fpga-reports/?job={fpga['id']}&page_size=100").json()["results"]
    assert reports and all(r["source"] == "estimate" and r["io_type"] == "io_stream" for r in reports)
    assert all(r["fixed_point_accuracy"] is not None and r["latency_cycles"] > 0 for r in reports)
    assert fpga["result"]["output_arch"] == pruned["result"]["output_arch"]


# Primitives hls4ml converts in io_stream (its pooling needs pool size = stride: no 3x3 stride-1 pools) and AMC
# can cut (a gconv3x3 edge stops its channel chains).
CONVERTIBLE = ["identity", "conv1x1", "sep3x3"]


def test_a_found_cell_is_pruned_by_amc_and_swept_on_the_fpga(stack: Stack) -> None:
    """The product's headline chain: a cell found by pathlevel_nas, channel-pruned by adc_prune, converted with its
    merges in io_stream by hls4ml_sweep; the FPGA reports' accuracy is the 16-bit fixed-point accuracy of the
    pruned network the search found (within 3 points of its float accuracy on the same emulated images)."""
    nas, pruned, fpga = _chain(
        stack, [("pathlevel_nas", "digits"), ("adc_prune", None), ("hls4ml_sweep", None)], {"primitives": CONVERTIBLE}
    )
    assert nas["result"]["output_arch"]["name"] == pruned["result"]["output_arch"]["name"] == "pathlevel"
    assert fpga["result"]["output_arch"] == pruned["result"]["output_arch"]  # the pruned network, converted
    client = stack.client("alice", USERS["alice"])
    reports = client.get(f"/api/v1/fpga-reports/?job={fpga['id']}&page_size=100").json()["results"]
    trials = client.get(f"/api/v1/jobs/{fpga['id']}/trials/?page_size=100").json()["results"]
    complete = {t["number"]: t for t in trials if t["state"] == "complete"}
    assert reports and len(reports) == len(complete)
    for report in reports:
        assert report["source"] == "estimate" and report["io_type"] == "io_stream" and report["latency_cycles"] > 0
        metrics = complete[report["trial_number"]]["metrics"]
        assert report["fixed_point_accuracy"] == pytest.approx(metrics["fixed_accuracy"])
        assert metrics["float_accuracy"] == pytest.approx(fpga["result"]["float_accuracy"])
        assert abs(metrics["fixed_accuracy"] - metrics["float_accuracy"]) <= 0.03


def test_a_model_with_a_layer_hls4ml_cannot_convert_is_refused_over_http(stack: Stack) -> None:
    """An uploaded pathlevel network whose cell has a 3x3 stride-1 max-pool edge: the submit answers 400 naming
    the layer, and the job is never created."""
    from search_spaces.kit.models import build_model

    arch = {
        "name": "pathlevel",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "stem": 8,
        "widths": [8],
        "tree": {
            "split": "copy",
            "merge": "add",
            "branches": [{"op": "conv1x1", "child": None}, {"op": "maxpool3x3", "child": None}],
        },
    }
    buf = io.BytesIO()
    torch.save(build_model(arch).state_dict(), buf)
    client = stack.client("alice", USERS["alice"])
    r = client.post(
        "/api/v1/models/",
        data={"name": "pooled cell", "architecture": json.dumps(arch)},
        files={"file": ("cell.pt", buf.getvalue())},
    )
    assert r.status_code == 201, r.text
    before = client.get("/api/v1/jobs/?page_size=1").json()["count"]
    r = client.post(
        "/api/v1/jobs/", json={"kind": "hls4ml_sweep", "dataset": "digits", "model": r.json()["id"], "config": {}}
    )
    assert r.status_code == 400
    message = " ".join(r.json()["model"])
    assert "hls4ml_sweep cannot convert this pathlevel" in message
    assert "features.stage1_1.cell.branches.1.edge" in message and "maxpool3x3" in message
    assert client.get("/api/v1/jobs/?page_size=1").json()["count"] == before
