"""The Optuna study of the granularity sweep: samplers and search space, one trial's run and report, the worker
loop several processes share on one RDB study (heartbeats, stale trials), and a resume's seeding.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search_spaces.base import JobCancelled, JobInputs, TrialRecord, check_stop
from search_spaces.granularity.config import SweepConfig
from search_spaces.granularity.trial import (
    PRETRAIN_SHARE,
    RetrainPruned,
    SweepRun,
    TrialOutcome,
    prune_configuration,
)
from search_spaces.kit.models import cpu_state
from search_spaces.kit.studies import rdb_storage

HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 30


def _suggest(trial: optuna.Trial, s: SweepConfig) -> dict[str, Any]:
    if s.grid:  # the GridSampler hands out the values; the ranges only have to hold them
        return {
            "granularity": trial.suggest_categorical("granularity", list(s.granularities)),
            "sparsity": trial.suggest_float("sparsity", min(s.sparsity_grid), max(s.sparsity_grid)),
            "norm": trial.suggest_categorical("norm", list(s.norms)),
            "retrain_seed": trial.suggest_int("retrain_seed", 0, s.seeds - 1),
        }
    params: dict[str, Any] = {"granularity": trial.suggest_categorical("granularity", list(s.granularities))}
    if s.mode == "multi":
        params["sparsity"] = trial.suggest_float("sparsity", s.sparsity_min, s.sparsity_max)
    params["norm"] = trial.suggest_categorical("norm", list(s.norms))
    params["retrain_epochs"] = trial.suggest_int("retrain_epochs", 1, s.retrain_epochs)
    return params


def _distributions(s: SweepConfig) -> dict[str, optuna.distributions.BaseDistribution]:
    if s.grid:
        return {
            "granularity": optuna.distributions.CategoricalDistribution(list(s.granularities)),
            "sparsity": optuna.distributions.FloatDistribution(min(s.sparsity_grid), max(s.sparsity_grid)),
            "norm": optuna.distributions.CategoricalDistribution(list(s.norms)),
            "retrain_seed": optuna.distributions.IntDistribution(0, s.seeds - 1),
        }
    dists: dict[str, optuna.distributions.BaseDistribution] = {
        "granularity": optuna.distributions.CategoricalDistribution(list(s.granularities)),
        "norm": optuna.distributions.CategoricalDistribution(list(s.norms)),
        "retrain_epochs": optuna.distributions.IntDistribution(1, s.retrain_epochs),
    }
    if s.mode == "multi":
        dists["sparsity"] = optuna.distributions.FloatDistribution(s.sparsity_min, s.sparsity_max)
    return dists


def trial_values(metrics: Mapping[str, Any], mode: str) -> list[float]:
    if mode == "multi":
        return [float(metrics["accuracy"]), float(metrics["compression_ratio"])]
    return [float(metrics["accuracy"])]


def best_key(metrics: Mapping[str, Any]) -> tuple[Any, ...]:
    """Best per granularity: within the accuracy threshold, the highest compression ratio; otherwise the
    most accurate (a fallback, flagged ``within_threshold: false``)."""
    if metrics.get("within_threshold"):
        return (1, metrics["compression_ratio"], metrics["accuracy"])
    return (0, metrics["accuracy"], metrics["compression_ratio"])


def _run_trial(trial: optuna.Trial, run: SweepRun) -> None:
    number = run.report_number(trial.number)
    started = time.time()
    params = _suggest(trial, run.settings)
    trial.set_user_attr("report_number", number)
    run.reporter.trial(number, params=params, state="running", started=started)
    try:
        with _TrialHeartbeat(run.storage, trial._trial_id):
            outcome = prune_configuration(params, number=number, run=run, trial=trial)
    except RetrainPruned as exc:
        run.study.tell(trial, state=TrialState.PRUNED)
        metrics = {"accuracy": exc.accuracy, "pruned_after_epoch": exc.epoch, "granularity": params["granularity"]}
        run.reporter.trial(
            number, params=params, state="pruned", metrics=metrics, started=started, finished=time.time()
        )
        return
    except BaseException as exc:
        reason = "cancelled" if isinstance(exc, JobCancelled) else f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("failure", reason[:500])
        run.study.tell(trial, state=TrialState.FAIL)
        run.reporter.trial(
            number, params=params, state="failed", metrics={"error": reason}, started=started, finished=time.time()
        )
        raise
    trial.set_user_attr("metrics", outcome.metrics)
    run.study.tell(trial, values=trial_values(outcome.metrics, run.settings.mode))
    _keep_if_best(run, number, outcome)
    values = trial_values(outcome.metrics, "multi")
    run.reporter.trial(
        number,
        params=params,
        state="complete",
        values=trial_values(outcome.metrics, run.settings.mode),
        metrics=outcome.metrics,
        started=started,
        finished=time.time(),
    )
    run.reporter.metric("trial_accuracy", values[0], step=number)
    run.reporter.metric("trial_compression_ratio", values[1], step=number)


def _keep_if_best(run: SweepRun, number: int, outcome: TrialOutcome) -> None:
    key = best_key(outcome.metrics)
    granularity = outcome.metrics["granularity"]
    with run.best_lock:
        previous = run.best_keys.get(granularity)
        if previous is None or key > previous[0]:
            if previous is not None:
                run.kept_models.pop(previous[1], None)
            run.best_keys[granularity] = (key, number)
            run.kept_models[number] = cpu_state(outcome.model)


class _TrialHeartbeat:
    """Records an RDB heartbeat for a running trial, so a killed worker's trial is failed as stale."""

    def __init__(self, storage: optuna.storages.RDBStorage | None, trial_id: int) -> None:
        self.storage, self.trial_id = storage, trial_id
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def _beat(self) -> None:
        assert self.storage is not None
        while not self.done.wait(HEARTBEAT_SECONDS):
            self.storage.record_heartbeat(self.trial_id)

    def __enter__(self) -> _TrialHeartbeat:
        if self.storage is not None:
            self.storage.record_heartbeat(self.trial_id)
            self.thread = threading.Thread(target=self._beat, daemon=True, name=f"optuna-heartbeat-{self.trial_id}")
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join()


