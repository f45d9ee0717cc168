"""``pathlevel_nas``: tree-cell architecture search by path-level network transformations.

Cai, Yang, Zhang, Han, Yu, "Path-Level Network Transformation for Efficient Architecture Search", ICML 2018
(arXiv:1806.02639; reference code han-cai/PathLevel-EAS). A small residual or dense base network is trained;
a bidirectional tree-LSTM meta-controller then grows the topology of its cells (replicate-and-add,
split-and-concat, insert node, identity → layer), each sampled network inheriting the base's weights through
these function-preserving transformations and being fine-tuned briefly; REINFORCE with reward tan(acc·π/2)
on the validation split trains the controller. The best cell is finally trained from its inherited weights
and, for comparison, from scratch for the same epochs; then, as the paper compares them, narrowed to at most the
base's parameters and trained from scratch beside the base network, with several seeds.

The algorithm lives in :mod:`search_spaces.nas`; this module imports only light things, since the web
process imports it to serve the schema.
"""

from __future__ import annotations

from typing import Any

from search_spaces.base import DataShape, JobInputs, JobKind, MetricSpec, Objective, Reporter, scaled_seconds

_PRIMITIVES = ["identity", "conv1x1", "sep3x3", "sep5x5", "sep7x7", "maxpool3x3", "avgpool3x3", "gconv3x3"]
_LAYERS = ["conv1x1", "sep3x3", "sep5x5", "sep7x7", "gconv3x3"]
# Seconds per epoch of the default base network (resnet, widths 16-32-64, one sep3x3 cell per stage) at batch
# size 64 with one torch thread on the 2-core machine (measured with other jobs sharing it), training plus
# validation; grown cells cost more (_GROWN_FACTOR, the mean over sampled cells of bench/nas_weight_reuse.py).
# Unknown data counts as mnist5k. A cell with a pooling edge first mimics its parent on 1,000 training images for
# mimic_epochs (_POOL_SHARE: about the share of sampled cells that have one).
_EPOCH_SECONDS = {"digits": 0.45, "mnist5k": 2.6, "fashion_mnist": 35.0}
_TRAIN_IMAGES = {"digits": 1257, "mnist5k": 3500, "fashion_mnist": 49000}
_GROWN_FACTOR = 2.5
_POOL_SHARE = 0.4


