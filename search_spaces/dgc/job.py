"""One ``dgc_train`` job: load the data, pick the starting model, run the phases the checkpoint has not
finished in the worker processes (:mod:`.distributed`), turn their news into trials, metric points, progress
and checkpoints (:class:`_JobListener`), and write the result (:mod:`.summary`).

One trial per epoch and run (DGC first, then the baseline, then the reference-mode run); the job checkpoints at
every epoch boundary, so a resumed job goes on from the last finished epoch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from typing import Any

from search_spaces.base import JobCancelled, JobInputs, Reporter
from search_spaces.dgc import distributed as dd
from search_spaces.dgc.compressor import DGCSettings
from search_spaces.dgc.config import DgcConfig, dgc_vgg_arch
from search_spaces.dgc.spec import EpochReport, PhaseStart
from search_spaces.dgc.summary import summarise
from search_spaces.kit import checkpoint

CHECKPOINT_FORMAT = "dgc_train/2"


def run_dgc(config: DgcConfig, inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
    """Train DGC (then the baseline and the reference-mode run) in ``config.workers`` processes, one trial per
    epoch and run, checkpointing every epoch; return the runs side by side (:func:`.summary.summarise`)."""
    from search_spaces.kit import datasets
    from search_spaces.kit.starting import starting_model

    if reporter.should_stop():
        raise JobCancelled()
    splits = datasets.load(inputs.dataset, path=inputs.dataset_path, seed=inputs.seed, max_train=config.max_train)
    start = starting_model(
        inputs,
        splits.info,
        family=config.model,
        seed=config.seed,
        builtin_arch=_builtin_vgg if config.model == "vgg" else None,
    )
    arch, initial_state = start.arch, checkpoint.to_bytes(start.model.state_dict())
    config = config.with_batch_size(len(splits.y_train))
    modes = config.modes
    ckpt = _Checkpoint.restore(reporter.load_checkpoint(), config.world_size)
    listener = _JobListener(config, reporter, ckpt, modes)
    listener.report_checkpointed_epochs()
    phases = tuple(ckpt.phase_start(mode) for mode in modes if ckpt.epochs_done(mode) < config.epochs)
    started = time.time()
    if phases:
        dd.train_data_parallel(
            _train_spec(config, splits, arch, initial_state, phases=phases, threads=inputs.threads), listener
        )
    summary = summarise(config, splits, arch, ckpt, modes, inputs, reporter)
    summary["wall_s_this_attempt"] = time.time() - started
    path = inputs.workdir / "summary.json"
    path.write_text(json.dumps(summary, indent=2))
    reporter.artifact("summary.json", path, "data")
    reporter.progress(1.0, "done")
    return summary


def _builtin_vgg(info: Any) -> dict[str, Any]:
    """This kind's wider VGG (:func:`~search_spaces.dgc.config.dgc_vgg_arch`) for image data."""
    return dgc_vgg_arch(info.input_shape, info.num_classes)


