"""The hls4ml sweep: an Optuna multi-objective search over reuse factor, fixed-point precision, strategy
and pruning of a small trained MLP, every trial converted with hls4ml's PyTorch frontend, its bit-accurate
emulation compiled (or reused) to measure fixed-point accuracy, and its applied configuration read back
from the generated project for the resource and latency estimate.

Trials whose numerics are the same (same precisions, strategy and pruned weights; only the reuse factors
differ) share one compiled emulation: the reuse factor changes how many cycles and multipliers the
hardware uses, not the arithmetic, so the fixed-point accuracy is cached under that key and only the
project files are written again (milliseconds) for the applied configuration.

The parts: the typed config and errors in :mod:`.config`, the network in :mod:`.network` (converted by
:mod:`.convert`), one trial in :mod:`.trial` (its emulation in :mod:`.emulation`), the study in :mod:`.study`
and the result in :mod:`.results`; this module runs them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from search_spaces.base import JobInputs, Reporter, check_stop
from search_spaces.hls.config import Settings
from search_spaces.hls.network import PRETRAIN_SHARE, prepare_network
from search_spaces.hls.results import summarise
from search_spaces.hls.study import finished, open_study, reconcile
from search_spaces.hls.trial import _Run, run_one
from search_spaces.kit import trainer

log = logging.getLogger(__name__)


def sweep(settings: Settings, inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
    """Run the sweep; returns the result summary. Trials stop early when the job is cancelled."""
    with trainer.torch_threads(inputs.threads):
        return _sweep(settings, inputs, reporter)


def _sweep(settings: Settings, inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
    from hls4ml.backends import get_backend

    workdir = Path(inputs.workdir) / "hls4ml"
    workdir.mkdir(parents=True, exist_ok=True)
    net = prepare_network(settings, inputs, reporter)
    check_stop(reporter)
    backend = get_backend("Vitis")
    valid_rf: dict[str, list[int]] = {}
    for name in net.dense_names:
        n_in, n_out = net.shapes[name]
        valid = set(backend.get_valid_reuse_factors(n_in, n_out))
        chosen = [rf for rf in settings.reuse_factors if rf in valid]
        valid_rf[name] = chosen or [min(valid, key=lambda v: abs(v - settings.reuse_factors[0]))]
    study = open_study(settings, inputs)
    run = _Run(settings, inputs, reporter, net, study, workdir, valid_rf)
    reconcile(run, reporter.completed_trials())
    while len(finished(study)) < settings.n_trials:
        check_stop(reporter)
        run_one(run)
        done = len(finished(study))
        reporter.progress(
            PRETRAIN_SHARE + (1 - PRETRAIN_SHARE) * 0.95 * done / settings.n_trials, f"trial {done}/{settings.n_trials}"
        )
    return summarise(run)
