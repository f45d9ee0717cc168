"""The Optuna study over pruning granularity, sparsity, saliency norm and retrain epochs.

Mao et al., "Exploring the Regularity of Sparse Structure in Convolutional Neural Networks"
(arXiv:1705.08922): prune a trained CNN at fine / vector / kernel / filter granularity, retrain, and
compare accuracy against the real storage cost including the sparse index. Here Optuna drives the sweep:

* the default ``grid`` sampler (Optuna's ``GridSampler``): every granularity × every sparsity of
  ``sparsity_grid`` × every saliency norm × ``seeds`` retraining seeds, ``retrain_epochs`` per prune step;
  per granularity and seed the accuracy-vs-sparsity curve is cut at the accuracy threshold
  (:mod:`.curve`) and the compression ratio read there, so granularities are compared at equal accuracy
  instead of by the best of a few noisy trials;
* ``multi`` mode with ``tpe``/``nsga2``: maximise (validation accuracy, compression ratio) over
  granularity, target sparsity, saliency norm and retrain epochs (TPE or NSGA-II, seeded); no trial
  pruning (Optuna does not prune multi-objective studies).
* ``single`` mode: maximise validation accuracy at a fixed compression budget: each trial's sparsity is
  the smallest one whose storage (on the dense weights) reaches ``target_compression``; a
  ``MedianPruner`` stops hopeless trials after any retrain epoch, and they are stored as pruned.

The study lives in an RDB (``inputs.optuna_storage``; ``None`` keeps it in memory), so several workers
can run trials of one study at once and ``optuna-dashboard`` can show it. ``n_trials`` counts the whole
study (finished plus running trials of every worker), so two workers together run N trials, not 2N; the
grid sampler runs its grid once instead.
"""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from search_spaces.base import JobCancelled, JobInputs, Reporter, TrialRecord, check_stop, json_safe
from search_spaces.granularity.curve import CurvePoint, threshold_crossing
from search_spaces.granularity.storage import StorageReport, model_storage
from search_spaces.kit.config import typed_config
from search_spaces.kit.models import TrainedModel, cpu_state
from search_spaces.kit.pruning import (
    GRANULARITIES,
    Masks,
    counted_weights,
    group_mask,
    group_size,
    mask_sparsity,
    prunable_weights,
    prune_and_retrain,
)
from search_spaces.kit.studies import pareto_mask, rdb_storage
from search_spaces.kit.trainer import torch_threads as threads

PRETRAIN_SHARE = 0.1  # of the progress bar
# The kit's small models gain little from intra-op threads, and two threads collapse when anything else
# wants a core: 30 digits trials took 10 s with one thread and 44-214 s with two while another process
# was busy on the 2-core machine. Parallelism comes from several worker processes on one study instead
# (``parallel_trials``: the job plus helper tasks, see :func:`help_sweep`).
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 30


@dataclass(frozen=True)
class SweepConfig:
    """The sweep's knobs; :meth:`from_config` reads a validated ``granularity_sweep`` config.

    ``value_bits = 8`` is Deep Compression's width for quantised conv weights, the format Mao et al. count
    storage in; ``index_bits = 4`` is a short relative index (the paper's exact widths were not at hand
    when this was written: both are config knobs). ``dense_bits = 32`` is float32.

    With ``sampler = "grid"`` the study is the grid granularities × ``sparsity_grid`` × norms × ``seeds``
    (``n_trials`` and the sparsity range are not used) and every trial retrains ``retrain_epochs`` per
    prune step; the samplers draw ``retrain_epochs`` from 1 to it.
    """

    granularities: tuple[str, ...] = GRANULARITIES
    sparsity_min: float = 0.5
    sparsity_max: float = 0.95
    norms: tuple[str, ...] = ("l1",)
    n_trials: int = 400
    sparsity_grid: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
    seeds: int = 3
    dense_first_conv: bool = True
    val_fraction: float = 0.3
    retrain_epochs: int = 6
    prune_steps: int = 3
    pretrain_epochs: int = 30
    lr: float = 0.01
    pretrain_lr: float = 0.05
    batch_size: int = 64
    value_bits: int = 8
    index_bits: int = 4
    dense_bits: int = 32
    vector_size: int = 4
    accuracy_threshold: float = 0.005
    mode: str = "multi"
    target_compression: float = 8.0
    sampler: str = "grid"
    parallel_trials: int = 1
    seed: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SweepConfig:
        return typed_config(cls, config)

    @property
    def grid(self) -> bool:
        return self.sampler == "grid"

    @property
    def trial_count(self) -> int:
        """Trials in the whole study: the grid's size, or ``n_trials``."""
        if self.grid:
            return len(self.granularities) * len(self.sparsity_grid) * len(self.norms) * self.seeds
        return self.n_trials

    def grid_space(self) -> dict[str, list[Any]]:
        """The ``GridSampler`` search space (every combination is one trial)."""
        return {
            "granularity": list(self.granularities),
            "sparsity": [float(x) for x in self.sparsity_grid],
            "norm": list(self.norms),
            "retrain_seed": list(range(self.seeds)),
        }


