"""AMC's pruning step: units found per family, physically smaller models, BN / dependent-layer fix-up,
FLOPs and parameter counts, least-squares reconstruction, and the kit's per-layer width keys."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from search_spaces.adc import graph as g
from search_spaces.adc.reconstruct import (
    ConsumerStats,
    collect_stats,
    full_weight,
    kept_columns,
    least_squares,
    reconstruction_error,
    sample_inputs,
)
from search_spaces.kit import counting
from search_spaces.kit.models import ModelError, build_model, complete_arch, load_model, save_model

ARCHS = {
    "vgg": {
        "name": "vgg",
        "input_shape": [1, 12, 12],
        "num_classes": 5,
        "widths": [8, 12],
        "convs_per_stage": 2,
        "fc": [10],
    },
    "mobilenet": {
        "name": "mobilenet",
        "input_shape": [2, 8, 8],
        "num_classes": 4,
        "stem": 8,
        "widths": [12, 16],
        "strides": [1, 2],
    },
    "mlp": {"name": "mlp", "input_shape": [6], "num_classes": 3, "hidden": [12, 10], "batchnorm": True},
    "resnet": {"name": "resnet", "input_shape": [1, 8, 8], "num_classes": 3, "widths": [8, 12]},
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _trained_like(name: str, seed: int = 0) -> tuple[nn.Module, dict]:
    """A random model whose BatchNorms hold non-trivial running statistics and affine parameters."""
    torch.manual_seed(seed)
    arch = complete_arch(ARCHS[name])
    model = build_model(arch)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *arch["input_shape"]))
    return model.eval(), arch


def _random_counts(graph: g.Graph, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    return [int(torch.randint(1, c + 1, (1,), generator=gen)) for c in graph.full_counts]


def test_units_per_family() -> None:
    def units(name: str) -> list[tuple[str, tuple[str, ...], str]]:
        model, arch = _trained_like(name)
        return [(u.producer, u.followers, u.consumer) for u in g.build_graph(model, arch).units]

    assert units("vgg") == [
        ("features.stage1_1.conv", (), "features.stage1_2.conv"),
        ("features.stage1_2.conv", (), "features.stage2_1.conv"),
        ("features.stage2_1.conv", (), "features.stage2_2.conv"),
        ("features.stage2_2.conv", (), "classifier.fc1"),
        ("classifier.fc1", (), "classifier.out"),
    ]
    assert units("mobilenet") == [
        ("features.stem.conv", ("features.block1.dw.conv",), "features.block1.pw.conv"),
        ("features.block1.pw.conv", ("features.block2.dw.conv",), "features.block2.pw.conv"),
        ("features.block2.pw.conv", (), "classifier.out"),
    ]
    assert units("mlp") == [("fc1", (), "fc2"), ("fc2", (), "out")]
    # Residual sums tie every other width: only the inner width of each block is a unit.
    assert units("resnet") == [
        ("features.stage1_1.conv1", (), "features.stage1_1.conv2"),
        ("features.stage2_1.conv1", (), "features.stage2_1.conv2"),
    ]


def _masked(model: nn.Module, graph: g.Graph, keep: list[torch.Tensor]) -> nn.Module:
    """The same network with the dropped channels zeroed at the producer (and followers) instead of removed."""
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for unit, idx in zip(graph.units, keep, strict=True):
            drop = torch.ones(unit.channels, dtype=torch.bool)
            drop[idx] = False
            for name in (unit.producer, *unit.followers):
                layer = graph.layer(name)
                if layer.bn is not None:
                    bn = masked.get_submodule(layer.bn)
                    bn.weight[drop] = 0
                    bn.bias[drop] = 0
                else:
                    module = masked.get_submodule(name)
                    module.weight[drop] = 0
                    if module.bias is not None:
                        module.bias[drop] = 0
    return masked


@pytest.mark.parametrize("name", sorted(ARCHS))
@pytest.mark.parametrize("seed", [0, 1])
def test_physically_smaller_model_equals_masked_model(name: str, seed: int) -> None:
    model, arch = _trained_like(name, seed)
    graph = g.build_graph(model, arch)
    counts = _random_counts(graph, seed + 10)
    keep = g.select_channels(model, graph, counts)
    pruned = g.prune_model(model, graph, keep).eval()
    x = torch.randn(7, *arch["input_shape"])
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), _masked(model, graph, keep)(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(pruned(x), model(x), atol=1e-4) or counts == graph.full_counts
    assert (
        sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
        or counts == graph.full_counts
    )


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_bn_and_dependent_layers_are_fixed_up_and_saved_in_kit_format(name: str, tmp_path: Path) -> None:
    model, arch = _trained_like(name)
    graph = g.build_graph(model, arch)
    counts = [max(1, c // 2 - 1) for c in graph.full_counts]
    pruned = g.prune_model(model, graph, g.select_channels(model, graph, counts))
    for layer in graph.layers:
        module = pruned.get_submodule(layer.name)
        c_in, c_out = graph.dims(layer, counts)
        weight_in = module.weight.shape[1] * (c_in if layer.kind == g.DEPTHWISE else 1)
        assert (module.weight.shape[0], weight_in) == (c_out, c_in), layer.name
        if layer.kind == g.DEPTHWISE:
            assert module.groups == module.in_channels == module.out_channels == c_in
        if layer.bn is not None:
            bn = pruned.get_submodule(layer.bn)
            assert bn.num_features == c_out
            assert bn.weight.shape == bn.bias.shape == bn.running_mean.shape == bn.running_var.shape == (c_out,)
    new_arch = g.pruned_arch(arch, pruned)
    path = tmp_path / "pruned.pt"
    save_model(pruned, new_arch, path)
    loaded, loaded_arch = load_model(path)  # weights_only=True, strict state_dict
    x = torch.randn(3, *arch["input_shape"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), pruned.eval()(x))
    assert loaded_arch == new_arch


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_flops_and_params_after_pruning_equal_the_kit_counter(name: str) -> None:
    model, arch = _trained_like(name)
    graph = g.build_graph(model, arch)
    for counts in (graph.full_counts, _random_counts(graph, 3), [1] * len(graph.units)):
        pruned = g.prune_model(model, graph, g.select_channels(model, graph, counts))
        kit = counting.count(pruned, arch["input_shape"])
        assert graph.total(counts, g.FLOPS) == kit["flops"]
        assert graph.total(counts, g.PARAMS) == kit["params"]


def test_kit_per_layer_width_keys_are_checked() -> None:
    base = {"name": "vgg", "input_shape": [1, 8, 8], "num_classes": 3, "widths": [4, 6], "convs_per_stage": 2}
    model = build_model({**base, "conv_widths": [3, 4, 5, 6]})
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [3, 4, 5, 6]
    with pytest.raises(ModelError, match="conv_widths"):
        build_model({**base, "conv_widths": [3, 4, 5]})
    res = build_model(
        {"name": "resnet", "input_shape": [1, 8, 8], "num_classes": 3, "widths": [4, 6], "mid_widths": [2, 5]}
    )
    assert [m.conv1.out_channels for m in res.modules() if hasattr(m, "conv1")] == [2, 5]
    with pytest.raises(ModelError, match="no parameter"):
        build_model({"name": "mlp", "input_shape": [4], "num_classes": 3, "conv_widths": [2]})


def _consumer_rows(model: nn.Module, unit: g.Unit, x: torch.Tensor, seed: int) -> torch.Tensor:
    rows: list[torch.Tensor] = []
    module = model.get_submodule(unit.consumer)
    gen = torch.Generator().manual_seed(seed)
    handle = module.register_forward_hook(lambda m, i, o: rows.append(sample_inputs(m, i[0], 5, gen)))
    with torch.no_grad():
        model(x)
    handle.remove()
    out = rows[0].double()
    return torch.cat([out, torch.ones(len(out), 1, dtype=out.dtype)], 1) if module.bias is not None else out


@pytest.mark.parametrize("name", ["vgg", "mlp"])
def test_least_squares_lowers_the_reconstruction_error(name: str) -> None:
    model, arch = _trained_like(name)
    graph = g.build_graph(model, arch)
    unit = graph.units[1]
    layer = graph.layer(unit.consumer)
    x_rows = _consumer_rows(model, unit, torch.randn(64, *arch["input_shape"]), seed=0)
    group = 1 if layer.kind == g.LINEAR else layer.kernel**2
    stats = ConsumerStats(x_rows.T @ x_rows, group, layer.bias, len(x_rows))
    weight = full_weight(model.get_submodule(unit.consumer), layer.bias)
    keep = g.select_channels(model, graph, [c // 2 for c in graph.full_counts])[1]
    cols = kept_columns(stats, keep)
    target = x_rows @ weight.T

    def error(w_kept: torch.Tensor) -> float:
        return float(((x_rows[:, cols] @ w_kept.T - target) ** 2).sum() / len(x_rows))

    plain, refit = weight[:, cols], least_squares(stats, weight, keep)
    assert error(refit) < 0.9 * error(plain)
    assert reconstruction_error(stats, weight, keep, refit) == pytest.approx(error(refit), rel=1e-6)
    assert reconstruction_error(stats, weight, keep, plain) == pytest.approx(error(plain), rel=1e-6)


def test_reconstruction_and_bn_recalibration_rescue_a_trained_network() -> None:
    """On a VGG trained briefly on digits, cut to ~25% of its FLOPs: magnitude pruning alone loses most of the
    accuracy; the least-squares refit plus BatchNorm re-estimation keeps it close to the dense network's."""
    from search_spaces.adc.env import EnvSettings, PruningEnv
    from search_spaces.kit import datasets, trainer

    splits = datasets.load("digits", seed=0)
    arch = complete_arch({"name": "vgg", "input_shape": [1, 8, 8], "num_classes": 10})
    trainer.set_seed(0)
    model = build_model(arch)
    trainer.train(model, splits.x_train, splits.y_train, epochs=4, lr=0.05, seed=0)
    model.eval()
    graph = g.build_graph(model, arch)
    x_train = torch.from_numpy(splits.x_train)
    batches = [x_train[i : i + 64] for i in range(0, 256, 64)]
    stats = collect_stats(model, graph, batches, points=10, seed=0)
    x_val, y_val = torch.from_numpy(splits.x_val), torch.from_numpy(splits.y_val)
    accuracy = {}
    for fixed in (False, True):
        env = PruningEnv(
            model,
            graph,
            g.FLOPS,
            EnvSettings(target_ratio=0.25, reconstruct=fixed, recalibrate_bn=fixed),
            stats=stats,
            bn_batches=batches,
            x_val=x_val,
            y_val=y_val,
        )
        outcome = env.evaluate(env.uniform_counts())
        assert outcome.cost_ratio <= 0.25
        accuracy[fixed] = outcome.accuracy
    dense = trainer.evaluate(model, x_val, y_val)
    assert accuracy[True] > accuracy[False] + 0.1
    assert accuracy[True] > dense - 0.1
