"""One trial of the granularity sweep: the dense model it starts from, the storage of a pruned model, and pruning
one configuration (granularity, sparsity, norm, retrain epochs) with its retraining.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from search_spaces.base import JobInputs, Reporter, TrialRecord, check_stop
from search_spaces.granularity.config import SweepConfig
from search_spaces.granularity.storage import StorageReport, model_storage
from search_spaces.kit import checkpoint
from search_spaces.kit.models import TrainedModel
from search_spaces.kit.pruning import (
    Masks,
    counted_weights,
    group_mask,
    group_size,
    mask_sparsity,
    prunable_weights,
    prune_and_retrain,
)

PRETRAIN_SHARE = 0.1  # of the progress bar
# The job's checkpoint is its dense model (the trials live in the study), in the kit's format.
CHECKPOINT_FORMAT = "granularity_sweep/2"


@dataclass
class TrialOutcome:
    """What pruning one configuration gave."""

    model: nn.Module
    masks: Masks
    metrics: dict[str, Any]


@dataclass
class SweepRun:
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
    """The model to prune: the checkpointed one on a resume, else the kit's starting model
    (:func:`~search_spaces.kit.starting.trained_start`): the input model, or the kit's default VGG-style CNN (an
    MLP for tabular data) trained for ``pretrain_epochs``; checkpointed so that a resume does not train it again.
    """
    from search_spaces.kit.starting import Pretrain, trained_start

    blob = reporter.load_checkpoint()
    if blob is not None:
        return load_dense(blob)
    dense = trained_start(
        inputs,
        splits.info,
        (splits.x_train, splits.y_train, splits.x_val, splits.y_val),
        family="vgg",
        pretrain=Pretrain(
            settings.pretrain_epochs, settings.pretrain_lr, settings.batch_size, settings.seed, PRETRAIN_SHARE
        ),
        reporter=reporter,
        device=inputs.device,
    )
    reporter.save_checkpoint(dump_dense(dense))
    reporter.progress(PRETRAIN_SHARE, f"dense model: validation accuracy {dense.val_accuracy:.4f}")
    return dense


def dump_dense(dense: TrainedModel) -> bytes:
    """The dense model as the job's checkpoint (:mod:`search_spaces.kit.checkpoint`)."""
    return checkpoint.pack(CHECKPOINT_FORMAT, state=dense.to_dict())


def load_dense(blob: bytes) -> TrainedModel:
    """The dense model of a checkpoint :func:`dump_dense` wrote (the job's, read by a resume or a helper)."""
    state, _ = checkpoint.unpack(blob, CHECKPOINT_FORMAT)
    return TrainedModel.from_dict(state)


# --- one trial --------------------------------------------------------------------------------------


def prune_configuration(
    params: Mapping[str, Any], *, number: int, run: SweepRun, trial: optuna.Trial | None = None, report: bool = True
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
                    raise RetrainPruned(acc, state["epoch"])

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


class RetrainPruned(optuna.TrialPruned):
    """Optuna's pruner stopped the trial (single-objective mode) at ``epoch`` with ``accuracy``."""

    def __init__(self, accuracy: float, epoch: int) -> None:
        super().__init__(f"validation accuracy {accuracy:.4f} after retrain epoch {epoch}")
        self.accuracy, self.epoch = accuracy, epoch
