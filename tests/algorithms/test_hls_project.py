"""The applied configuration is read back from what hls4ml generated, not taken from the request."""

from __future__ import annotations

import contextlib
import io
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from search_spaces.hls.convert import to_hls_stack
from search_spaces.hls.project import ProjectError, read_project

hls4ml = pytest.importorskip("hls4ml")


def _write(model: nn.Sequential, tmp_path: Path, rf: dict[str, int], strategy: str = "Latency") -> Path:
    cfg = hls4ml.utils.config_from_pytorch_model(
        model, input_shape=(16,), granularity="name", default_precision="ap_fixed<16,6>", backend="Vitis"
    )
    cfg["Model"]["Strategy"] = strategy
    for name, value in rf.items():
        cfg["LayerName"][name]["ReuseFactor"] = value
        cfg["LayerName"][name]["Precision"]["weight"] = "ap_fixed<12,4>"
        cfg["LayerName"][name]["Precision"]["result"] = "ap_fixed<20,8,AP_RND,AP_SAT>"
    out = tmp_path / "prj"
    with contextlib.redirect_stdout(io.StringIO()):
        hm = hls4ml.converters.convert_from_pytorch_model(
            model,
            hls_config=cfg,
            output_dir=str(out),
            backend="Vitis",
            io_type="io_parallel",
            part="xczu3eg-sbva484-1-e",
            clock_period=4,
        )
        hm.write()
    return out


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(fc1=nn.Linear(16, 8), relu1=nn.ReLU(), fc2=nn.Linear(8, 5), softmax=nn.Softmax(dim=1))
    ).eval()


def test_invalid_reuse_factor_is_read_back_as_applied(tmp_path: Path) -> None:
    applied = read_project(_write(_mlp(), tmp_path, {"fc1": 5, "fc2": 8}, strategy="Resource"))
    assert applied.reuse_factors() == {"fc1": 4, "fc2": 8}  # hls4ml moved 5 to the nearest valid value
    assert applied.part == "xczu3eg-sbva484-1-e" and applied.clock_period_ns == 4.0
    assert applied.io_type == "io_parallel" and applied.strategies() == {"resource"}
    fc1, fc2 = applied.dense
    assert (fc1.n_in, fc1.n_out, fc1.multiplier_limit) == (16, 8, 32)
    assert fc1.weight.text == "ap_fixed<12,4>" and fc1.input.text == "ap_fixed<16,6>"
    assert fc1.result.text == "ap_fixed<20,8,AP_RND,AP_SAT>"
    assert fc2.input.width == 16  # the ReLU's output type feeds the second layer
    assert [a.function for a in applied.activations] == ["relu", "softmax"]


def test_pruned_weights_are_counted(tmp_path: Path) -> None:
    model = _mlp()
    with torch.no_grad():
        model.fc1.weight[:, :4] = 0.0  # 32 of 128 weights
    applied = read_project(_write(model, tmp_path, {"fc1": 2, "fc2": 1}))
    assert applied.dense[0].n_zeros == 32
    assert applied.dense[0].multiplier_limit == 128 // 2 - 32 // 2


def test_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not a generated hls4ml project"):
        read_project(tmp_path)


def test_batchnorm_is_folded_and_non_mlps_refused() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model.train()
    model(torch.randn(64, 16))  # running statistics that are not the identity
    model.eval()
    stack, dense = to_hls_stack(model)
    x = torch.randn(10, 16)
    assert dense == ["fc1", "fc2"]
    torch.testing.assert_close(stack(x), torch.softmax(model(x), dim=1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="takes MLPs"):
        to_hls_stack(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)))
