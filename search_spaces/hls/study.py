"""The Optuna study of the hls4ml sweep: opening it (TPE, three objectives), a resume's reconciling of the
study with the trials the service kept, its finished trials, and the Pareto set of fitting trials."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from search_spaces.base import JobInputs, TrialRecord
from search_spaces.hls.config import Settings
from search_spaces.hls.trial import _Run, distributions
from search_spaces.kit.studies import pareto_mask, rdb_storage


def open_study(run_settings: Settings, inputs: JobInputs) -> optuna.Study:
    storage = rdb_storage(inputs.optuna_storage) if inputs.optuna_storage else None
    startup = max(4, min(10, run_settings.n_trials // 4))
    sampler = optuna.samplers.TPESampler(seed=run_settings.seed, n_startup_trials=startup)
    return optuna.create_study(
        storage=storage,
        sampler=sampler,
        load_if_exists=True,
        study_name=inputs.study_name or f"hls4ml-sweep-seed{run_settings.seed}",
        directions=["maximize", "minimize", "minimize"],
    )


def reconcile(run: _Run, records: list[TrialRecord]) -> None:
    """On a resume: trials a killed run left RUNNING in the study are closed (with the values the service
    kept, or as failed); with in-memory storage the service's records are added back to the study."""
    by_number = {r.number: r for r in records}
    for t in run.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        record = by_number.get(t.number)
        if record is not None and record.state == "complete" and record.values:
            run.study.tell(t.number, values=list(record.values))
        else:
            run.study.tell(t.number, state=TrialState.FAIL)
    if run.study.trials or not records:
        return
    dists = distributions(run)
    for record in sorted(records, key=lambda r: r.number):
        params = {k: v for k, v in record.params.items() if k in dists}
        values = list(record.values) if record.state == "complete" and record.values else None
        complete = values is not None
        try:
            frozen = optuna.trial.create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                values=values,
                state=TrialState.COMPLETE if complete else TrialState.FAIL,
                user_attrs={"metrics": dict(record.metrics), "resumed": True},
            )
        except ValueError:
            continue
        run.study.add_trial(frozen)


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))


def pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows that fit the part and that no other fitting row beats on accuracy, cost and latency at once."""
    fitting = [r for r in rows if r["metrics"].get("fits", True)]
    if not fitting:
        return []
    mask = pareto_mask([r["values"] for r in fitting], ("maximize", "minimize", "minimize"))
    front = (r for r, on in zip(fitting, mask, strict=True) if on)
    return sorted(front, key=lambda r: (r["values"][1], r["values"][2]))