def _train_spec(
    config: DgcConfig,
    splits: Any,
    arch: dict[str, Any],
    initial_state: bytes,
    phases: tuple[Any, ...],
    threads: int = 1,
) -> Any:
    dgc = DGCSettings(
        sparsity=config.sparsity,
        warmup=tuple(config.warmup_sparsity[: config.warmup_epochs]),
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        momentum_correction=config.momentum_correction,
        local_clipping=config.local_clipping,
        clip_norm=config.clip_norm,
        factor_masking=config.factor_masking,
        value_dtype=config.value_dtype,
        dense_vectors=config.dense_vectors,
        exact_k=config.exact_k,
        local_weight_decay=config.local_weight_decay,
    )
    # The reference code's way (dgc/compression.py, dgc/optim/sgd.py, train.py): only tensors of 2+
    # dimensions compressed, k entries exactly, weight decay outside the exchange, lr warmed up as long
    # as the sparsity is (its configs warm both up over 5 epochs).
    reference = replace(dgc, dense_vectors=True, exact_k=True, local_weight_decay=True)
    rv = config.rendezvous
    rendezvous = (
        dd.Rendezvous()
        if not rv
        else dd.Rendezvous(
            address=rv["address"],
            port=rv["port"],
            world_size=rv["world_size"],
            rank_offset=rv["rank_offset"],
            timeout_s=float(rv.get("timeout_s", 60)),
        )
    )
    return dd.TrainSpec(
        arch=arch,
        initial_state=initial_state,
        x_train=splits.x_train,
        y_train=splits.y_train,
        x_val=splits.x_val,
        y_val=splits.y_val,
        phases=phases,
        workers=config.workers,
        epochs=config.epochs,
        batch_size=config.batch,
        lr=config.lr,
        lr_schedule=config.lr_schedule,
        lr_warmup_epochs=config.lr_warmup_epochs,
        reference=reference,
        reference_lr_warmup_epochs=config.warmup_epochs,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        clip_norm=config.clip_norm,
        dgc=dgc,
        seed=config.seed,
        rendezvous=rendezvous,
        threads_per_worker=max(1, threads // config.workers),
    )


_RUN_ORDER = {"dgc": 0, "dense": 1, "reference": 2}


def trial_number(config: DgcConfig, mode: str, epoch: int) -> int:
    """DGC epoch ``e`` is trial ``e``; the baseline's is ``epochs + e``, the reference mode's ``2·epochs + e``."""
    return _RUN_ORDER[mode] * config.epochs + epoch


class _Checkpoint:
    """Per run: epochs finished, the model after the last one, every local worker's state, and each
    finished epoch's statistics; stored in the kit's format (:mod:`search_spaces.kit.checkpoint`): the weights
    and worker states as byte tensors, the epochs and their statistics as JSON."""

    def __init__(self, world_size: int, runs: dict[str, dict[str, Any]] | None = None) -> None:
        self.world_size = world_size
        self.runs: dict[str, dict[str, Any]] = runs or {}

    @classmethod
    def restore(cls, data: bytes | None, world_size: int) -> _Checkpoint:
        if data is None:
            return cls(world_size)
        try:
            state, meta = checkpoint.unpack(data, CHECKPOINT_FORMAT)
        except checkpoint.CheckpointError as exc:
            raise RuntimeError(f"the checkpoint was not written by this version of dgc_train ({exc})") from None
        if meta["world_size"] != world_size:
            raise RuntimeError(f"the checkpoint holds {meta['world_size']} workers' state, the job has {world_size}")
        runs = {mode: {**run, **state[mode]} for mode, run in meta["runs"].items()}
        return cls(world_size, runs)

    def dump(self) -> bytes:
        state = {mode: {"model": run["model"], "workers": run["workers"]} for mode, run in self.runs.items()}
        meta = {
            "world_size": self.world_size,
            "runs": {mode: {"epoch": run["epoch"], "history": run["history"]} for mode, run in self.runs.items()},
        }
        return checkpoint.pack(CHECKPOINT_FORMAT, state=state, meta=meta)

    def epochs_done(self, mode: str) -> int:
        return int(self.runs.get(mode, {}).get("epoch", 0))

    def history(self, mode: str) -> list[dict[str, Any]]:
        return list(self.runs.get(mode, {}).get("history", []))

    def model_state(self, mode: str) -> bytes | None:
        blob = self.runs.get(mode, {}).get("model")
        return None if blob is None else checkpoint.tensor_bytes(blob)

    def phase_start(self, mode: str) -> PhaseStart:
        run = self.runs.get(mode)
        if not run:
            return PhaseStart(mode)
        workers = {int(rank): checkpoint.tensor_bytes(blob) for rank, blob in run["workers"].items()}
        return PhaseStart(
            mode, start_epoch=int(run["epoch"]), model_state=self.model_state(mode), worker_states=workers
        )

    def update(self, report: EpochReport) -> None:
        run = self.runs.setdefault(report.mode, {"history": []})
        run["epoch"] = report.epoch + 1
        run["model"] = checkpoint.bytes_tensor(report.model_state)
        run["workers"] = {int(rank): checkpoint.bytes_tensor(state) for rank, state in report.worker_states.items()}
        run["history"].append(
            {"epoch": report.epoch, "stats": dict(report.stats), "started": report.started, "finished": report.finished}
        )


class _JobListener:
    """Turns the workers' news into reporter calls: running/complete trials, metric points, progress,
    checkpoints (saved before the trial is recorded, so a resume never skips an unsaved epoch)."""

    def __init__(self, config: DgcConfig, reporter: Reporter, checkpoint: _Checkpoint, modes: list[str]) -> None:
        self.config, self.reporter, self.checkpoint, self.modes = config, reporter, checkpoint, modes
        self.done = {t.number for t in reporter.completed_trials()}
        self.total_epochs = config.epochs * len(modes)

    def _fraction(self, mode: str, epoch_fraction: float) -> float:
        finished = sum(self.checkpoint.epochs_done(m) for m in self.modes)
        return min((finished + epoch_fraction) / self.total_epochs, 0.999)

    def report_checkpointed_epochs(self) -> None:
        """Epochs the checkpoint holds but the reporter has not stored (a stop between the two)."""
        for mode in self.modes:
            for item in self.checkpoint.history(mode):
                self._record(mode, item["epoch"], item["stats"], item["started"], item["finished"])

    def _record(self, mode: str, epoch: int, stats: dict[str, Any], started: float, finished: float) -> None:
        number = trial_number(self.config, mode, epoch)
        if number in self.done:
            return
        self.reporter.trial(
            number,
            params={"mode": mode, "epoch": epoch},
            state="complete",
            values=[float(stats["accuracy"])],
            metrics=_json_stats(stats),
            started=started,
            finished=finished,
        )
        self.reporter.metric(f"{mode}/val_acc", float(stats["accuracy"]), step=epoch + 1, trial=number)
        self.done.add(number)

    def begin(self, mode: str, epoch: int, started: float) -> None:
        number = trial_number(self.config, mode, epoch)
        if number not in self.done:
            self.reporter.trial(number, params={"mode": mode, "epoch": epoch}, state="running", started=started)
        self.reporter.progress(self._fraction(mode, 0.0), f"{mode} epoch {epoch + 1}/{self.config.epochs}")

    def metric(self, mode: str, epoch: int, name: str, value: float, step: int, fraction: float) -> None:
        self.reporter.metric(name, value, step, trial=trial_number(self.config, mode, epoch))
        self.reporter.progress(self._fraction(mode, fraction), f"{mode} epoch {epoch + 1}/{self.config.epochs}")

    def epoch(self, report: EpochReport) -> None:
        self.checkpoint.update(report)
        self.reporter.save_checkpoint(self.checkpoint.dump())
        self._record(report.mode, report.epoch, report.stats, report.started, report.finished)
        self.reporter.progress(
            self._fraction(report.mode, 0.0),
            f"{report.mode} epoch {report.epoch + 1}/{self.config.epochs}: "
            f"validation accuracy {report.stats['accuracy']:.4f}",
        )

    def should_stop(self) -> bool:
        return self.reporter.should_stop()


def _json_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in stats.items()}
