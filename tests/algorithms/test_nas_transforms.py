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


def _branch_gap_under_training(noise: float, branches: int) -> tuple[float, list[float]]:
    """Replicate-and-add with ``noise``: the output's change (relative to its largest logit) and the relative
    distance between two copies' pointwise weights after 0, 30 and 60 SGD steps on random labels."""
    net = _net("resnet")
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    with torch.no_grad():
        before = net(x)
    ops = [{"type": "set_merge", "path": [], "merge": "add", "branches": branches}]
    X.apply_to_network(net, ops, noise=noise, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        change = float((net(x) - before).abs().max() / before.abs().max())
    first, second = (b.edge for b in next(N.cells(net)).branch_list()[:2])

    def gap() -> float:
        return float((first.pw.weight - second.pw.weight).norm() / first.pw.weight.norm())

    gaps = [gap()]
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    net.train()
    for step in range(60):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 30 == 29:
            gaps.append(gap())
    return change, gaps


@pytest.mark.parametrize("branches", [2, 3])
def test_replicated_copies_are_perturbed_so_they_diverge_under_training(branches: int) -> None:
    """The reference perturbs copies 2..N (6e-3 of the weights' std): exact copies get equal gradients and stay
    equal, so an add merge of them adds no capacity; perturbed ones drift apart, and the output barely moves."""
    change, gaps = _branch_gap_under_training(X.NOISE_RATIO, branches)
    assert change < 1e-3
    assert 0 < gaps[0] < 1e-2 and gaps[-1] > 1.5 * gaps[0] and gaps[1] > gaps[0]
    change, gaps = _branch_gap_under_training(0.0, branches)
    assert change < 1e-5 and gaps == [0.0, 0.0, 0.0]


def test_identity_layers_get_the_deeper_noise_and_stay_close_to_the_identity() -> None:
    net = _net("resnet")
    ops = [*PREFIX, {"type": "set_merge", "path": [0], "merge": "add", "branches": 2}]
    ops += [{"type": "replace_identity", "path": [0], "branch": b, "op": "sep3x3"} for b in (0, 1)]
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        before = net(x)
    X.apply_to_network(net, ops, noise=X.NOISE_RATIO, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # two noisy identity kernels in a row: 1.6e-3 of the largest logit here
        assert float((net(x) - before).abs().max() / before.abs().max()) < 5e-3
    inner = next(N.cells(net)).branch(0).child
    assert inner is not None
    a, b = (br.edge for br in inner.branch_list())
    assert not torch.equal(a.pw.weight, b.pw.weight)  # the two identity layers are not twins


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