# --- the study --------------------------------------------------------------------------------------

COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def fail_stale(run: SweepRun) -> None:
    if run.storage is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(run.study)


def _counted(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=COUNTED_STATES)


def _worker_loop(run: SweepRun) -> None:
    """Ask for trials until the study holds ``n_trials`` finished or running ones, then wait for the
    other workers' running trials (a stale one is failed after the grace period and replaced)."""
    n = run.settings.trial_count
    while True:
        check_stop(run.reporter)
        with run.ask_lock:
            fail_stale(run)
            counted = _counted(run.study)
            trial = None
            if len(counted) < n:
                with warnings.catch_warnings():  # heartbeats are recorded by _TrialHeartbeat, not optimize()
                    warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                    trial = run.study.ask()
            if trial is not None:
                run.mine.add(trial.number)
        if trial is None:
            others = [t for t in counted if t.state == TrialState.RUNNING and t.number not in run.mine]
            if not others:
                return
            time.sleep(min(HEARTBEAT_SECONDS, 2))
            continue
        # Another process may have asked in the same instant: the trial past the n-th counted one yields.
        ahead = [t for t in _counted(run.study) if t.number < trial.number]
        if len(ahead) >= n:
            trial.set_user_attr("surplus", True)
            run.study.tell(trial, state=TrialState.FAIL)
            continue
        _run_trial(trial, run)
        done = len(run.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        run.reporter.progress(PRETRAIN_SHARE + (1 - PRETRAIN_SHARE) * min(done, n) / n, f"trial {done}/{n}")


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler for an ask-and-tell loop: the base class stops the study once the grid is done,
    which works only inside ``study.optimize``; here :func:`_worker_loop` stops asking at ``trial_count``."""

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        return None


def open_study(
    settings: SweepConfig, inputs: JobInputs, *, worker_index: int = 0
) -> tuple[optuna.Study, optuna.storages.RDBStorage | None]:
    """Create or load the study (``load_if_exists``), seeded sampler, pruner for single-objective mode.

    ``worker_index`` shifts the sampler's seed so that several worker processes of one study do not
    draw the same random start-up configurations.
    """
    storage = (
        rdb_storage(inputs.optuna_storage, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
        if inputs.optuna_storage
        else None
    )
    seed = settings.seed + 7919 * worker_index
    sampler: optuna.samplers.BaseSampler
    if settings.grid:
        # Every worker shuffles the grid alike: a grid id must mean the same point in every process.
        sampler = _AskTellGridSampler(settings.grid_space(), seed=settings.seed)
    elif settings.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(population_size=max(4, min(20, settings.n_trials // 3)), seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(4, min(10, settings.n_trials // 4)))
    pruner: optuna.pruners.BasePruner
    if settings.mode == "single":
        # Steps are retrain epochs; the first prune step's epochs are warm-up (the accuracy dip right
        # after pruning says little about where retraining ends).
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=settings.retrain_epochs)
        directions = [optuna.study.StudyDirection.MAXIMIZE]
    else:
        pruner = optuna.pruners.NopPruner()
        directions = [optuna.study.StudyDirection.MAXIMIZE] * 2
    study = optuna.create_study(
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        directions=directions,
        study_name=inputs.study_name or f"granularity-sweep-seed{settings.seed}",
        load_if_exists=True,
    )
    return study, storage


def seed_from_records(run: SweepRun, records: list[TrialRecord]) -> None:
    """An in-memory study on a resume: add the trials the service kept, so they are neither rerun nor
    forgotten by the sampler, and number new trials after them."""
    if not records:
        return
    dists = _distributions(run.settings)
    for record in sorted(records, key=lambda r: r.number):
        if record.state not in ("complete", "pruned"):
            continue
        params = {k: record.params[k] for k in dists if k in record.params}
        values = None
        if record.state == "complete":
            values = list(record.values) if record.values is not None else None
            if values is None:
                values = trial_values(record.metrics, run.settings.mode)
        try:
            frozen = optuna.trial.create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                values=values,
                state=TrialState.COMPLETE if record.state == "complete" else TrialState.PRUNED,
                user_attrs={"report_number": record.number, "metrics": dict(record.metrics), "resumed": True},
            )
        except ValueError:
            continue  # a record this config cannot hold (its bounds changed): leave it out of the study
        run.study.add_trial(frozen)
    added = len(run.study.trials)
    run.number_offset = max(r.number for r in records) + 1 - added


def report_failed(run: SweepRun) -> None:
    """Trials the study failed as stale (a killed worker's) are marked failed for the service too; the
    ones that failed in a running driver were reported then."""
    for t in run.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if not t.user_attrs.get("surplus") and "failure" not in t.user_attrs:
            number = int(t.user_attrs.get("report_number", t.number))
            run.reporter.trial(
                number,
                params=dict(t.params),
                state="failed",
                metrics={"error": "worker lost"},
                started=t.datetime_start.timestamp() if t.datetime_start else None,
                finished=t.datetime_complete.timestamp() if t.datetime_complete else None,
            )


def optimise(run: SweepRun) -> None:
    """Run this process's share of the study: trials until the study holds ``trial_count``."""
    _worker_loop(run)