class PathlevelNas(JobKind):
    name = "pathlevel_nas"
    title = "Path-level transformation architecture search (Cai et al. 2018)"
    description = (
        "Grows the tree-structured cells of a trained residual or dense base network with function-"
        "preserving path-level transformations (replicate-and-add, split-and-concat, insert node, "
        "identity to layer) chosen by a bidirectional tree-LSTM meta-controller trained with "
        "REINFORCE. Every sampled network inherits the base's weights and is fine-tuned briefly; the "
        "best cell is trained further and compared with the same network trained from scratch, and, "
        "narrowed to at most the base's parameters, with the base network trained from scratch alike."
    )
    default_dataset = "digits"
    modalities = ("image",)
    tiny_config: dict[str, Any] = {
        "n_networks": 4,
        "networks_per_update": 2,
        "base_epochs": 1,
        "finetune_epochs": 1,
        "final_epochs": 1,
        "stem": 8,
        "widths": [8],
        "max_train": 300,
        "mimic_epochs": 2,
        "compare_seeds": 1,
    }
    metrics = (
        MetricSpec("base_train_loss", "", "loss", "training loss of the base network"),
        MetricSpec("base_val_acc", "fraction", "accuracy", "validation accuracy of the base network"),
        MetricSpec("reward", "", "other", "a sampled network's reward (from its validation accuracy)"),
        MetricSpec("mean_reward", "", "other", "mean reward of a controller update's networks"),
        MetricSpec("baseline", "", "other", "the REINFORCE baseline after a controller update"),
        MetricSpec("best_val_acc", "fraction", "accuracy", "best validation accuracy of the networks so far"),
    )
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "n_networks": {
                "type": "integer",
                "minimum": 1,
                "maximum": 5000,
                "default": 20,
                "description": "Networks (cells) the meta-controller samples in the whole search; one trial each.",
            },
            "networks_per_update": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "default": 5,
                "description": "Sampled networks per REINFORCE update of the controller (the paper uses 10).",
            },
            "finetune_epochs": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "default": 3,
                "description": "Epochs each sampled network is fine-tuned from its inherited "
                "weights before it is scored on the validation split (the paper: "
                "20 on CIFAR-10).",
            },
            "finetune_lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 0.035,
                "description": "Initial SGD learning rate of the fine-tune, annealed by cosine every batch to 0 "
                "(the paper's 0.035).",
            },
            "base_epochs": {
                "type": "integer",
                "minimum": 1,
                "maximum": 500,
                "default": 15,
                "description": "Epochs to train the base network every sampled network starts from.",
            },
            "final_epochs": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "default": 15,
                "description": "Epochs to train the best cell's network at the end, from its inherited "
                "weights and, for comparison, from scratch; also the epochs of the equal-size comparison.",
            },
            "lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 0.05,
                "description": "Initial SGD learning rate (cosine) of the base and final training.",
            },
            "batch_size": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 4096,
                "default": 64,
                "description": "Minibatch size of every training run.",
            },
            "base": {
                "type": "string",
                "enum": ["resnet", "densenet"],
                "default": "resnet",
                "description": "Base network: residual blocks x + cell(x), or dense layers concat(x, cell(x)).",
            },
            "base_op": {
                "type": "string",
                "enum": _LAYERS,
                "default": "sep3x3",
                "description": "The single layer every cell of the base network starts as.",
            },
            "stem": {
                "type": "integer",
                "minimum": 1,
                "maximum": 512,
                "default": 16,
                "description": "Output channels of the stem convolution.",
            },
            "widths": {
                "type": "array",
                "items": {"type": "integer", "minimum": 2, "maximum": 1024},
                "minItems": 1,
                "maxItems": 6,
                "default": [16, 32, 64],
                "description": "resnet: channels of each stage (every stage after the first halves the resolution; "
                "three stages take 28×28 images down to 7×7 before the global pooling).",
            },
            "blocks_per_stage": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 16,
                "default": 1,
                "description": "resnet: residual cell blocks per stage.",
            },
            "growth": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 2,
                "maximum": 256,
                "default": 12,
                "description": "densenet: channels each cell adds (growth rate).",
            },
            "dense_layers": {
                "x-advanced": True,
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 32},
                "minItems": 1,
                "maxItems": 6,
                "default": [3, 3],
                "description": "densenet: cell layers per dense block.",
            },
            "max_depth": {
                "type": "integer",
                "minimum": 1,
                "maximum": 3,
                "default": 3,
                "description": "Deepest tree a cell may grow to (levels of nodes; the paper: 3).",
            },
            "primitives": {
                "type": "array",
                "items": {"type": "string", "enum": _PRIMITIVES},
                "minItems": 1,
                "uniqueItems": True,
                "default": list(_PRIMITIVES),
                "description": "Primitives an identity edge may become (identity keeps it).",
            },
            "sampler": {
                "type": "string",
                "enum": ["rl", "random"],
                "default": "rl",
                "description": "rl: the tree-LSTM meta-controller with REINFORCE; random: uniform choices "
                "in the same tree space (a baseline).",
            },
            "controller_lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 6e-3,
                "description": "Adam learning rate of the meta-controller (the paper's 6e-3).",
            },
            "entropy_weight": {
                "x-advanced": True,
                "type": "number",
                "minimum": 0,
                "maximum": 1.0,
                "default": 1e-2,
                "description": "Entropy bonus per decision in the REINFORCE loss (the paper's 1e-2).",
            },
            "baseline_decay": {
                "x-advanced": True,
                "type": "number",
                "minimum": 0,
                "maximum": 0.9999,
                "default": 0.95,
                "description": "Step of the moving-average reward baseline (the reference's 0.95): it starts at "
                "the base network's reward and moves this share of the way to each update's mean reward.",
            },
            "transform_noise": {
                "x-advanced": True,
                "type": "number",
                "minimum": 0,
                "maximum": 0.1,
                "default": 6e-3,
                "description": "Noise on copied and identity-initialised weights, as a share of the weights' "
                "standard deviation (the reference's 6e-3), so the branches of an add merge do not stay "
                "identical; 0: exact copies.",
            },
            "mimic_epochs": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "default": 5,
                "description": "Epochs a cell with a pooling edge (not function-preserving) spends regressing "
                "its logits onto the base network's, on 1,000 training images, before it is fine-tuned; "
                "0: no repair. The reference's 30 cost it ~3% of a 20-epoch CIFAR-10 fine-tune but would "
                "cost 3x a 3-epoch fine-tune on mnist5k; 5 already lifts a max-pool cell there from 0.44 "
                "to 0.94 validation accuracy before fine-tuning.",
            },
            "compare_seeds": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 20,
                "default": 2,
                "description": "Seeds of the equal-size comparison: the found network narrowed to at most the "
                "base's parameters and the base network, both trained from scratch for final_epochs.",
            },
            "max_params": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 1_000_000_000,
                "default": None,
                "description": "Parameter budget: a sampled network above it is not trained, its trial "
                "is pruned and it scores 0; the result is the best network within it "
                "(the base cell if none fits). Below the base network's own size the "
                "job fails at once. Null: no budget.",
            },
            "eval_workers": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 32,
                "default": 1,
                "description": "Sampled networks of one controller update fine-tuned at once, each in "
                "its own process with one thread (1: serially, in the job's process). "
                "Results do not depend on it.",
            },
            "max_train": {
                "type": ["integer", "null"],
                "minimum": 10,
                "maximum": 10_000_000,
                "default": None,
                "description": "Use at most this many training samples (stratified); null: all.",
            },
            "seed": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 0,
                "maximum": 2**31 - 1,
                "default": 0,
                "description": "Seed of the weights, the batch order and the controller's sampling.",
            },
        },
    }

    def objectives(self, config: dict[str, Any]) -> tuple[Objective, ...]:
        """A trial is one sampled network: its validation accuracy after the fine-tune."""
        return (Objective("val_acc", "maximize", "fraction"),)

    def check(self, config: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if config["networks_per_update"] > config["n_networks"]:
            errors["networks_per_update"] = ["must not exceed n_networks"]
        if config["base_op"] == "gconv3x3" and config["base"] == "resnet" and any(w % 2 for w in config["widths"]):
            errors["widths"] = ["a group-convolution base cell needs even widths"]
        return errors

    def output_arch(
        self, config: dict[str, Any], data: DataShape, input_arch: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The base network with the best cell found: a kit ``pathlevel`` model (its tree is known only at the end)."""
        base = {k: config[k] for k in ("base", "stem", "blocks_per_stage", "growth")}
        lists = {k: list(config[k]) for k in ("widths", "dense_layers")}
        return {
            "name": "pathlevel",
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
            **base,
            **lists,
        }

    def budget(self, config: dict[str, Any], data: DataShape | str | None = None) -> float:
        """CPU-minutes on the 2-core machine: base epochs, each sampled network's fine-tune (grown cells cost
        about ``_GROWN_FACTOR`` base epochs per epoch) and, for a pooling cell, its mimic step, the final training
        twice, the equal-size comparison (two networks of about the base's size per seed), start-up and the
        controller."""
        data = DataShape.of(data, self.default_dataset)
        epoch = scaled_seconds(_EPOCH_SECONDS, data, "mnist5k")
        images = _TRAIN_IMAGES.get(data.name) or max(1, int(0.7 * (data.num_samples or 5000)))
        if config.get("max_train"):
            epoch *= min(1.0, config["max_train"] / images)
            images = min(images, config["max_train"])
        width = sum(config["widths"]) / 112 if config["base"] == "resnet" else sum(config["dense_layers"]) / 6
        epoch *= max(width, 0.25) * (0.3 + 0.7 * 64 / config["batch_size"])
        mimic = _POOL_SHARE * config["mimic_epochs"] * min(1000, images) / images * epoch * _GROWN_FACTOR
        seconds = (
            20
            + config["base_epochs"] * epoch
            + config["n_networks"] * (1.0 + config["finetune_epochs"] * epoch * _GROWN_FACTOR + mimic)
            + 2 * config["final_epochs"] * epoch * _GROWN_FACTOR
            + 2 * config["compare_seeds"] * config["final_epochs"] * epoch
        )
        return seconds / 60

    def config_type(self) -> type:
        from search_spaces.nas.search import SearchConfig

        return SearchConfig

    def run(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
        from dataclasses import replace

        from search_spaces.nas.search import SearchConfig, run_search

        if inputs.dataset is None and inputs.dataset_path is None:
            inputs = replace(inputs, dataset=self.default_dataset)
        return run_search(SearchConfig.from_config(config), inputs, reporter)
