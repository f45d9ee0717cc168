"""AMC channel pruning of a found tree-cell network (the chain pathlevel_nas → adc_prune): the coupled units
(residual sums, add merges, concat shares, a branch's inner width), physically smaller networks equal to the
network with the dropped channels zeroed, exact FLOP and parameter counts, the pruned arch rebuilt and reloaded,
an exact no-op at full width, least-squares refit and BN re-estimation, and the kind's tiny config run on a saved
pathlevel model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from search_spaces.adc import graph as g
from search_spaces.kit import counting
from search_spaces.kit import tree_cells as T
from search_spaces.kit.models import ModelError, build_model, complete_arch, load_model, save_model


def _node(merge: str | None, split: str | None, *branches: tuple[str, dict | None]) -> dict:
    return {"split": split, "merge": merge, "branches": [{"op": op, "child": child} for op, child in branches]}


TREES = {
    # replicate-and-add of a separable convolution: the residual width is one unit, written by both branches
    "add_sep": _node("add", "copy", ("sep3x3", None), ("sep3x3", None)),
    # nested child nodes, a split-and-concat of channel-wise edges (a pool edge), a branch's inner width
    "nested": _node(
        "add",
        "copy",
        ("sep3x3", _node("concat", "split", ("identity", None), ("avgpool3x3", None))),
        ("conv1x1", T.leaf("sep5x5")),
        ("sep3x3", _node("concat", "copy", ("sep3x3", None), ("conv1x1", None))),
    ),
    # a concat of layers at the root, an add merge with an identity inside a child node, a max-pool child
    "concat_copy": _node(
        "concat",
        "copy",
        ("sep3x3", T.leaf("maxpool3x3")),
        ("conv1x1", _node("add", "copy", ("sep3x3", None), ("identity", None))),
    ),
    # a group convolution reads and writes the residual width, which no cut may then touch
    "gconv": _node("add", "copy", ("gconv3x3", None), ("conv1x1", T.leaf("sep3x3"))),
}
BASES = {
    # pathlevel_nas's tiny config: stem 8, one stage of width 8
    "tiny": {"stem": 8, "widths": [8]},
    "two_stages": {"stem": 6, "widths": [8, 12], "blocks_per_stage": 2},
    "densenet": {"base": "densenet", "stem": 8, "growth": 6, "dense_layers": [2, 2]},
}
CASES = [(b, t) for b in BASES for t in TREES if not (b == "densenet" and t == "gconv")]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _arch(base: str, tree: str) -> dict:
    return complete_arch(
        {"name": "pathlevel", "input_shape": [1, 8, 8], "num_classes": 10, **BASES[base], "tree": TREES[tree]}
    )


def _trained_like(base: str, tree: str, seed: int = 0) -> tuple[nn.Module, dict]:
    """A random network whose BatchNorms hold non-trivial running statistics and affine parameters."""
    torch.manual_seed(seed)
    arch = _arch(base, tree)
    model = build_model(arch)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.train()
        for _ in range(3):
            model(torch.randn(16, *arch["input_shape"]))
    return model.eval(), arch


def _counts(graph: g.Graph, ratio: float) -> list[int]:
    return [g.min_count(c, ratio, 1) for c in graph.full_counts]


def _random_counts(graph: g.Graph, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    return [int(torch.randint(1, c + 1, (1,), generator=gen)) for c in graph.full_counts]


def _masked(model: nn.Module, graph: g.Graph, keep: list[torch.Tensor]) -> nn.Module:
    """The same network with the dropped channels zeroed where they are written (the BatchNorm after every
    producer): through sums, merges, pooling and depthwise stages a zero stays zero, so readers see nothing."""
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for unit, idx in zip(graph.units, keep, strict=True):
            kept = set(idx.tolist())
            for name in unit.producers:
                outs = graph.maps[name][1]
                drop = [p for p, s in enumerate(outs) if s is not None and s[0] == unit.index and s[1] not in kept]
                bn = masked.get_submodule(graph.layer(name).bn)
                bn.weight[drop] = 0
                bn.bias[drop] = 0
    return masked


def test_units_of_the_tiny_networks() -> None:
    def units(tree: str) -> list[tuple[str, int, int, int, int]]:
        model, arch = _trained_like("tiny", tree)
        return [
            (u.name, u.channels, len(u.producers), len(u.followers), len(u.consumers))
            for u in g.build_graph(model, arch).units
        ]

    cell = "features.stage1_1.cell.branches"
    # The residual width: the stem and both pointwise stages write it, both depthwise stages follow it, both
    # pointwise stages and the classifier read it.
    assert units("add_sep") == [("features.stem.conv", 8, 3, 2, 3)]
    model, arch = _trained_like("tiny", "add_sep")
    (unit,) = g.build_graph(model, arch).units
    assert unit.producers == ("features.stem.conv", f"{cell}.0.edge.pw", f"{cell}.1.edge.pw")
    assert unit.followers == (f"{cell}.0.edge.dw", f"{cell}.1.edge.dw")
    assert unit.consumers == (f"{cell}.0.edge.pw", f"{cell}.1.edge.pw", "classifier")
    # The split-and-concat (identity | avgpool) gives each half of the residual width its own unit; the
    # conv1x1 → sep5x5 and sep3x3 → concat(sep3x3, conv1x1) inner widths are units of their own.
    assert units("nested") == [
        ("features.stem.conv[0:4]", 4, 4, 2, 4),
        ("features.stem.conv[4:8]", 4, 4, 2, 4),
        (f"{cell}.1.edge.conv", 8, 1, 1, 1),
        (f"{cell}.2.edge.pw", 8, 1, 1, 2),
    ]
    assert units("concat_copy") == [
        ("features.stem.conv[0:4]", 4, 2, 1, 3),
        ("features.stem.conv[4:8]", 4, 3, 2, 4),
    ]
    # A group convolution fixes the residual width; the conv1x1 → sep3x3 inner width stays prunable.
    assert units("gconv") == [(f"{cell}.1.edge.conv", 8, 1, 1, 1)]


@pytest.mark.parametrize(("base", "tree"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_physically_smaller_network_equals_the_masked_one(base: str, tree: str, seed: int) -> None:
    model, arch = _trained_like(base, tree, seed)
    graph = g.build_graph(model, arch)
    counts = _random_counts(graph, seed + 10)
    keep = g.select_channels(model, graph, counts)
    pruned = g.prune_model(model, graph, keep).eval()
    x = torch.randn(5, *arch["input_shape"])
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), _masked(model, graph, keep)(x), rtol=1e-5, atol=1e-5)
    assert counting.count(pruned, arch["input_shape"])["params"] < counting.count(model, arch["input_shape"])["params"]


@pytest.mark.parametrize(("base", "tree"), CASES)
def test_full_width_is_an_exact_no_op(base: str, tree: str) -> None:
    from search_spaces.adc.env import EnvSettings, PruningEnv
    from search_spaces.adc.reconstruct import collect_stats

    model, arch = _trained_like(base, tree)
    graph = g.build_graph(model, arch)
    full = graph.full_counts
    pruned = g.prune_model(model, graph, g.select_channels(model, graph, full)).eval()
    x = torch.randn(6, *arch["input_shape"])
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=0, atol=1e-5)
    assert g.pruned_arch(arch, pruned) == arch
    # The least-squares refit leaves a layer none of whose inputs were cut as it is.
    batches = [torch.randn(16, *arch["input_shape"]) for _ in range(2)]
    stats = collect_stats(model, graph, batches)
    settings = EnvSettings(reconstruct=True, recalibrate_bn=False)
    env = PruningEnv(model, graph, g.FLOPS, settings, stats=stats, bn_batches=batches, x_val=x, y_val=x)
    with torch.no_grad():
        torch.testing.assert_close(env.build(full)(x), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("base", "tree"), CASES)
def test_costs_equal_the_kit_counter_and_the_saved_model_reloads(base: str, tree: str, tmp_path: Path) -> None:
    model, arch = _trained_like(base, tree)
    graph = g.build_graph(model, arch)
    dense = counting.count(model, arch["input_shape"])
    assert graph.total(graph.full_counts, g.FLOPS) == dense["flops"]
    assert graph.total(graph.full_counts, g.PARAMS) == dense["params"]
    x = torch.randn(4, *arch["input_shape"])
    previous, previous_counts = dense, graph.full_counts
    for ratio in (0.75, 0.5, 0.25, 0.0):
        counts = _counts(graph, ratio)
        pruned = g.prune_model(model, graph, g.select_channels(model, graph, counts)).eval()
        kit = counting.count(pruned, arch["input_shape"])
        assert graph.total(counts, g.FLOPS) == kit["flops"]
        assert graph.total(counts, g.PARAMS) == kit["params"]
        if counts != previous_counts:  # (a 4-channel unit keeps 1 at both 0.25 and 0)
            assert kit["params"] < previous["params"] and kit["flops"] < previous["flops"], ratio
        previous, previous_counts = kit, counts
        new_arch = g.pruned_arch(arch, pruned)
        assert new_arch["name"] == "pathlevel" and new_arch["tree"] == arch["tree"]
        path = tmp_path / f"pruned_{ratio}.pt"
        save_model(pruned, new_arch, path)
        loaded, loaded_arch = load_model(path)  # weights_only=True, strict state_dict, rebuilt from the arch
        assert loaded_arch == new_arch
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), pruned(x), rtol=0, atol=1e-6)


def test_a_kept_first_transition_and_densenet_transitions_are_written_down() -> None:
    model, arch = _trained_like("two_stages", "add_sep")  # stem 6 → transition → 8: two separate units
    graph = g.build_graph(model, arch)
    assert [u.name for u in graph.units] == ["features.stem.conv", "features.trans1.conv", "features.trans2.conv"]
    pruned = g.prune_model(model, graph, g.select_channels(model, graph, [5, 5, 7]))
    new_arch = g.pruned_arch(arch, pruned)
    assert (new_arch["stem"], new_arch["widths"], new_arch["stem_transition"]) == (5, [5, 7], True)
    assert "edge_widths" not in new_arch  # a residual cell at its stage's width needs no per-edge widths
    rebuilt = build_model(new_arch)
    rebuilt.load_state_dict(pruned.state_dict())
    model, arch = _trained_like("densenet", "add_sep")
    graph = g.build_graph(model, arch)
    counts = _counts(graph, 0.5)
    pruned = g.prune_model(model, graph, g.select_channels(model, graph, counts))
    new_arch = g.pruned_arch(arch, pruned)  # 4 + 3 + 3 channels into the transition, which keeps 5: its half
    assert new_arch["stem"] == 4 and "trans_widths" not in new_arch and len(new_arch["edge_widths"]) == 4
    build_model(new_arch).load_state_dict(pruned.state_dict())
    counts[0] = graph.full_counts[0]
    pruned = g.prune_model(model, graph, g.select_channels(model, graph, counts))
    new_arch = g.pruned_arch(arch, pruned)  # 8 + 3 + 3 into the transition, which still keeps 5
    assert new_arch["stem"] == 8 and new_arch["trans_widths"] == [5]
    build_model(new_arch).load_state_dict(pruned.state_dict())


def test_explicit_widths_are_checked() -> None:
    arch = _arch("tiny", "nested")
    default = T.edge_widths(arch["tree"], 8, 8)
    assert len(default) == T.count_edges(arch["tree"]) == 8
    assert build_model({**arch, "edge_widths": [default]})  # the defaults spelled out are accepted
    too_few = [default[:-1]]
    bad_add = [[[8, 8], [4, 4], [4, 4], [8, 3], [3, 8], [8, 5], [5, 4], [5, 3]]]  # the concat gives 7, not 8
    bad_pool = [[[8, 8], [4, 3], [4, 4], *default[3:]]]
    for widths in (too_few, bad_add, bad_pool, "8", [default, default]):
        with pytest.raises(ModelError):
            complete_arch({**arch, "edge_widths": widths})
    with pytest.raises(ModelError, match="stem_transition"):
        complete_arch({**arch, "stem_transition": 1})
    with pytest.raises(ModelError, match="trans_widths"):
        complete_arch({**arch, "trans_widths": [4]})


def test_reconstruction_and_bn_recalibration_rescue_a_trained_pathlevel_network() -> None:
    """A tree-cell network trained on digits, cut uniformly to half its FLOPs: magnitude pruning alone loses most
    of the accuracy; the least-squares refit of every layer reading a cut unit and BatchNorm re-estimation keep
    most of it (measured: 0.97 dense, 0.19 cut, 0.84 refit + re-estimated)."""
    from search_spaces.adc.env import EnvSettings, PruningEnv
    from search_spaces.adc.reconstruct import collect_stats
    from search_spaces.kit import datasets, trainer

    splits = datasets.load("digits", seed=0)
    arch = complete_arch(
        {"name": "pathlevel", "input_shape": [1, 8, 8], "num_classes": 10, "stem": 16, "widths": [16]}
        | {"tree": TREES["nested"]}
    )
    trainer.set_seed(0)
    model = build_model(arch)
    trainer.train(model, splits.x_train, splits.y_train, epochs=20, lr=0.1, seed=0)
    model.eval()
    graph = g.build_graph(model, arch)
    x_train = torch.from_numpy(splits.x_train)
    batches = [x_train[i : i + 64] for i in range(0, 256, 64)]
    stats = collect_stats(model, graph, batches, points=10, seed=0)
    x_val, y_val = torch.from_numpy(splits.x_val), torch.from_numpy(splits.y_val)
    accuracy = {}
    for fixed in (False, True):
        settings = EnvSettings(target_ratio=0.5, reconstruct=fixed, recalibrate_bn=fixed)
        env = PruningEnv(model, graph, g.FLOPS, settings, stats=stats, bn_batches=batches, x_val=x_val, y_val=y_val)
        outcome = env.evaluate(env.uniform_counts())
        assert outcome.cost_ratio <= 0.5
        accuracy[fixed] = outcome.accuracy
    dense = trainer.evaluate(model, x_val, y_val)
    assert accuracy[True] > accuracy[False] + 0.3
    assert accuracy[True] > dense - 0.3


def test_the_action_wall_holds_the_budget_where_a_unit_is_both_read_and_written() -> None:
    """A conv1x1 edge reads and writes the residual width (cost quadratic in its count): every episode still
    ends at or under the budget, and the wall lets through as much as the budget allows."""
    import numpy as np

    from search_spaces.adc.env import EnvSettings, PruningEnv

    model, arch = _trained_like("two_stages", "nested")
    graph = g.build_graph(model, arch)
    settings = EnvSettings(target_ratio=0.4, fill_budget=False, reconstruct=False, recalibrate_bn=False)
    x = torch.zeros(1, *arch["input_shape"])
    env = PruningEnv(model, graph, g.FLOPS, settings, stats=None, bn_batches=[], x_val=x, y_val=x)
    rng = np.random.default_rng(0)
    for _ in range(20):
        env.reset()
        for t in range(env.n_units):
            wall = env.action_wall(t)
            allowed = env.counts[:t] + [wall] + env.lowest[t + 1 :]
            assert graph.total(allowed, g.FLOPS) <= env.budget
            if wall < env.channels[t]:
                assert graph.total(env.counts[:t] + [wall + 1] + env.lowest[t + 1 :], g.FLOPS) > env.budget
            env.step(float(rng.uniform(0.2, 1.0)))
        assert graph.total(env.counts, g.FLOPS) <= env.budget


def test_adc_prune_tiny_config_runs_on_a_saved_pathlevel_model(tmp_path: Path) -> None:
    from search_spaces.adc_prune import AdcPrune
    from search_spaces.base import JobInputs, MemoryReporter

    model, arch = _trained_like("tiny", "nested")
    model_path = tmp_path / "pathlevel.pt"
    save_model(model, arch, model_path)
    kind = AdcPrune()
    assert not kind.input_model_problems(arch, _digits())
    reporter = MemoryReporter()
    result = kind.run(
        kind.validate(kind.tiny_config), JobInputs(model_path=model_path, dataset="digits", workdir=tmp_path), reporter
    )
    assert reporter.progress_values[-1][0] == 1.0
    assert len(reporter.trials) == kind.tiny_config["episodes"]
    assert result["output_arch"]["name"] == "pathlevel" and result["output_arch"]["tree"] == arch["tree"]
    produced = {name: path for name, path, _ in reporter.artifacts}[result["output_model"]]
    loaded, loaded_arch = load_model(produced)
    assert loaded_arch == result["output_arch"]
    table = {row["model"]: row for row in result["table"]}
    assert table["amc"]["flops"] < table["original"]["flops"]
    assert table["amc"]["params"] < table["original"]["params"]
    assert counting.count(loaded, arch["input_shape"])["flops"] == table["amc"]["flops"]
    assert [layer["name"] for layer in result["layers"]] == [u.name for u in g.build_graph(model, arch).units]


def _digits():  # noqa: ANN202 - the DataShape of the digits data set
    from search_spaces.base import DataShape
    from search_spaces.kit import datasets

    info = datasets.BUILTIN["digits"]
    return DataShape(info.modality, tuple(info.input_shape), info.num_classes)


def test_a_network_with_no_channel_to_cut_is_refused_at_submit() -> None:
    """One residual stage whose cell is a single group convolution: the stage's one width ties the stem to the
    residual sum and the group convolution stops that chain, so AMC has no unit; refused at submit, not failed
    in the worker (found by the pathlevel_nas -> adc_prune -> hls4ml_sweep chain). A cell with an inner width is
    taken."""
    from search_spaces.adc_prune import AdcPrune

    arch = {"name": "pathlevel", "input_shape": [1, 8, 8], "num_classes": 10, "stem": 8, "widths": [8]}
    problems = AdcPrune().input_model_problems({**arch, "tree": T.leaf("gconv3x3")}, _digits())
    assert len(problems) == 1 and "adc_prune finds no channel it can prune in this pathlevel network" in problems[0]
    inner = {"split": None, "merge": None, "branches": [{"op": "conv1x1", "child": T.leaf("conv1x1")}]}
    assert AdcPrune().input_model_problems({**arch, "tree": inner}, _digits()) == []
