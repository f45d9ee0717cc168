"""Configs carry no value the algorithm cannot take: hls4ml's input precision has bounded widths."""

from __future__ import annotations

import pytest

from search_spaces import registry
from search_spaces.base import ConfigError


@pytest.mark.parametrize(
    "precision", ["ap_fixed<99999999999999999999,6>", "ap_fixed<65,6>", "ap_fixed<0,0>", "ap_fixed<8,9>"]
)
def test_an_input_precision_beyond_what_hls4ml_builds_is_refused(precision: str) -> None:
    with pytest.raises(ConfigError) as caught:
        registry.get_kind("hls4ml_sweep").validate({"input_precision": precision})
    assert "input_precision" in caught.value.errors


@pytest.mark.parametrize("precision", ["ap_fixed<16,6>", "ap_ufixed<8,0>", "ap_fixed<64,64>"])
def test_sound_input_precisions_are_taken(precision: str) -> None:
    assert registry.get_kind("hls4ml_sweep").validate({"input_precision": precision})["input_precision"] == precision
