"""``granularity_sweep``: how regular can the sparsity be? An Optuna sweep over pruning granularity.

Mao, Han, Pool, Li, Liu, Wang, Dally, "Exploring the Regularity of Sparse Structure in Convolutional
Neural Networks" (arXiv:1705.08922). A trained CNN is pruned at fine (single weights), vector (kernel
rows), kernel (R×S) and filter (C×R×S) granularity, retrained with the mask held, and its storage is
counted with a relative sparse index in which one entry covers one group: coarse groups need fewer index
entries (the paper's "index saving" effect). By default every granularity is pruned on a fixed sparsity grid
with several retraining seeds (Optuna's GridSampler), the first convolution kept dense, and each seed's
accuracy-vs-sparsity curve is cut where it crosses ``accuracy_threshold`` below the dense model (on a
validation split of ``val_fraction``: 1,500 images on mnist5k): the result's headline is each
granularity's compression ratio there, the seeds' mean, beside the accuracy / compression-ratio Pareto set.

The algorithm lives in :mod:`search_spaces.granularity`; this module only imports light things, since
the web process imports it to serve the schema.
"""

from __future__ import annotations

from typing import Any

from search_spaces.base import (
    DataShape,
    JobInputs,
    JobKind,
    MetricSpec,
    Objective,
    Reporter,
    input_or_builtin,
    scaled_seconds,
)

_GRANULARITIES = ["fine", "vector", "kernel", "filter"]
# Seconds per epoch (training plus validation) of the default model at batch size 64 on the 2-core machine
# with one torch thread, measured on digits (VGG) and mnist5k (VGG) while other processes shared the
# machine; the others are scaled by training-set size. Unknown data counts as mnist5k.
_EPOCH_SECONDS = {
    "digits": 0.1,
    "mnist5k": 0.9,
    "fashion_mnist": 13.0,
    "wine": 0.02,
    "breast_cancer": 0.05,
    "jets_synthetic": 0.3,
}


