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

import time
from dataclasses import asdict
from typing import Any

from search_spaces.base import JobInputs, Reporter, check_stop, json_safe
from search_spaces.granularity.config import SweepConfig as SweepConfig
from search_spaces.granularity.results import summarise
from search_spaces.granularity.study import fail_stale, open_study, optimise, report_failed, seed_from_records
from search_spaces.granularity.trial import SweepRun, load_dense, prepare_dense
from search_spaces.kit.trainer import torch_threads as threads

# The kit's small models gain little from intra-op threads, and two threads collapse when anything else
# wants a core: 30 digits trials took 10 s with one thread and 44-214 s with two while another process
# was busy on the 2-core machine. Parallelism comes from several worker processes on one study instead
# (``parallel_trials``: the job plus helper tasks, see :func:`help_sweep`; ``run_sweep`` sets the thread count).


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
        run = SweepRun(
            settings=settings,
            splits=splits,
            dense=load_dense(blob),
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
    run = SweepRun(
        settings=settings,
        splits=splits,
        dense=dense,
        device=inputs.device,
        reporter=reporter,
        study=study,
        storage=storage,
    )
    if not study.trials:
        seed_from_records(run, reporter.completed_trials())
    fail_stale(run)
    report_failed(run)
    optimise(run)
    check_stop(reporter)
    result = summarise(run, inputs)
    result["settings"] = asdict(settings)
    reporter.progress(1.0, "done")
    return json_safe(result)
