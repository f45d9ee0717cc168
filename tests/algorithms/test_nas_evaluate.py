"""Fine-tuning sampled networks: a pool of subprocesses gives exactly the serial results."""

from __future__ import annotations

import pytest
import torch

from search_spaces.kit import datasets
from search_spaces.kit import pathlevel as N
from search_spaces.kit import tree_cells as T
from search_spaces.nas import evaluate as E

torch.set_num_threads(1)


def _tasks() -> list[dict]:
    splits = datasets.load("digits", seed=0, max_train=200)
    arch = N.complete({"input_shape": [1, 8, 8], "num_classes": 10, "stem": 6, "widths": [6], "tree": T.leaf("sep3x3")})
    torch.manual_seed(0)
    parent = N.build_network(arch).state_dict()
    data = {
        "x_train": torch.from_numpy(splits.x_train),
        "y_train": torch.from_numpy(splits.y_train),
        "x_val": torch.from_numpy(splits.x_val),
        "y_val": torch.from_numpy(splits.y_val),
    }
    ops = [
        [{"type": "set_merge", "path": [], "merge": "add", "branches": 2}],
        [
            {"type": "set_merge", "path": [], "merge": "concat", "branches": 2},
            {"type": "insert_node", "path": [], "branch": 0},
            {"type": "replace_identity", "path": [0], "branch": 0, "op": "conv1x1"},
        ],
    ]
    return [
        {
            "arch": arch,
            "state_dict": parent,
            "ops": o,
            "data": data,
            "epochs": 1,
            "lr": 0.05,
            "batch_size": 32,
            "seed": 11 + i,
            "max_params": None,
            "return_weights": True,
        }
        for i, o in enumerate(ops)
    ]


def test_parallel_evaluation_equals_serial() -> None:
    tasks = _tasks()
    order: list[int] = []
    serial = E.evaluate_many(tasks, workers=1)
    parallel = E.evaluate_many(tasks, workers=2, on_result=lambda i, _r: order.append(i))
    assert order == [0, 1]
    for s, p in zip(serial, parallel, strict=True):
        assert s["val_acc"] == p["val_acc"] and s["params"] == p["params"]
        assert all(torch.equal(s["state_dict"][k], p["state_dict"][k]) for k in s["state_dict"])
    assert serial[0]["params"] != serial[1]["params"]  # two different networks were evaluated


def test_max_params_is_honoured_by_the_result(tmp_path) -> None:  # noqa: ANN001
    from search_spaces.base import JobInputs, MemoryReporter
    from search_spaces.pathlevel_nas import PathlevelNas

    kind = PathlevelNas()
    free = kind.run(
        kind.validate(kind.tiny_config), JobInputs(dataset="digits", workdir=tmp_path / "a"), MemoryReporter()
    )
    base_params = free["base"]["params"]
    with pytest.raises(ValueError, match="below the base network's own"):
        kind.run(
            kind.validate({**kind.tiny_config, "max_params": base_params - 1}),
            JobInputs(dataset="digits", workdir=tmp_path / "b"),
            MemoryReporter(),
        )
    capped = kind.run(
        kind.validate({**kind.tiny_config, "max_params": base_params}),
        JobInputs(dataset="digits", workdir=tmp_path / "c"),
        MemoryReporter(),
    )
    assert capped["params"] <= base_params  # the base cell itself when no grown cell fits


POOL_CELL = [
    {"type": "insert_node", "path": [], "branch": 0},
    {"type": "replace_identity", "path": [0], "branch": 0, "op": "maxpool3x3"},
]


def test_a_pooling_cell_mimics_its_parent_before_it_is_fine_tuned() -> None:
    """The reference's repair of a cell that cannot start as the identity: regress its logits onto the parent's."""
    from search_spaces.kit import trainer
    from search_spaces.nas import mimic

    task = _tasks()[0]
    data = task["data"]
    x = data["x_train"][:200]
    base = N.complete(
        {"input_shape": [1, 8, 8], "num_classes": 10, "stem": 16, "widths": [16, 32], "tree": T.leaf("sep3x3")}
    )
    torch.manual_seed(0)
    parent = N.build_network(base)
    trainer.train(parent, data["x_train"], data["y_train"], epochs=5, lr=0.1, batch_size=32)
    parent.eval()

    def gap(net: torch.nn.Module) -> float:
        net.eval()
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(net(data["x_val"]), parent(data["x_val"])))

    args = (base, parent.state_dict(), POOL_CELL, x[:64])
    raw, arch = E.build_candidate(*args)
    repaired, _ = E.build_candidate(*args, mimic_x=x, mimic_epochs=10)
    assert mimic.needs_mimic(arch["tree"]) and not mimic.needs_mimic(base["tree"])
    assert gap(repaired) < 0.2 * gap(raw)  # on held-out images: 5.0 → 0.25 here
    assert trainer.evaluate(repaired, data["x_val"], data["y_val"]) > trainer.evaluate(
        raw, data["x_val"], data["y_val"]
    )
    result = E.evaluate_task({**task, "ops": POOL_CELL, "mimic_epochs": 2, "data": {**task["data"], "x_mimic": x}})
    assert result["mimicked"]
    assert not E.evaluate_task({**task, "mimic_epochs": 2, "data": {**task["data"], "x_mimic": x}})["mimicked"]


def test_the_found_network_is_narrowed_to_at_most_the_base_parameters() -> None:
    from search_spaces.nas import compare

    base = N.complete(
        {"input_shape": [1, 8, 8], "num_classes": 10, "stem": 16, "widths": [16, 32, 64], "tree": T.leaf("sep3x3")}
    )
    grown = {
        **base,
        "tree": T.apply_all(base["tree"], [{"type": "set_merge", "path": [], "merge": "add", "branches": 3}]),
    }
    limit = compare.params_of(base)
    small, factor, params = compare.rescale_to_params(grown, limit)
    assert params == compare.params_of(small) <= limit < compare.params_of(grown)
    assert 0.4 < factor < 1 and small["widths"] != base["widths"] and small["tree"] == grown["tree"]
    wider = compare.scaled(grown, factor + 0.02)  # the widest that fits: a little wider does not
    assert compare.params_of(wider) > limit
    assert compare.rescale_to_params(base, limit) == (base, 1.0, limit)  # a network that fits is left alone


def test_equal_size_comparison_trains_both_from_scratch_per_seed() -> None:
    from search_spaces.nas import compare

    task = _tasks()[0]
    splits = datasets.load("digits", seed=0, max_train=200)
    grown = {**task["arch"], "tree": T.apply_all(task["arch"]["tree"], task["ops"])}
    done: list[int] = []
    out = compare.equal_size(
        task["arch"],
        grown,
        task["data"],
        (splits.x_test, splits.y_test),
        seeds=2,
        epochs=1,
        lr=0.05,
        batch_size=32,
        seed=3,
        recipe=E.TRAIN_RECIPE,
        on_run=done.append,
    )
    assert done == [1, 2, 3, 4] and [r["seed"] for r in out["runs"]] == [3000, 3001]
    assert out["params_ratio"] <= 1.0 and out["found_params"] <= out["base_params"]
    mean = sum(r["found_test_acc"] - r["base_test_acc"] for r in out["runs"]) / 2
    assert out["found_minus_base_points"] == pytest.approx(100 * mean)
