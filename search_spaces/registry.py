"""The one place job kinds are registered: adding a kind is one module and one line here."""

from __future__ import annotations

from search_spaces.adc_prune import AdcPrune
from search_spaces.base import JobKind
from search_spaces.dgc_train import DgcTrain
from search_spaces.granularity_sweep import GranularitySweep
from search_spaces.hls4ml_sweep import Hls4mlSweep
from search_spaces.mlp_sweep import MlpSweep
from search_spaces.pathlevel_nas import PathlevelNas
from search_spaces.winograd_prune import WinogradPrune

KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        MlpSweep(),
        GranularitySweep(),
        DgcTrain(),
        Hls4mlSweep(),
        AdcPrune(),
        PathlevelNas(),
        WinogradPrune(),
    )
}


def get_kind(name: str) -> JobKind:
    """The registered kind called ``name``; ``KeyError`` if there is none."""
    return KINDS[name]
