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
