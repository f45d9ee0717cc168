"""The kit's plumbing every torch kind shares: the checkpoint format, the child-process launcher and the
starting-model stage."""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import pytest
import torch

from search_spaces.base import ConfigError, JobInputs
from search_spaces.kit import checkpoint, datasets, models, procs
from search_spaces.kit.starting import starting_model


def test_checkpoint_round_trips_state_and_json_meta() -> None:
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "rng": torch.get_rng_state()}
    meta = {"epoch": 3, "history": [{"loss": math.nan, "ratio": math.inf}], "best": None}
    back_state, back_meta = checkpoint.unpack(checkpoint.pack("kind/1", state=state, meta=meta), "kind/1")
    assert torch.equal(back_state["model"]["w"], state["model"]["w"])
    assert torch.equal(back_state["rng"], state["rng"])
    assert back_meta["epoch"] == 3 and back_meta["best"] is None
    assert math.isnan(back_meta["history"][0]["loss"]) and back_meta["history"][0]["ratio"] == math.inf
    blob = checkpoint.pack("kind/1", state={"bytes": checkpoint.bytes_tensor(b"\x00\x01abc")})
    assert checkpoint.tensor_bytes(checkpoint.unpack(blob, "kind/1")[0]["bytes"]) == b"\x00\x01abc"


def test_checkpoint_refuses_another_format_and_garbage() -> None:
    with pytest.raises(checkpoint.CheckpointError, match=r"not a kind/2 checkpoint \(it is kind/1\)"):
        checkpoint.unpack(checkpoint.pack("kind/1"), "kind/2")
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.unpack(b"not a torch file", "kind/1")
    assert issubclass(checkpoint.CheckpointError, ValueError)


def test_a_child_gets_its_threads_and_its_exit_is_explained(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    code = "import os, sys; print(os.environ['OMP_NUM_THREADS'], sys.stdin.read()); sys.exit(3)"
    child = procs.start_python(["-c", code], threads=2, log=log, stdin=b"hello")
    assert child.wait(timeout=60) == 3
    assert procs.log_tail(log) == "2 hello"
    assert procs.describe_exit(3) == "exit code 3"
    assert procs.describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert procs.describe_exit(None) == "no exit code"


def test_a_child_whose_stdout_is_discarded_logs_only_its_stderr(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    code = "import sys; print('chatter'); print('the error', file=sys.stderr); print('more chatter'); sys.exit(1)"
    child = procs.start_python(["-c", code], threads=1, log=log, discard_stdout=True)
    assert child.wait(timeout=60) == 1
    assert procs.log_tail(log) == "the error"


@pytest.mark.parametrize(("grace_s", "expected"), [(5.0, -signal.SIGTERM), (0.0, -signal.SIGKILL)])
def test_stop_terminates_then_kills_and_reaps(tmp_path: Path, grace_s: float, expected: int) -> None:
    children = [
        procs.start_python(["-c", "import time; time.sleep(60)"], threads=1, log=tmp_path / f"c{i}.log")
        for i in range(2)
    ]
    started = time.monotonic()
    procs.stop(children, grace_s)
    assert time.monotonic() - started < 10
    assert [c.returncode for c in children] == [expected, expected]


def test_a_built_in_start_is_seeded_and_an_input_model_must_fit_the_data(tmp_path: Path) -> None:
    info = datasets.load("digits", seed=0).info
    first = starting_model(JobInputs(), info, family="vgg", seed=4)
    second = starting_model(JobInputs(), info, family="vgg", seed=4)
    assert first.source == "built-in" and not first.from_input
    assert first.arch == models.default_arch("vgg", info)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    custom = starting_model(
        JobInputs(), info, family="vgg", seed=4, builtin_arch=lambda i: {**models.default_arch("mlp", i)}
    )
    assert custom.arch["name"] == "mlp"
    path = tmp_path / "model.pt"
    other = {"name": "mlp", "input_shape": [16], "num_classes": 5}
    models.save_model(models.build_model(other), other, path)
    with pytest.raises(ConfigError, match="the input model takes"):
        starting_model(JobInputs(model_path=path), info, family="vgg", seed=0)
    fits = models.default_arch("mlp", info)
    models.save_model(models.build_model(fits), fits, path)
    start = starting_model(JobInputs(model_path=path), info, family="vgg", seed=0)
    assert start.from_input and start.arch["name"] == "mlp"
