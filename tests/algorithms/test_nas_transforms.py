"""Each path-level transformation keeps the network's function on random input before any training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from search_spaces.kit import models
from search_spaces.kit import pathlevel as N
from search_spaces.kit import tree_cells as T
from search_spaces.nas import transforms as X

torch.set_num_threads(1)


def _net(base: str, start: str = "sep3x3") -> nn.Module:
    torch.manual_seed(0)
    net = N.build_network(
        {
            "input_shape": [1, 8, 8],
            "num_classes": 10,
            "base": base,
            "stem": 8,
            "widths": [8, 12],
            "growth": 6,
            "dense_layers": [2, 2],
            "tree": T.leaf(start),
        }
    )
    for m in net.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def _same_function(net: nn.Module, ops: list[T.Op]) -> float:
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        before = net(x)
    tree = N.network_tree(net)
    X.apply_to_network(net, ops)
    assert N.network_tree(net) == T.apply_all(tree, ops)  # the network and its JSON stay in step
    with torch.no_grad():
        return float((net(x) - before).abs().max() / before.abs().max())


PREFIX = [{"type": "insert_node", "path": [], "branch": 0}]  # gives an identity edge at path [0]

CASES = {
    "replicate_and_add_2": [{"type": "set_merge", "path": [], "merge": "add", "branches": 2}],
    "replicate_and_add_3": [{"type": "set_merge", "path": [], "merge": "add", "branches": 3}],
    "split_and_concat_layer": [{"type": "set_merge", "path": [], "merge": "concat", "branches": 2}],
    "split_and_concat_identity": [*PREFIX, {"type": "set_merge", "path": [0], "merge": "concat", "branches": 2}],
    "insert_node": PREFIX,
    **{
        f"identity_to_{op}": [*PREFIX, {"type": "replace_identity", "path": [0], "branch": 0, "op": op}]
        for op in ("conv1x1", "sep3x3", "sep5x5", "sep7x7", "gconv3x3")
    },
}


@pytest.mark.parametrize("base", ["resnet", "densenet"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_transformation_preserves_the_function(base: str, case: str) -> None:
    net = _net(base)
    assert _same_function(net, CASES[case]) < 1e-5


def test_a_long_chain_of_transformations_preserves_the_function() -> None:
    ops = [
        {"type": "set_merge", "path": [], "merge": "concat", "branches": 2},
        {"type": "insert_node", "path": [], "branch": 1},
        {"type": "set_merge", "path": [1], "merge": "add", "branches": 3},
        {"type": "replace_identity", "path": [1], "branch": 0, "op": "sep7x7"},
        {"type": "replace_identity", "path": [1], "branch": 2, "op": "gconv3x3"},
        {"type": "insert_node", "path": [1], "branch": 1},
        {"type": "set_merge", "path": [1, 1], "merge": "concat", "branches": 2},
        {"type": "replace_identity", "path": [1, 1], "branch": 1, "op": "conv1x1"},
    ]
    net = _net("resnet")
    assert _same_function(net, ops) < 1e-5
    X.calibrate(net, torch.rand(32, 1, 8, 8))  # data statistics keep the identity in eval mode
    assert _same_function(net, []) < 1e-5


def test_pooling_replacement_is_not_function_preserving() -> None:
    """As in the paper: a pooling edge cannot act as the identity (the test would catch a silent no-op)."""
    net = _net("resnet")
    ops = [*PREFIX, {"type": "replace_identity", "path": [0], "branch": 0, "op": "maxpool3x3"}]
    assert _same_function(net, ops) > 1e-3


def test_calibrated_identity_layer_is_close_to_identity_in_training_mode() -> None:
    net = _net("resnet")
    X.apply_to_network(net, [*PREFIX, {"type": "replace_identity", "path": [0], "branch": 0, "op": "conv1x1"}])
    layer = next(N.cells(net)).branches[0].child.branches[0].edge
    seen: list[torch.Tensor] = []
    layer.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0]))
    x = torch.rand(64, 1, 8, 8)
    net(x)
    assert X.calibrate(net, x) == 2  # one new BatchNorm per cell
    layer.train()  # batch statistics now: the calibrated scale and shift undo them
    assert torch.allclose(layer(seen[0]), seen[0], atol=1e-4)


def test_a_grown_network_is_a_kit_model(tmp_path) -> None:
    net = _net("densenet")
    X.apply_to_network(net, CASES["split_and_concat_layer"])
    arch = {
        "name": "pathlevel",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "base": "densenet",
        "stem": 8,
        "widths": [8, 12],
        "growth": 6,
        "dense_layers": [2, 2],
        "tree": N.network_tree(net),
    }
    models.save_model(net, arch, tmp_path / "m.pt")
    loaded, full = models.load_model(tmp_path / "m.pt")
    x = torch.rand(3, 1, 8, 8)
    assert full["tree"]["merge"] == "concat"
    assert torch.allclose(loaded(x), net(x), atol=1e-6)
    with pytest.raises(models.ModelError, match="pathlevel"):
        models.complete_arch({**arch, "tree": {"split": None, "merge": "add", "branches": []}})
