"""An architecture's size is known from its dict before anything is allocated, for every kit family."""

from __future__ import annotations

import resource
import time

import pytest

from search_spaces.kit import models, sizing
from search_spaces.kit.models import ModelError

FAMILIES = ["mlp", "vgg", "resnet", "mobilenet", "pathlevel"]


@pytest.mark.parametrize("name", FAMILIES)
def test_the_count_is_the_built_model_s(name: str) -> None:
    arch = {"name": name, "input_shape": [1, 8, 8], "num_classes": 10}
    model = models.build_model(arch)
    size = sizing.arch_size(arch)
    assert size.params == sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    assert size.activations > 0 and 0 < size.layers <= sizing.MAX_LAYERS


def test_a_huge_layer_is_counted_without_being_allocated() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    size = sizing.arch_size({"name": "mlp", "input_shape": [100_000], "hidden": [100_000] * 8, "num_classes": 2})
    assert size.params > 8 * 10**10
    assert time.monotonic() - t0 < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB


def test_limits_refuse_with_the_numbers() -> None:
    limits = sizing.SizeLimits(max_params=1_000_000, max_activations=1_000_000)
    sizing.check_size({"name": "mlp", "input_shape": [16], "num_classes": 5}, limits)
    with pytest.raises(ModelError, match="parameters; the limit is 1,000,000"):
        sizing.check_size({"name": "mlp", "input_shape": [16000], "hidden": [16000], "num_classes": 2}, limits)
    with pytest.raises(ModelError, match="activations per sample"):
        sizing.check_size({"name": "vgg", "input_shape": [3, 512, 512], "widths": [8], "num_classes": 2}, limits)


@pytest.mark.parametrize(
    "arch",
    [
        {"name": "vgg", "input_shape": [1, 8, 8], "num_classes": 2, "widths": [4] * 64, "convs_per_stage": 100_000},
        {"name": "pathlevel", "input_shape": [1, 8, 8], "num_classes": 2, "widths": [4] * 64, "blocks_per_stage": 4096},
        {"name": "pathlevel", "input_shape": [1, 8, 8], "num_classes": 2, "widths": [4] * 100_000},
    ],
)
def test_deep_networks_are_refused_from_their_dict_at_once(arch: dict) -> None:
    t0 = time.monotonic()
    with pytest.raises(ModelError, match="limit"):
        sizing.arch_size(arch)
    assert time.monotonic() - t0 < 1