class GranularitySweep(JobKind):
    name = "granularity_sweep"
    title = "Pruning granularity sweep (Mao et al. 2017)"
    description = (
        "Prunes a trained CNN at fine, vector, kernel and filter granularity on a grid of sparsities "
        "with several retraining seeds (or with Optuna's TPE/NSGA-II choosing granularity, sparsity, "
        "saliency norm and retrain epochs); counts the real storage including the relative sparse index, "
        "and reports, per granularity, the compression ratio where its accuracy-vs-sparsity curve crosses "
        "the accuracy threshold, and the accuracy / compression-ratio Pareto set."
    )
    input_families = ("vgg", "resnet", "mobilenet", "mlp", "pathlevel")
    default_dataset = "digits"
    tiny_config: dict[str, Any] = {
        "pretrain_epochs": 3,
        "prune_steps": 1,
        "retrain_epochs": 1,
        "sparsity_grid": [0.5, 0.8],
        "seeds": 1,
    }
    metrics = (
        MetricSpec("*/train_loss", "", "loss", "training loss of the dense pretraining (pretrain/) or a retraining"),
        MetricSpec("*/val_acc", "fraction", "accuracy", "validation accuracy after an epoch of (re)training"),
        MetricSpec("val_accuracy", "fraction", "accuracy", "a trial's validation accuracy after a prune step"),
        MetricSpec("sparsity", "fraction", "other", "a trial's weight sparsity after a prune step"),
        MetricSpec("trial_accuracy", "fraction", "accuracy", "a finished trial's validation accuracy"),
        MetricSpec("trial_compression_ratio", "×", "resources", "a finished trial's dense bits / compressed bits"),
    )
    modalities = ("image", "tabular")
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "granularities": {
                "type": "array",
                "items": {"type": "string", "enum": _GRANULARITIES},
                "minItems": 1,
                "uniqueItems": True,
                "default": list(_GRANULARITIES),
                "description": "Granularities to compare: fine (single weights), vector (a row "
                "of a kernel), kernel (a whole R×S kernel), filter (a whole C×R×S "
                "filter). Fully-connected layers use runs of 4, runs of 16 and "
                "whole rows.",
            },
            "sparsity_min": {
                "type": "number",
                "minimum": 0.0,
                "maximum": 0.99,
                "default": 0.5,
                "description": "Lowest per-layer target sparsity sampled (tpe/nsga2, multi-objective mode).",
            },
            "sparsity_max": {
                "type": "number",
                "minimum": 0.0,
                "maximum": 0.99,
                "default": 0.95,
                "description": "Highest per-layer target sparsity sampled (tpe/nsga2, multi-objective mode).",
            },
            "norms": {
                "type": "array",
                "items": {"type": "string", "enum": ["l1", "l2"]},
                "minItems": 1,
                "uniqueItems": True,
                "default": ["l1"],
                "description": "Group saliency: L1 or L2 norm divided by the group size. The grid runs "
                "every norm given; the result takes, per granularity, the norm with the higher ratio.",
            },
            "sparsity_grid": {
                "type": "array",
                "items": {"type": "number", "minimum": 0.0, "maximum": 0.99},
                "minItems": 1,
                "maxItems": 30,
                "uniqueItems": True,
                "default": [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95],
                "description": "Grid sampler: the per-layer target sparsities every granularity is pruned "
                "to; the ratio at the threshold is interpolated between the two around the crossing.",
            },
            "seeds": {
                "type": "integer",
                "minimum": 1,
                "maximum": 10,
                "default": 3,
                "description": "Grid sampler: retraining seeds per grid point (batch order); each seed's curve "
                "is cut at the threshold and the result is their mean. 0.5 points on 1,500 images is "
                "7.5 images, about one binomial standard deviation at 98%, so one seed does not resolve it.",
            },
            "dense_first_conv": {
                "type": "boolean",
                "default": True,
                "description": "Keep the first convolution dense (it is stored dense, without an index): "
                "on one input channel its kernels are its filters, so no granularity is more regular "
                "there, it holds a tiny share of the weights, and every later layer sees what it loses.",
            },
            "val_fraction": {
                "x-advanced": True,
                "type": "number",
                "minimum": 0.05,
                "maximum": 0.5,
                "default": 0.3,
                "description": "Share of the data held out to judge the accuracy threshold on (30%: 1,500 "
                "images of mnist5k, 539 of digits); 15% more is the test split.",
            },
            "n_trials": {
                "type": "integer",
                "minimum": 1,
                "maximum": 2000,
                "default": 400,
                "description": "Optuna trials in the whole study (all parallel workers together); the grid "
                "sampler runs its grid once instead (granularities × sparsity_grid × norms × seeds).",
            },
            "retrain_epochs": {
                "type": "integer",
                "minimum": 1,
                "maximum": 50,
                "default": 6,
                "description": "Retrain epochs after each prune step (grid sampler); tpe/nsga2 pick 1 to this "
                "many per trial. Coarse grains need them: at 80% sparsity kernel-level gained 1.3 points "
                "from 2 to 6 epochs per step, fine-grained nothing measurable.",
            },
            "prune_steps": {
                "type": "integer",
                "minimum": 1,
                "maximum": 10,
                "default": 3,
                "description": "Iterative pruning: the sparsity is raised to its target in this "
                "many prune → retrain steps, masks kept.",
            },
            "pretrain_epochs": {
                "type": "integer",
                "minimum": 1,
                "maximum": 200,
                "default": 30,
                "description": "Epochs to train the dense model when no input model is given.",
            },
            "lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 0.01,
                "description": "SGD learning rate while retraining a pruned model.",
            },
            "pretrain_lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 0.05,
                "description": "SGD learning rate for the dense model.",
            },
            "batch_size": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 4096,
                "default": 64,
                "description": "Minibatch size for pretraining and retraining.",
            },
            "value_bits": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 32,
                "default": 8,
                "description": "Bits per stored non-zero weight (8: Deep Compression's width "
                "for quantised conv weights). Accuracy is measured in float32.",
            },
            "index_bits": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 16,
                "default": 4,
                "description": "Bits of each relative index entry; a longer gap costs padding entries.",
            },
            "vector_size": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 2,
                "maximum": 64,
                "default": 4,
                "description": "Fully-connected layers: weights per vector group (kernel groups hold its square).",
            },
            "accuracy_threshold": {
                "type": "number",
                "minimum": 0.0,
                "maximum": 1.0,
                "default": 0.005,
                "description": "Largest accuracy drop (fraction; 0.005 = 0.5 points) below the "
                "dense model's validation accuracy counted as lossless.",
            },
            "mode": {
                "type": "string",
                "enum": ["multi", "single"],
                "default": "multi",
                "description": "multi: maximise accuracy and compression ratio; single: maximise accuracy "
                "at target_compression, with Optuna's MedianPruner stopping weak trials.",
            },
            "target_compression": {
                "type": "number",
                "minimum": 1.0,
                "maximum": 1000.0,
                "default": 8.0,
                "description": "Single mode: the compression ratio every trial must reach; "
                "its sparsity follows from the storage model.",
            },
            "sampler": {
                "x-advanced": True,
                "type": "string",
                "enum": ["grid", "tpe", "nsga2"],
                "default": "grid",
                "description": "Optuna sampler (seeded): grid (GridSampler over granularities × sparsity_grid "
                "× norms × seeds, multi-objective mode), TPE, or NSGA-II for multi-objective mode.",
            },
            "parallel_trials": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 8,
                "default": 1,
                "description": "Worker processes running trials of this job's study at once: "
                "the job plus parallel_trials - 1 helper tasks on the queue "
                "(other Celery workers pick them up).",
            },
            "seed": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 0,
                "maximum": 2**31 - 1,
                "default": 0,
                "description": "Seed of the data split, the dense model, the sampler and retraining.",
            },
        },
    }

    def output_arch(
        self, config: dict[str, Any], data: DataShape, input_arch: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The best pruned model: the input model's architecture with zeros (masks are not a new family), or the kit's
        VGG-style CNN (an MLP on tabular data) trained in the job."""
        return input_or_builtin(input_arch, data, "vgg")

    def objectives(self, config: dict[str, Any]) -> tuple[Objective, ...]:
        """Accuracy after retraining; in the multi-objective mode the compression ratio too."""
        accuracy = Objective("accuracy", "maximize", "fraction")
        if config.get("mode") == "single":
            return (accuracy,)
        return (accuracy, Objective("compression_ratio", "maximize", "×"))

    def check(self, config: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if config["sparsity_min"] > config["sparsity_max"]:
            errors["sparsity_min"] = ["must not exceed sparsity_max"]
        if config["sampler"] in ("nsga2", "grid") and config["mode"] == "single":
            errors["sampler"] = [f"{config['sampler']} is for the multi-objective mode; use tpe in single mode"]
        return errors

    def budget(self, config: dict[str, Any], data: DataShape | str | None = None) -> float:
        """Minutes on the 2-core machine: pretraining, then per trial ``prune_steps`` × the mean number of
        retrain epochs, plus start-up, evaluation and plots. Parallel trials are not credited."""
        epoch = scaled_seconds(_EPOCH_SECONDS, DataShape.of(data, self.default_dataset), "mnist5k")
        epoch *= 0.3 + 0.7 * 64 / config["batch_size"]  # small models: an epoch costs about its batch count
        grid = config["sampler"] == "grid"
        mean_retrain = config["retrain_epochs"] if grid else (1 + config["retrain_epochs"]) / 2
        trial_seconds = config["prune_steps"] * mean_retrain * epoch + 0.05
        trials = (
            len(config["granularities"]) * len(config["sparsity_grid"]) * len(config["norms"]) * config["seeds"]
            if grid
            else config["n_trials"]
        )
        seconds = 20 + config["pretrain_epochs"] * epoch + trials * trial_seconds
        return seconds / 60

    def helpers(self, config: dict[str, Any]) -> int:
        return config["parallel_trials"] - 1

    def run_helper(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter, index: int) -> None:
        from search_spaces.granularity.sweep import SweepConfig, help_sweep

        help_sweep(SweepConfig.from_config(config), inputs, reporter, worker_index=index)

    def config_type(self) -> type:
        from search_spaces.granularity.sweep import SweepConfig

        return SweepConfig

    def run(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
        from dataclasses import replace

        from search_spaces.granularity.sweep import SweepConfig, run_sweep

        settings = SweepConfig.from_config(config)
        if inputs.dataset is None and inputs.dataset_path is None:
            inputs = replace(inputs, dataset=self.default_dataset)
        return run_sweep(settings, inputs, reporter)
