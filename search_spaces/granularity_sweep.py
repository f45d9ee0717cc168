"""``granularity_sweep``: how regular can the sparsity be? An Optuna sweep over pruning granularity.

Mao, Han, Pool, Li, Liu, Wang, Dally, "Exploring the Regularity of Sparse Structure in Convolutional
Neural Networks" (arXiv:1705.08922). A trained CNN is pruned at fine (single weights), vector (kernel
rows), kernel (R×S) and filter (C×R×S) granularity, retrained with the mask held, and its storage is
counted with a relative sparse index in which one entry covers one group: coarse groups need fewer index
entries (the paper's "index saving" effect). The result is the accuracy / compression-ratio Pareto set and,
per granularity, the best compression ratio within ``accuracy_threshold`` of the dense model.

The algorithm lives in :mod:`search_spaces.granularity`; this module only imports light things, since
the web process imports it to serve the schema.
"""

from __future__ import annotations

from typing import Any

from search_spaces.base import DataShape, JobInputs, JobKind, MetricSpec, Objective, Reporter, scaled_seconds

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
        "Prunes a trained CNN at fine, vector, kernel and filter granularity with Optuna choosing the "
        "granularity, sparsity, saliency norm and retrain epochs; counts the real storage including "
        "the relative sparse index, and reports the accuracy / compression-ratio Pareto set and the "
        "best compression per granularity at the accuracy threshold."
    )
    input_families = ("vgg", "resnet", "mobilenet", "mlp", "pathlevel")
    default_dataset = "digits"
    tiny_config: dict[str, Any] = {"n_trials": 4, "pretrain_epochs": 3, "prune_steps": 1, "retrain_epochs": 1}
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
                "description": "Lowest per-layer target sparsity sampled (multi-objective mode).",
            },
            "sparsity_max": {
                "type": "number",
                "minimum": 0.0,
                "maximum": 0.99,
                "default": 0.95,
                "description": "Highest per-layer target sparsity sampled (multi-objective mode).",
            },
            "norms": {
                "type": "array",
                "items": {"type": "string", "enum": ["l1", "l2"]},
                "minItems": 1,
                "uniqueItems": True,
                "default": ["l1", "l2"],
                "description": "Group saliency: L1 or L2 norm divided by the group size.",
            },
            "n_trials": {
                "type": "integer",
                "minimum": 1,
                "maximum": 2000,
                "default": 400,
                "description": "Optuna trials in the whole study (all parallel workers together).",
            },
            "retrain_epochs": {
                "type": "integer",
                "minimum": 1,
                "maximum": 50,
                "default": 3,
                "description": "Most retrain epochs after each prune step; Optuna picks 1 to this many per trial.",
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
                "enum": ["tpe", "nsga2"],
                "default": "tpe",
                "description": "Optuna sampler (seeded): TPE, or NSGA-II for multi-objective mode.",
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
        if input_arch is not None:
            return input_arch
        family = "mlp" if data.modality == "tabular" else "vgg"
        return {"name": family, "input_shape": list(data.input_shape), "num_classes": data.num_classes}

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
        if config["sampler"] == "nsga2" and config["mode"] == "single":
            errors["sampler"] = ["nsga2 is for the multi-objective mode; use tpe in single mode"]
        return errors

    def budget(self, config: dict[str, Any], data: DataShape | str | None = None) -> float:
        """Minutes on the 2-core machine: pretraining, then per trial ``prune_steps`` × the mean number of
        retrain epochs, plus start-up, evaluation and plots. Parallel trials are not credited."""
        epoch = scaled_seconds(_EPOCH_SECONDS, DataShape.of(data, self.default_dataset), "mnist5k")
        epoch *= 0.3 + 0.7 * 64 / config["batch_size"]  # small models: an epoch costs about its batch count
        mean_retrain = (1 + config["retrain_epochs"]) / 2
        trial_seconds = config["prune_steps"] * mean_retrain * epoch + 0.05
        seconds = 20 + config["pretrain_epochs"] * epoch + config["n_trials"] * trial_seconds
        return seconds / 60

    def helpers(self, config: dict[str, Any]) -> int:
        return config["parallel_trials"] - 1

    def run_helper(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter, index: int) -> None:
        from search_spaces.granularity.sweep import SweepConfig, help_sweep

        help_sweep(SweepConfig.from_config(config), inputs, reporter, worker_index=index)

    def run(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
        from dataclasses import replace

        from search_spaces.granularity.sweep import SweepConfig, run_sweep

        settings = SweepConfig.from_config(config)
        if inputs.dataset is None and inputs.dataset_path is None:
            inputs = replace(inputs, dataset=self.default_dataset)
        return run_sweep(settings, inputs, reporter)
