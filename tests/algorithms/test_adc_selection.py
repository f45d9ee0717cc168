"""adc_prune's channel rounding default and the selection split the final policy is chosen on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from search_spaces.adc import search as S
from search_spaces.adc_prune import AdcPrune
from search_spaces.base import ConfigError, JobInputs, MemoryReporter
from search_spaces.kit import datasets


def test_latency_mode_rounds_channels_to_8_by_default_and_an_explicit_value_wins() -> None:
    kind = AdcPrune()
    assert kind.validate({})["channel_round"] is None
    assert S.AdcConfig.from_config(kind.validate({"mode": "latency"})).rounding == 8
    assert S.AdcConfig.from_config(kind.validate({"mode": "flops"})).rounding == 1
    assert S.AdcConfig.from_config(kind.validate({"mode": "latency", "channel_round": 2})).rounding == 2
    assert S.AdcConfig(mode="latency").env_settings().channel_round == 8


def test_validation_halves_are_stratified_disjoint_and_cover_the_split() -> None:
    y = np.repeat(np.arange(4), [5, 6, 7, 8])
    first, second = S.halves(y, seed=3)
    assert len(np.intersect1d(first, second)) == 0 and sorted(np.concatenate([first, second])) == list(range(len(y)))
    for label, count in enumerate([5, 6, 7, 8]):
        assert (y[first] == label).sum() == (count + 1) // 2 and (y[second] == label).sum() == count // 2
    assert np.array_equal(S.halves(y, seed=3)[0], first)


def test_the_kept_policy_is_chosen_on_the_selection_split(tmp_path: Path) -> None:
    kind = AdcPrune()
    config = kind.validate({**kind.tiny_config, "episodes": 8, "warmup_episodes": 4, "fine_tune_epochs": 0})
    torch.set_num_threads(1)
    result = kind.run(config, JobInputs(dataset="digits", workdir=tmp_path), MemoryReporter())
    selection = result["selection"]
    candidates = selection["candidates"]
    assert 1 <= len(candidates) <= S.SELECTION_CANDIDATES
    rewards = [c["reward"] for c in candidates]
    assert rewards == sorted(rewards, reverse=True)  # the leaders by the agent's reward
    chosen = next(c for c in candidates if c["episode"] == selection["chosen_episode"])
    assert chosen["selection_reward"] == max(c["selection_reward"] for c in candidates)
    rows = {row["model"]: row for row in result["table"]}
    assert rows["amc"]["selection_accuracy"] == chosen["selection_accuracy"]
    assert result["channel_round"] == 1
    data = S.load_data(datasets.load("digits", seed=0), S.AdcConfig())
    val = {tuple(x.flatten().tolist()) for x in data.x_val}
    assert not val & {tuple(x.flatten().tolist()) for x in data.x_sel}  # the two halves share no image


def test_an_unreachable_latency_target_fails_before_the_search_naming_the_smallest_reachable(tmp_path: Path) -> None:
    # 5% of the measured latency: above min_keep² (what the submit check can know without the machine's latency
    # model) but below the floor every layer at min_keep leaves (the per-layer overheads do not shrink).
    kind = AdcPrune()
    config = kind.validate({**kind.tiny_config, "mode": "latency", "target_ratio": 0.05})
    assert kind.check(config) == {}
    reporter = MemoryReporter()
    torch.set_num_threads(1)
    with pytest.raises(ConfigError) as caught:
        kind.run(config, JobInputs(dataset="digits", workdir=tmp_path), reporter)
    (message,) = caught.value.errors["target_ratio"]
    floor = float(message.split("keeps ")[1].split(" of")[0])
    assert 0.05 < floor < 1 and f"at least {floor:.3f}" in message and "rounded to 8" in message
    assert reporter.trials == {}  # refused before the first episode