@dataclass
class TrialOutcome:
    """What pruning one configuration gave."""

    model: nn.Module
    masks: Masks
    metrics: dict[str, Any]


@dataclass
class _Run:
    """Everything the workers of one process share."""

    settings: SweepConfig
    splits: Any
    dense: TrainedModel
    device: str
    reporter: Reporter
    study: optuna.Study
    storage: optuna.storages.RDBStorage | None
    number_offset: int = 0
    ask_lock: threading.Lock = field(default_factory=threading.Lock)
    best_lock: threading.Lock = field(default_factory=threading.Lock)
    mine: set[int] = field(default_factory=set)
    kept_models: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    best_keys: dict[str, tuple[tuple[Any, ...], int]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def report_number(self, trial_number: int) -> int:
        return trial_number + self.number_offset


# --- storage of a pruned model ----------------------------------------------------------------------


def measure_storage(model: nn.Module, masks: Masks, granularity: str, settings: SweepConfig) -> StorageReport:
    """Bits of ``model``'s weights in the relative-index format of :mod:`.storage` (Mao et al., Sec. 4)."""
    weights = counted_weights(model)
    sizes = {name: p.numel() for name, p in weights.items()}
    np_masks = {name: m.detach().cpu().numpy() for name, m in masks.items()}
    groups = {name: group_size(weights[name].shape, granularity, vector_size=settings.vector_size) for name in masks}
    return model_storage(
        sizes,
        np_masks,
        groups,
        value_bits=settings.value_bits,
        index_bits=settings.index_bits,
        dense_value_bits=settings.dense_bits,
    )


def sparsity_for_ratio(
    model: nn.Module, granularity: str, norm: str, target_ratio: float, settings: SweepConfig, *, upper: float = 0.995
) -> float:
    """Smallest per-layer sparsity whose masks on ``model``'s weights reach ``target_ratio`` (bisection).

    Used in single-objective mode: the compression budget fixes the sparsity each granularity needs,
    so coarse groups, which save index bits, need less sparsity for the same ratio (Mao et al., Sec. 4).
    Returns ``upper`` when even that does not reach the target.
    """
    weights = prunable_weights(model, dense_first_conv=settings.dense_first_conv)

    def ratio(level: float) -> float:
        masks = {
            name: group_mask(w, granularity, level, norm, vector_size=settings.vector_size)
            for name, w in weights.items()
        }
        return measure_storage(model, masks, granularity, settings).compression_ratio

    low, high = 0.0, upper
    if ratio(high) < target_ratio:
        return high
    if ratio(low) >= target_ratio:
        return low
    for _ in range(30):
        mid = (low + high) / 2
        if ratio(mid) >= target_ratio:
            high = mid
        else:
            low = mid
        if high - low < 1e-4:
            break
    return high


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over every counted (conv and linear) weight, the classifier included."""
    weights = counted_weights(model).values()
    total = sum(p.numel() for p in weights)
    return sum(int((p == 0).sum()) for p in weights) / total if total else 0.0


# --- the dense model --------------------------------------------------------------------------------


def prepare_dense(settings: SweepConfig, inputs: JobInputs, splits: Any, reporter: Reporter) -> TrainedModel:
    """The model to prune: the checkpointed one on a resume, the input model, or a freshly trained one.

    Without an input model the kit's default VGG-style CNN (an MLP for tabular data) is trained for
    ``pretrain_epochs``; its weights are checkpointed so that a resume does not train it again.
    """
    from search_spaces.kit import models, trainer

    blob = reporter.load_checkpoint()
    if blob is not None:
        return TrainedModel.from_bytes(blob)
    if inputs.model_path is not None:
        model, arch = models.load_model(inputs.model_path, architecture=inputs.model_arch)
        model = model.to(inputs.device)
        acc = trainer.evaluate(model, splits.x_val, splits.y_val, device=inputs.device)
        dense = TrainedModel(dict(arch), cpu_state(model), float(acc), "input model")
    else:
        name = "mlp" if splits.info.modality == "tabular" else "vgg"
        arch = dict(inputs.model_arch) if inputs.model_arch else models.default_arch(name, splits.info)
        trainer.set_seed(settings.seed)
        model = models.build_model(arch).to(inputs.device)
        reporter.progress(0.0, "pretrain")

        def pretrain_progress(epoch: int, result: Any) -> None:
            reporter.progress(
                PRETRAIN_SHARE * (epoch + 1) / settings.pretrain_epochs,
                f"pretrain epoch {epoch + 1}/{settings.pretrain_epochs}: validation accuracy {result.val_acc:.4f}",
            )

        result = trainer.train(
            model,
            splits.x_train,
            splits.y_train,
            epochs=settings.pretrain_epochs,
            lr=settings.pretrain_lr,
            batch_size=settings.batch_size,
            device=inputs.device,
            seed=settings.seed,
            optimizer="sgd",
            x_val=splits.x_val,
            y_val=splits.y_val,
            reporter=reporter,
            metric_prefix="pretrain/",
            on_epoch_end=pretrain_progress,
        )
        acc = trainer.evaluate(model, splits.x_val, splits.y_val, device=inputs.device)
        dense = TrainedModel(dict(arch), cpu_state(model), float(acc), f"trained {result.epochs_done} epochs")
    reporter.save_checkpoint(dense.to_bytes())
    reporter.progress(PRETRAIN_SHARE, f"dense model: validation accuracy {dense.val_accuracy:.4f}")
    return dense


# --- one trial --------------------------------------------------------------------------------------


def prune_configuration(
    params: Mapping[str, Any], *, number: int, run: _Run, trial: optuna.Trial | None = None, report: bool = True
) -> TrialOutcome:
    """Prune a copy of the dense model with ``params`` (iteratively, retraining with the masks held).

    Deterministic in (params, number, seed), so a trial of an earlier run or another worker can be
    rebuilt. With ``trial`` in single-objective mode the validation accuracy is reported after every
    retrain epoch and a hopeless trial stops early (``pruned``).
    """
    from search_spaces.kit import trainer

    s, splits, reporter = run.settings, run.splits, run.reporter
    model = run.dense.build(run.device)
    granularity, norm = str(params["granularity"]), str(params["norm"])
    epochs = int(params.get("retrain_epochs", s.retrain_epochs))
    if s.mode == "single":
        target = sparsity_for_ratio(model, granularity, norm, s.target_compression, s)
    else:
        target = float(params["sparsity"])
    # A grid trial's seed follows its retraining seed only, so every granularity and sparsity of one seed
    # sees the same batches (common random numbers: their differences are not batch-order noise).
    seed = s.seed * 100_003 + (7_919 * int(params["retrain_seed"]) if "retrain_seed" in params else number)
    steps_per_epoch = math.ceil(len(splits.y_train) / s.batch_size)
    trial_reporter = _TrialReporter(reporter, number, quiet=not report)
    state: dict[str, Any] = {"epoch": 0, "acc": float("nan")}

    def retrain(step: int, masks: Masks) -> None:
        sparsity_now = mask_sparsity(masks)

        def after_epoch(epoch: int, result: Any) -> None:
            state["epoch"] += 1
            acc = state["acc"] = float(result.val_acc)
            trial_reporter.metric("val_accuracy", acc, state["epoch"])
            trial_reporter.metric("sparsity", sparsity_now, state["epoch"])
            if trial is not None and s.mode == "single":
                trial.report(acc, state["epoch"])
                if trial.should_prune():
                    raise _Pruned(acc, state["epoch"])

        check_stop(reporter)
        trainer.train(
            model,
            splits.x_train,
            splits.y_train,
            epochs=epochs,
            lr=s.lr,
            batch_size=s.batch_size,
            device=run.device,
            seed=seed + 7 * step,
            optimizer="sgd",
            x_val=splits.x_val,
            y_val=splits.y_val,
            reporter=trial_reporter,
            metric_prefix="retrain/",
            step_offset=state["epoch"] * steps_per_epoch,
            masks=masks,
            on_epoch_end=after_epoch,
        )

    trainer.set_seed(seed)
    masks = prune_and_retrain(
        model,
        granularity=granularity,
        sparsity=target,
        norm=norm,
        prune_steps=s.prune_steps,
        vector_size=s.vector_size,
        retrain=retrain,
        dense_first_conv=s.dense_first_conv,
    )
    storage = measure_storage(model, masks, granularity, s)
    acc = state["acc"]
    metrics = {
        "accuracy": acc,
        "dense_accuracy": run.dense.val_accuracy,
        "accuracy_drop": run.dense.val_accuracy - acc,
        "within_threshold": bool(acc >= run.dense.val_accuracy - s.accuracy_threshold),
        "granularity": granularity,
        "norm": norm,
        "target_sparsity": target,
        "sparsity": weight_sparsity(model),
        "pruned_layer_sparsity": mask_sparsity(masks),
        "compression_ratio": storage.compression_ratio,
        "compressed_bits": storage.compressed_bits,
        "dense_bits": storage.dense_bits,
        "index_entries": storage.index_entries,
        "padding_entries": storage.padding_entries,
        "index_bits": s.index_bits,
        "value_bits": s.value_bits,
        "retrain_epochs": epochs,
        "prune_steps": s.prune_steps,
        "retrain_seed": int(params.get("retrain_seed", 0)),
        "dense_first_conv": s.dense_first_conv,
    }
    if s.mode == "single":
        metrics["target_compression"] = s.target_compression
        metrics["meets_budget"] = bool(storage.compression_ratio >= s.target_compression * (1 - 1e-9))
    return TrialOutcome(model, masks, metrics)


class _TrialReporter:
    """The run's reporter as the trainer sees it inside one trial: metric points carry the trial number
    (``quiet`` drops them, for a rebuild), a cancel still reaches the training loop."""

    def __init__(self, inner: Reporter, number: int, *, quiet: bool = False) -> None:
        self.inner, self.number, self.quiet = inner, number, quiet

    def progress(self, fraction: float, message: str = "") -> None:
        if not self.quiet:
            self.inner.progress(fraction, message)

    def trial(self, number: int, **kwargs: Any) -> None:
        self.inner.trial(number, **kwargs)

    def metric(self, name: str, value: float, step: int, trial: int | None = None) -> None:
        if not self.quiet:
            self.inner.metric(name, value, step, self.number if trial is None else trial)

    def artifact(self, name: str, path: Path, kind: str) -> None:
        self.inner.artifact(name, path, kind)

    def fpga_report(self, trial: int | None, fields: dict[str, Any]) -> None:
        self.inner.fpga_report(trial, fields)

    def should_stop(self) -> bool:
        return self.inner.should_stop()

    def save_checkpoint(self, state: bytes) -> None:
        self.inner.save_checkpoint(state)

    def load_checkpoint(self) -> bytes | None:
        return self.inner.load_checkpoint()

    def completed_trials(self) -> list[TrialRecord]:
        return self.inner.completed_trials()


class _Pruned(optuna.TrialPruned):
    """Optuna's pruner stopped the trial (single-objective mode) at ``epoch`` with ``accuracy``."""

    def __init__(self, accuracy: float, epoch: int) -> None:
        super().__init__(f"validation accuracy {accuracy:.4f} after retrain epoch {epoch}")
        self.accuracy, self.epoch = accuracy, epoch


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


def _values(metrics: Mapping[str, Any], mode: str) -> list[float]:
    if mode == "multi":
        return [float(metrics["accuracy"]), float(metrics["compression_ratio"])]
    return [float(metrics["accuracy"])]


def _best_key(metrics: Mapping[str, Any]) -> tuple[Any, ...]:
    """Best per granularity: within the accuracy threshold, the highest compression ratio; otherwise the
    most accurate (a fallback, flagged ``within_threshold: false``)."""
    if metrics.get("within_threshold"):
        return (1, metrics["compression_ratio"], metrics["accuracy"])
    return (0, metrics["accuracy"], metrics["compression_ratio"])


def _run_trial(trial: optuna.Trial, run: _Run) -> None:
    number = run.report_number(trial.number)
    started = time.time()
    params = _suggest(trial, run.settings)
    trial.set_user_attr("report_number", number)
    run.reporter.trial(number, params=params, state="running", started=started)
    try:
        with _TrialHeartbeat(run.storage, trial._trial_id):
            outcome = prune_configuration(params, number=number, run=run, trial=trial)
    except _Pruned as exc:
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
    run.study.tell(trial, values=_values(outcome.metrics, run.settings.mode))
    _keep_if_best(run, number, outcome)
    values = _values(outcome.metrics, "multi")
    run.reporter.trial(
        number,
        params=params,
        state="complete",
        values=_values(outcome.metrics, run.settings.mode),
        metrics=outcome.metrics,
        started=started,
        finished=time.time(),
    )
    run.reporter.metric("trial_accuracy", values[0], step=number)
    run.reporter.metric("trial_compression_ratio", values[1], step=number)


def _keep_if_best(run: _Run, number: int, outcome: TrialOutcome) -> None:
    key = _best_key(outcome.metrics)
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


def _fail_stale(run: _Run) -> None:
    if run.storage is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(run.study)


def _counted(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=COUNTED_STATES)


def _worker_loop(run: _Run) -> None:
    """Ask for trials until the study holds ``n_trials`` finished or running ones, then wait for the
    other workers' running trials (a stale one is failed after the grace period and replaced)."""
    n = run.settings.trial_count
    while True:
        check_stop(run.reporter)
        with run.ask_lock:
            _fail_stale(run)
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


def _seed_from_records(run: _Run, records: list[TrialRecord]) -> None:
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
            values = list(record.values) if record.values is not None else _values(record.metrics, run.settings.mode)
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


def _report_failed(run: _Run) -> None:
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


def optimise(run: _Run) -> None:
    """Run this process's share of the study: trials until the study holds ``trial_count``."""
    _worker_loop(run)


# --- results ----------------------------------------------------------------------------------------


def _finished(run: _Run) -> list[dict[str, Any]]:
    rows = []
    for t in run.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        metrics = t.user_attrs.get("metrics")
        if metrics:
            rows.append(
                {
                    "number": int(t.user_attrs.get("report_number", t.number)),
                    "params": dict(t.params),
                    "metrics": metrics,
                    "values": _values(metrics, "multi"),
                }
            )
    return sorted(rows, key=lambda r: r["number"])


def pareto_set(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials no other trial beats on both accuracy and compression ratio (ties kept)."""
    if not rows:
        return []
    mask = pareto_mask([row["values"] for row in rows], ("maximize", "maximize"))
    return sorted((row for row, on in zip(rows, mask, strict=True) if on), key=lambda row: row["values"][1])


def best_by_granularity(rows: list[dict[str, Any]], granularities: tuple[str, ...]) -> dict[str, dict[str, Any] | None]:
    """Per granularity, the highest compression ratio among trials within the accuracy threshold of the
    dense model (Mao et al.'s comparison at equal accuracy), else the most accurate trial, flagged."""
    best: dict[str, dict[str, Any] | None] = {}
    for g in granularities:
        mine = [row for row in rows if row["metrics"]["granularity"] == g]
        best[g] = max(mine, key=lambda row: _best_key(row["metrics"])) if mine else None
    return best


def at_threshold(rows: list[dict[str, Any]], s: SweepConfig, dense_accuracy: float) -> dict[str, Any]:
    """Per granularity (grid sampler): every seed's accuracy-vs-sparsity curve cut at the threshold
    (:func:`.curve.threshold_crossing`), and the seeds' mean compression ratio and sparsity there (Mao et al.'s
    comparison at equal accuracy). With several norms, the norm whose mean ratio is higher; ``ratio_vs_fine``
    divides by fine-grained's mean ratio. ``all_crossed`` is false when a seed's curve stayed above (a lower
    bound) or started below the threshold on the grid (an upper bound)."""
    threshold = dense_accuracy - s.accuracy_threshold
    out: dict[str, Any] = {}
    for g in s.granularities:
        best: dict[str, Any] | None = None
        for norm in s.norms:
            per_seed = []
            for seed in range(s.seeds):
                mine = [
                    r["metrics"]
                    for r in rows
                    if r["metrics"]["granularity"] == g
                    and r["metrics"]["norm"] == norm
                    and r["metrics"].get("retrain_seed", 0) == seed
                ]
                if not mine:
                    continue
                points = [
                    CurvePoint(m["target_sparsity"], m["accuracy"], m["compressed_bits"], m["sparsity"]) for m in mine
                ]
                crossing = threshold_crossing(points, threshold, float(mine[0]["dense_bits"]))
                per_seed.append({"seed": seed, "points": len(points), **crossing.as_dict()})
            if not per_seed:
                continue
            ratios = [p["compression_ratio"] for p in per_seed]
            entry = {
                "norm": norm,
                "seeds": per_seed,
                "compression_ratio": sum(ratios) / len(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "weight_sparsity": sum(p["weight_sparsity"] for p in per_seed) / len(per_seed),
                "target_sparsity": sum(p["target_sparsity"] for p in per_seed) / len(per_seed),
                "all_crossed": all(p["status"] == "crossed" for p in per_seed),
            }
            if best is None or entry["compression_ratio"] > best["compression_ratio"]:
                best = entry
        out[g] = best
    fine = out.get("fine")
    for entry in out.values():
        if entry and fine:
            entry["ratio_vs_fine"] = entry["compression_ratio"] / fine["compression_ratio"]
    return {"threshold": threshold, "granularities": out}


def summarise(run: _Run, inputs: JobInputs) -> dict[str, Any]:
    """The result: Pareto set, best per granularity with test accuracy, saved models and plots."""
    from search_spaces.kit import models, trainer

    s, splits, reporter = run.settings, run.splits, run.reporter
    rows = _finished(run)
    states = [t.state for t in run.study.get_trials(deepcopy=False)]
    workdir = Path(inputs.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dense_model = run.dense.build(run.device)
    dense_test = float(trainer.evaluate(dense_model, splits.x_test, splits.y_test, device=run.device))
    best = best_by_granularity(rows, s.granularities)
    best_out: dict[str, Any] = {}
    output_model, output_key = None, None
    for g, row in best.items():
        if row is None:
            best_out[g] = None
            continue
        check_stop(reporter)
        number = row["number"]
        state = run.kept_models.get(number)
        rebuilt = state is None
        if state is None:  # a trial of an earlier attempt or of another worker: prune it again (deterministic)
            model = prune_configuration(row["params"], number=number, run=run, report=False).model
        else:
            model = run.dense.build(run.device)
            model.load_state_dict(state)
        test_acc = float(trainer.evaluate(model, splits.x_test, splits.y_test, device=run.device))
        name = f"pruned_{g}_trial{number}.pt"
        models.save_model(model, run.dense.arch, workdir / name)
        reporter.artifact(name, workdir / name, "model")
        m = row["metrics"]
        best_out[g] = {
            "trial": number,
            "params": row["params"],
            "within_threshold": m["within_threshold"],
            "accuracy": m["accuracy"],
            "test_accuracy": test_acc,
            "sparsity": m["sparsity"],
            "pruned_layer_sparsity": m["pruned_layer_sparsity"],
            "compression_ratio": m["compression_ratio"],
            "index_entries": m["index_entries"],
            "model": name,
            "rebuilt": rebuilt,
        }
        key = _best_key(m)
        if output_key is None or key > output_key:
            output_model, output_key = name, key
    fine = best_out.get("fine")
    for entry in best_out.values():
        if entry and fine and fine["within_threshold"] and entry["within_threshold"]:
            entry["ratio_vs_fine"] = entry["compression_ratio"] / fine["compression_ratio"]
    crossings = at_threshold(rows, s, run.dense.val_accuracy) if s.grid and s.mode == "multi" and rows else None
    plots = write_figures(run, rows, workdir, crossings)
    result = {
        "dataset": splits.info.name,
        "mode": s.mode,
        "dense_model": run.dense.source,
        "dense_accuracy": run.dense.val_accuracy,
        "dense_test_accuracy": dense_test,
        "accuracy_threshold": s.accuracy_threshold,
        "value_bits": s.value_bits,
        "index_bits": s.index_bits,
        "trials": {
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL),
        },
        "pareto": [
            {
                "trial": r["number"],
                "params": r["params"],
                "values": r["values"],
                "granularity": r["metrics"]["granularity"],
                "sparsity": r["metrics"]["sparsity"],
            }
            for r in pareto_set(rows)
        ],
        "best_by_granularity": best_out,
        **models.output_entry(output_model, run.dense.arch),
        "plots": plots,
        "val_images": len(splits.y_val),
        "test_images": len(splits.y_test),
        "at_threshold": crossings,
        "sweep_seconds": time.time() - run.started,
        **shown(run, best_out, pareto_set(rows), states.count(TrialState.COMPLETE), crossings),
    }
    path = workdir / "summary.json"
    path.write_text(json.dumps(json_safe(result), indent=2))
    reporter.artifact("summary.json", path, "data")
    return result


# --- plots ------------------------------------------------------------------------------------------

_COLOURS = {"fine": "#1f77b4", "vector": "#2ca02c", "kernel": "#ff7f0e", "filter": "#d62728"}


def shown(
    run: _Run,
    best: dict[str, Any],
    front: list[dict[str, Any]],
    complete: int,
    crossings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The result's headlines (dense accuracy; each granularity's compression ratio at the accuracy threshold,
    or without a grid its best trial's) and its tables (the ratios at the threshold with the sparsities and the
    ratio to fine-grained, as in Mao et al. Table 2; the best trial per granularity; the Pareto set)."""
    from search_spaces.kit.results import headline, is_number, summary, table

    tables = []
    if crossings is not None:
        found = {g: c for g, c in crossings["granularities"].items() if c}
        seeds = run.settings.seeds
        ratios = [
            headline(
                f"{g}: compression ratio at the accuracy threshold (mean of {seeds} seed{'s' if seeds != 1 else ''})",
                c["compression_ratio"],
                "×",
            )
            for g, c in found.items()
        ]
        ratios += [
            headline(f"{g} / fine compression ratio at the threshold", c["ratio_vs_fine"], "×")
            for g, c in found.items()
            if g != "fine" and is_number(c.get("ratio_vs_fine"))
        ]
        tables.append(
            table(
                "At the accuracy threshold",
                [
                    "granularity",
                    "norm",
                    "seeds",
                    "target sparsity",
                    "weight sparsity",
                    "compression ratio (mean)",
                    "ratio min",
                    "ratio max",
                    "ratio vs fine",
                    "every seed crossed",
                ],
                [
                    [
                        g,
                        c["norm"],
                        len(c["seeds"]),
                        c["target_sparsity"],
                        c["weight_sparsity"],
                        c["compression_ratio"],
                        c["ratio_min"],
                        c["ratio_max"],
                        c.get("ratio_vs_fine"),
                        c["all_crossed"],
                    ]
                    for g, c in found.items()
                ],
            )
        )
    else:
        ratios = [
            headline(f"{g}: compression ratio of the best trial", b["compression_ratio"], "×")
            for g, b in best.items()
            if b and is_number(b["compression_ratio"])
        ]
    return {
        "summary": summary(
            headline("Dense validation accuracy", 100 * run.dense.val_accuracy, "%"),
            *ratios,
            headline("Complete trials", complete, "", None),
        ),
        "tables": [
            *tables,
            table(
                "Best per granularity",
                [
                    "granularity",
                    "trial",
                    "within threshold",
                    "val accuracy",
                    "test accuracy",
                    "sparsity",
                    "compression ratio",
                    "ratio vs fine",
                ],
                [
                    [
                        g,
                        b["trial"],
                        b["within_threshold"],
                        b["accuracy"],
                        b["test_accuracy"],
                        b["sparsity"],
                        b["compression_ratio"],
                        b.get("ratio_vs_fine"),
                    ]
                    for g, b in best.items()
                    if b
                ],
            ),
            table(
                "Pareto set",
                ["trial", "granularity", "val accuracy", "compression ratio", "sparsity"],
                [
                    [r["number"], r["metrics"]["granularity"], r["values"][0], r["values"][1], r["metrics"]["sparsity"]]
                    for r in front
                ],
            ),
        ],
    }


def write_figures(
    run: _Run, rows: list[dict[str, Any]], workdir: Path, crossings: dict[str, Any] | None = None
) -> list[str]:
    """Figure artifacts (plotly JSON): Pareto front, accuracy vs sparsity (with the grid's seed-mean curve and
    where each granularity crosses the threshold), optimisation history; their names."""
    import plotly.graph_objects as go

    from search_spaces.kit.results import write_figure

    dense, threshold = run.dense.val_accuracy, run.settings.accuracy_threshold
    front = {r["number"] for r in pareto_set(rows)}
    pareto = go.Figure()
    accuracy = go.Figure()
    for g in run.settings.granularities:
        mine = [r for r in rows if r["metrics"]["granularity"] == g]
        if not mine:
            continue
        text = [
            f"trial {r['number']}<br>sparsity {r['metrics']['sparsity']:.3f}<br>norm {r['params'].get('norm')}"
            for r in mine
        ]
        pareto.add_trace(
            go.Scatter(
                x=[r["metrics"]["compression_ratio"] for r in mine],
                y=[r["metrics"]["accuracy"] for r in mine],
                mode="markers",
                name=g,
                text=text,
                hovertemplate="%{text}<br>ratio %{x:.2f}×<br>acc %{y:.4f}",
                marker={
                    "color": _COLOURS.get(g),
                    "size": [13 if r["number"] in front else 7 for r in mine],
                    "line": {"width": [2 if r["number"] in front else 0 for r in mine], "color": "black"},
                },
            )
        )
        accuracy.add_trace(
            go.Scatter(
                x=[r["metrics"]["sparsity"] for r in mine],
                y=[r["metrics"]["accuracy"] for r in mine],
                mode="markers",
                name=g,
                text=text,
                legendgroup=g,
                marker={"color": _COLOURS.get(g)},
                hovertemplate="%{text}<br>acc %{y:.4f}",
            )
        )
        crossing = (crossings or {}).get("granularities", {}).get(g)
        if crossing:
            curve = _mean_curve([r for r in mine if r["metrics"]["norm"] == crossing["norm"]])
            accuracy.add_trace(
                go.Scatter(
                    x=[p[0] for p in curve],
                    y=[p[1] for p in curve],
                    mode="lines",
                    name=f"{g}: mean of seeds",
                    legendgroup=g,
                    line={"color": _COLOURS.get(g)},
                )
            )
            accuracy.add_trace(
                go.Scatter(
                    x=[p["weight_sparsity"] for p in crossing["seeds"]],
                    y=[dense - threshold] * len(crossing["seeds"]),
                    mode="markers",
                    name=f"{g}: at the threshold",
                    legendgroup=g,
                    marker={"color": _COLOURS.get(g), "symbol": "x", "size": 11},
                    hovertemplate="sparsity %{x:.3f} at the threshold",
                )
            )
            continue
        envelope = _sparsity_envelope(mine)
        accuracy.add_trace(
            go.Scatter(
                x=[p[0] for p in envelope],
                y=[p[1] for p in envelope],
                mode="lines",
                name=f"{g}: best at ≥ sparsity",
                legendgroup=g,
                showlegend=False,
                line={"color": _COLOURS.get(g), "shape": "vh"},
                hoverinfo="skip",
            )
        )
    front_rows = pareto_set(rows)
    pareto.add_trace(
        go.Scatter(
            x=[r["values"][1] for r in front_rows],
            y=[r["values"][0] for r in front_rows],
            mode="lines",
            name="Pareto front",
            line={"color": "black", "dash": "dot"},
        )
    )
    for fig in (pareto, accuracy):
        fig.add_hline(
            y=dense,
            line_dash="dash",
            line_color="grey",
            annotation_text=f"dense {dense:.4f}",
            annotation_position="top left",
        )
        fig.add_hline(
            y=dense - threshold,
            line_dash="dot",
            line_color="grey",
            annotation_text=f"threshold (dense − {threshold:g})",
            annotation_position="bottom left",
        )
    pareto.update_layout(
        title="Accuracy vs compression ratio (large, outlined: Pareto-optimal)",
        xaxis_title="compression ratio (dense bits / compressed bits)",
        yaxis_title="validation accuracy",
    )
    accuracy.update_layout(
        title="Accuracy vs sparsity per granularity", xaxis_title="weight sparsity", yaxis_title="validation accuracy"
    )
    history = _history_figure(run)
    return [
        write_figure(run.reporter, workdir, name, fig)
        for name, fig in (
            ("pareto_front.json", pareto),
            ("accuracy_vs_sparsity.json", accuracy),
            ("optimization_history.json", history),
        )
    ]


def _mean_curve(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(mean weight sparsity, mean validation accuracy) per grid sparsity, over the seeds."""
    by_target: dict[float, list[dict[str, Any]]] = {}
    for r in rows:
        by_target.setdefault(float(r["metrics"]["target_sparsity"]), []).append(r["metrics"])
    return [
        (sum(m["sparsity"] for m in ms) / len(ms), sum(m["accuracy"] for m in ms) / len(ms))
        for _, ms in sorted(by_target.items())
    ]


def _sparsity_envelope(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """The best accuracy reached at each sparsity or above: the accuracy-vs-sparsity trade-off curve of a
    granularity (Mao et al., Fig. 3), as a step line over the trials."""
    points = sorted(((r["metrics"]["sparsity"], r["metrics"]["accuracy"]) for r in rows), reverse=True)
    envelope, best = [], -math.inf
    for sparsity, acc in points:
        if acc > best:
            best = acc
            envelope.append((sparsity, acc))
    return envelope[::-1]


def _history_figure(run: _Run) -> Any:
    import plotly.graph_objects as go

    if any(t.state == TrialState.COMPLETE for t in run.study.get_trials(deepcopy=False)):
        fig = optuna.visualization.plot_optimization_history(
            run.study, target=lambda t: t.values[0], target_name="validation accuracy"
        )
    else:
        fig = go.Figure()
    fig.update_layout(title="Optimisation history (validation accuracy)")
    return fig


# --- entry point ------------------------------------------------------------------------------------


def run_sweep(
    settings: SweepConfig,
    inputs: JobInputs,
    reporter: Reporter,
    *,
    worker_index: int = 0,
    splits: Any = None,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Pretrain (or load) the dense model, run the study to ``n_trials``, summarise.

    Several processes may call this on one RDB study (same ``study_name``; give each its own
    ``worker_index``): together they run ``n_trials`` trials. On a resume, finished trials are not rerun:
    an RDB study holds them, an in-memory one is seeded from ``reporter.completed_trials()``.
    ``torch_threads`` is PyTorch's intra-op thread count while the sweep runs (``None``: the worker's,
    ``inputs.threads``).
    """
    with threads(inputs.threads if torch_threads is None else torch_threads):
        return _sweep(settings, inputs, reporter, worker_index=worker_index, splits=splits)


def help_sweep(
    settings: SweepConfig,
    inputs: JobInputs,
    reporter: Reporter,
    *,
    worker_index: int,
    poll_seconds: float = 1.0,
    torch_threads: int | None = None,
) -> int:
    """A helper process of a running sweep: wait for the job's dense model (its checkpoint), then run
    trials of the shared RDB study until it holds ``n_trials``. The job's own process summarises.

    Returns how many trials this helper ran.
    """
    from search_spaces.kit import datasets

    if not inputs.optuna_storage:
        raise ValueError("helpers share an RDB study: inputs.optuna_storage is required")
    blob = reporter.load_checkpoint()
    while blob is None:  # the job's process is still pretraining
        check_stop(reporter)
        time.sleep(poll_seconds)
        blob = reporter.load_checkpoint()
    with threads(inputs.threads if torch_threads is None else torch_threads):
        splits = datasets.load(
            inputs.dataset, path=inputs.dataset_path, seed=inputs.seed, val_fraction=settings.val_fraction
        )
        study, storage = open_study(settings, inputs, worker_index=worker_index)
        run = _Run(
            settings=settings,
            splits=splits,
            dense=TrainedModel.from_bytes(blob),
            device=inputs.device,
            reporter=reporter,
            study=study,
            storage=storage,
        )
        optimise(run)
        return len(run.mine)


def _sweep(
    settings: SweepConfig, inputs: JobInputs, reporter: Reporter, *, worker_index: int, splits: Any
) -> dict[str, Any]:
    from search_spaces.kit import datasets

    check_stop(reporter)
    if splits is None:
        splits = datasets.load(
            inputs.dataset, path=inputs.dataset_path, seed=inputs.seed, val_fraction=settings.val_fraction
        )
    dense = prepare_dense(settings, inputs, splits, reporter)
    study, storage = open_study(settings, inputs, worker_index=worker_index)
    run = _Run(
        settings=settings,
        splits=splits,
        dense=dense,
        device=inputs.device,
        reporter=reporter,
        study=study,
        storage=storage,
    )
    if not study.trials:
        _seed_from_records(run, reporter.completed_trials())
    _fail_stale(run)
    _report_failed(run)
    optimise(run)
    check_stop(reporter)
    result = summarise(run, inputs)
    result["settings"] = asdict(settings)
    reporter.progress(1.0, "done")
    return json_safe(result)
