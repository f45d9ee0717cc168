"""The sweep's own behaviour beyond the shared kind suite: failure modes a user meets, the emulation
reused across reuse factors, the Pareto set."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from search_spaces.base import JobInputs, MemoryReporter
from search_spaces.hls import emulation
from search_spaces.hls.config import Settings, SweepError, TrialFailed
from search_spaces.hls.network import prepare_network
from search_spaces.hls.study import open_study, pareto
from search_spaces.hls.trial import _Run, evaluate_trial, weight_overflow
from search_spaces.hls4ml_sweep import Hls4mlSweep
from search_spaces.kit.models import build_model, complete_arch, save_model

pytest.importorskip("hls4ml")


def _stack(scale: float = 1.0) -> nn.Sequential:
    model = nn.Sequential(
        OrderedDict(fc1=nn.Linear(4, 3), relu1=nn.ReLU(), fc2=nn.Linear(3, 2), softmax=nn.Softmax(dim=1))
    )
    with torch.no_grad():
        model.fc1.weight.fill_(0.5 * scale)
        model.fc2.weight.fill_(-0.25)
        model.fc1.bias.zero_()
        model.fc2.bias.zero_()
    return model


def test_weights_beyond_the_integer_range_are_an_overflow() -> None:
    params = {"bits_all": 8, "int_all": 1}  # range ±1
    assert weight_overflow(_stack(1.0), params, ["fc1", "fc2"]) is None
    message = weight_overflow(_stack(3.0), params, ["fc1", "fc2"])
    assert message and "layer fc1" in message and "overflows" in message
    assert weight_overflow(_stack(3.0), {"bits_all": 8, "int_all": 3}, ["fc1", "fc2"]) is None


def test_a_job_whose_every_trial_overflows_fails_with_the_reason(tmp_path: Path) -> None:
    arch = complete_arch({"name": "mlp", "input_shape": [16], "hidden": [8], "num_classes": 5})
    model = build_model(arch)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(500.0)  # beyond any integer width offered below
    save_model(model, arch, tmp_path / "big.pt")
    kind = Hls4mlSweep()
    config = kind.validate({"n_trials": 3, "integer_bits": [4, 6], "total_bits": [16], "max_train": 500})
    reporter = MemoryReporter()
    with pytest.raises(SweepError, match="every trial failed .*overflows"):
        kind.run(
            config, JobInputs(dataset="jets_synthetic", model_path=tmp_path / "big.pt", workdir=tmp_path), reporter
        )
    assert [t["state"] for t in reporter.trials.values()] == ["failed"] * 3
    assert all("overflows" in t["metrics"]["error"] for t in reporter.trials.values())


def test_an_emulation_that_exits_is_a_failed_trial_and_reuse_factors_share_an_emulation(tmp_path: Path) -> None:
    kind = Hls4mlSweep()
    config = kind.validate({**kind.tiny_config, "n_trials": 1})
    settings = Settings.from_config(config)
    inputs = JobInputs(dataset="jets_synthetic", workdir=tmp_path)
    net = prepare_network(settings, inputs, MemoryReporter())
    run = _Run(settings, inputs, MemoryReporter(), net, open_study(settings, inputs), tmp_path, valid_rf={})
    base = {"strategy": "Latency", "sparsity": 0.0, "int_all": 6}
    with pytest.raises(TrialFailed, match=r"emulation failed: \[E\] ap_fixed<4096"):
        # ap_fixed wider than AP_INT_MAX_W (1024): hls4ml writes and g++ builds it, and the ap_types library
        # exits the process when the emulation loads; in the child process, that is this trial's failure only
        evaluate_trial(run, 0, {**base, "bits_all": 4096, "rf_fc1": 1, "rf_fc2": 1, "rf_fc3": 1})
    first = evaluate_trial(run, 1, {**base, "bits_all": 16, "rf_fc1": 1, "rf_fc2": 1, "rf_fc3": 1})
    second = evaluate_trial(run, 2, {**base, "bits_all": 16, "rf_fc1": 8, "rf_fc2": 8, "rf_fc3": 4})
    assert (first["emulation"], second["emulation"]) == ("compiled", "reused")
    assert run.compiles == 1 and run.cache_hits == 1
    assert second["fixed_accuracy"] == first["fixed_accuracy"]
    assert second["reuse_factor"] == {"fc1": 8, "fc2": 8, "fc3": 4}
    assert second["dsp"] < first["dsp"] and second["initiation_interval"] == 8
    # a compiler error: hls4ml prints g++'s output on stdout, which the child hands to stderr before its error
    firmware = tmp_path / "trial_0001" / "firmware" / "myproject.cpp"
    firmware.write_text(firmware.read_text() + "\n#error deliberately broken\n")
    with pytest.raises(TrialFailed, match=r"(?s)error: #error deliberately broken.*Failed to compile project"):
        emulation.emulate(run, tmp_path / "trial_0001")


def test_the_emulation_child_ends_its_stderr_with_the_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from search_spaces.hls import emulate

    code = emulate.main([str(tmp_path / "no_project"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")])
    assert code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(("FileNotFoundError", "Exception", "OSError")) and "no_project" in last


def test_pareto_keeps_only_fitting_non_dominated_rows() -> None:
    def row(n: int, acc: float, dsp: float, lat: float, fits: bool = True) -> dict:
        return {"number": n, "values": [acc, dsp, lat], "metrics": {"fits": fits}}

    rows = [row(0, 0.9, 100, 50), row(1, 0.9, 120, 50), row(2, 0.8, 10, 200), row(3, 0.95, 5, 5, fits=False)]
    assert [r["number"] for r in pareto(rows)] == [2, 0]


def test_emulation_inputs_follow_their_content_so_a_resume_with_another_subset_reads_its_own(tmp_path: Path) -> None:
    import numpy as np

    first = np.arange(12, dtype=np.float64).reshape(3, 4)
    path = emulation.validation_inputs(tmp_path, first)
    assert np.array_equal(np.load(path), first.astype(np.float32))
    assert emulation.validation_inputs(tmp_path, first) == path  # same images: written once
    smaller = first[:2]  # e.g. a resumed run whose subset is sized differently
    other = emulation.validation_inputs(tmp_path, smaller)
    assert other != path and np.array_equal(np.load(other), smaller.astype(np.float32))
    assert not list(tmp_path.glob("*.partial.npy"))
