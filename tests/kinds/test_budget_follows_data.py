"""Every kind's budget counts the dataset it runs on: more samples or more numbers per sample never cost less,
and an upload is not budgeted as the built-in dataset the timings were measured on."""

from __future__ import annotations

import dataclasses

import pytest

from search_spaces import registry
from search_spaces.base import DataShape


def _untrimmed(kind) -> dict:  # noqa: ANN001 - the defaults, without a training-set cap that hides the size
    config = kind.validate({})
    return {**config, "max_train": None} if "max_train" in config else config


@pytest.mark.parametrize("name", sorted(registry.KINDS))
def test_a_bigger_dataset_costs_more(name: str) -> None:
    kind = registry.get_kind(name)
    config = _untrimmed(kind)
    builtin = DataShape.builtin(kind.default_dataset)
    assert kind.budget(config, builtin) == kind.budget(config, kind.default_dataset) == kind.budget(config)
    upload = dataclasses.replace(builtin, name="")
    more_samples = dataclasses.replace(upload, num_samples=(builtin.num_samples or 1) * 20)
    assert kind.budget(config, more_samples) > kind.budget(config, builtin)
    if builtin.modality == "tabular":
        wider = dataclasses.replace(upload, input_shape=(builtin.features * 100,))
        assert kind.budget(config, wider) > kind.budget(config, builtin)
