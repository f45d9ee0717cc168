"""``adc_prune``: AMC / ADC, a DDPG agent that picks each layer's channel keep ratio under a budget.

He, Lin, Liu, Wang, Li, Han, "AMC: AutoML for Model Compression and Acceleration on Mobile Devices"
(ADC in its first version), ECCV 2018, arXiv:1802.03494; reference code ``mit-han-lab/amc``. The agent
walks the network layer by layer; each action is a keep ratio in [min_keep, 1]; channels are dropped by
L1 magnitude and the next layer is refit by least squares on sampled feature maps; the pruned network's
validation accuracy (before fine-tuning) under the budget is the reward. The best policy and the uniform
policy at the same budget are then fine-tuned and compared with the original in one table.

The algorithm lives in :mod:`search_spaces.adc`; this module imports only light things, since the web
process imports it to serve the schema.
"""

from __future__ import annotations

import functools
import json
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

_ARCHITECTURES = ["vgg", "mobilenet", "resnet", "mlp"]


@functools.lru_cache(maxsize=512)
def _prunable_problems(arch_json: str) -> tuple[str, ...]:
    """Why AMC finds nothing to prune in a network of this architecture (built, not trained: the units depend on
    the layers only); kept per architecture, as the parent picker asks once per listed job."""
    from search_spaces.adc import graph
    from search_spaces.kit import models

    arch = json.loads(arch_json)
    try:
        full = models.complete_arch(arch)
        units = graph.build_graph(models.build_model(full).eval(), full).units
    except (models.ModelError, ValueError) as exc:
        return (f"adc_prune cannot take this {arch.get('name')} network: {exc}",)
    if units:
        return ()
    return (
        f"adc_prune finds no channel it can prune in this {arch['name']} network: every width is fixed by the "
        "data, tied to a residual sum, or stopped by a group convolution (gconv3x3), which would have to be cut "
        "evenly",
    )


# Seconds per episode (prune, least-squares refit, BN re-estimation, validation, DDPG updates) of the default
# VGG with one torch thread on the 2-core machine, and per training epoch; unknown data counts as mnist5k.
_EPISODE_SECONDS = {
    "digits": 0.05,
    "mnist5k": 0.3,
    "fashion_mnist": 3.0,
    "wine": 0.02,
    "breast_cancer": 0.02,
    "jets_synthetic": 0.1,
}
_EPOCH_SECONDS = {
    "digits": 0.1,
    "mnist5k": 0.9,
    "fashion_mnist": 13.0,
    "wine": 0.02,
    "breast_cancer": 0.05,
    "jets_synthetic": 0.3,
}


class AdcPrune(JobKind):
    name = "adc_prune"
    title = "AMC / ADC reinforcement-learning channel pruning (He et al. 2018)"
    description = (
        "A DDPG agent walks the network layer by layer and picks a keep ratio for each layer's channels "
        "under a FLOPs, parameter or measured-latency budget (the action wall keeps the budget "
        "reachable); channels are removed by L1 magnitude, the next layer is refit by least squares and "
        "BatchNorm statistics are re-estimated, and the pruned network's validation accuracy is the "
        "reward. The best policy is fine-tuned and compared with uniform pruning at the same budget. "
        "The pruned models are physically smaller and can feed other jobs."
    )
    # pathlevel: a network found by pathlevel_nas; its residual and merge-tied widths are cut channel by channel
    # in every layer they tie (search_spaces/adc/coupled.py).
    input_families = ("vgg", "mobilenet", "resnet", "mlp", "pathlevel")
    default_dataset = "digits"
    modalities = ("image", "tabular")
    tiny_config: dict[str, Any] = {
        "episodes": 4,
        "warmup_episodes": 2,
        "pretrain_epochs": 2,
        "fine_tune_epochs": 1,
        "calibration_batches": 2,
    }
    metrics = (
        MetricSpec("*/train_loss", "", "loss", "training loss of the pretraining (pretrain/) or a fine-tuning"),
        MetricSpec("*/val_acc", "fraction", "accuracy", "validation accuracy after an epoch of (pre)training"),
        MetricSpec("accuracy", "fraction", "accuracy", "an episode's pruned-network validation accuracy"),
        MetricSpec("reward", "", "other", "an episode's reward"),
        MetricSpec("best_reward", "", "other", "the best episode reward so far"),
        MetricSpec("noise_sigma", "", "other", "the exploration noise of the episode"),
        MetricSpec("cost_ratio", "fraction", "resources", "an episode's pruned cost / original cost"),
    )
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "model": {
                "type": "string",
                "enum": _ARCHITECTURES,
                "default": "vgg",
                "description": "Built-in architecture (the training kit's, sized for the dataset) trained first "
                "when the job has no input model; tabular data always uses the MLP. ResNet: only "
                "the inner width of each block is pruned (the others are tied by residual sums).",
            },
            "mode": {
                "type": "string",
                "enum": ["flops", "params", "latency"],
                "default": "flops",
                "description": "What the budget counts: FLOPs, parameters, or CPU latency (a per-layer latency "
                "model measured on this machine at the start of the job).",
            },
            "reward": {
                "type": "string",
                "enum": ["error", "error_log_flops", "error_log_params"],
                "default": "error",
                "description": "error: resource-constrained search, reward −error with the action wall holding "
                "the budget; error_log_flops / error_log_params: accuracy-guaranteed search, "
                "reward −error·log(FLOPs) or −error·log(#params), no budget.",
            },
            "target_ratio": {
                "type": "number",
                "exclusiveMinimum": 0.0,
                "maximum": 1.0,
                "default": 0.5,
                "description": "Share of the original resource (see mode) the pruned model may keep: "
                "0.5 = 50% of the FLOPs. Resource-constrained reward only. A target below what the model "
                "keeps with every layer at min_keep fails the job before the search, naming the smallest "
                "reachable target (in the latency mode that floor is known only once the per-layer latency "
                "is measured; on the small built-ins it is high, ~0.9 on digits, as fixed overheads dominate).",
            },
            "episodes": {
                "type": "integer",
                "minimum": 1,
                "maximum": 5000,
                "default": 200,
                "description": "Search episodes (one pass over the layers each; one trial each). The "
                "reference uses 800.",
            },
            "warmup_episodes": {
                "type": "integer",
                "minimum": 0,
                "maximum": 2000,
                "default": 50,
                "description": "Episodes of uniformly random actions that fill the replay buffer "
                "before the agent learns (reference: 100).",
            },
            "min_keep": {
                "x-advanced": True,
                "type": "number",
                "minimum": 0.01,
                "maximum": 1.0,
                "default": 0.2,
                "description": "Smallest keep ratio of any layer (the action range is [min_keep, 1]).",
            },
            "channel_round": {
                "x-advanced": True,
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 64,
                "default": None,
                "description": "Kept channel counts are multiples of this (or the full width); null: 8 in the "
                "latency mode (the reference's rounding: odd channel counts run slower on the CPU, a "
                "MobileNet at 50% FLOPs got slower than the dense one with them and faster rounded to "
                "8), 1 for FLOPs and parameters (the small built-ins have few channels to round).",
            },
            "calibration_batches": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 200,
                "default": 8,
                "description": "Training batches whose feature maps feed the least-squares refit "
                "and the BatchNorm re-estimation (reference: 60).",
            },
            "calibration_points": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 256,
                "default": 10,
                "description": "Feature-map points sampled per image and layer for the "
                "least-squares refit (reference: 10).",
            },
            "reconstruct": {
                "x-advanced": True,
                "type": "boolean",
                "default": True,
                "description": "Refit the layer after each cut by least squares (off: magnitude pruning only).",
            },
            "recalibrate_bn": {
                "x-advanced": True,
                "type": "boolean",
                "default": True,
                "description": "Re-estimate BatchNorm running statistics on the calibration batches "
                "after pruning, before the reward is measured.",
            },
            "fill_budget": {
                "x-advanced": True,
                "type": "boolean",
                "default": True,
                "description": "Scale a finished policy up (one factor for all layers) to the largest one "
                "within budget, so every episode ends at the target, not below it.",
            },
            "pretrain_epochs": {
                "type": "integer",
                "minimum": 1,
                "maximum": 200,
                "default": 20,
                "description": "Epochs to train the built-in model when no input model is given.",
            },
            "pretrain_lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 0.05,
                "description": "SGD learning rate (cosine schedule) for the built-in model.",
            },
            "fine_tune_epochs": {
                "type": "integer",
                "minimum": 0,
                "maximum": 200,
                "default": 10,
                "description": "Epochs to fine-tune the best AMC model and the uniform baseline (0: no fine-tuning).",
            },
            "fine_tune_lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 0.01,
                "description": "SGD learning rate (cosine schedule) for fine-tuning.",
            },
            "batch_size": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 4096,
                "default": 64,
                "description": "Minibatch size for pretraining, fine-tuning and the calibration batches.",
            },
            "actor_lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 1e-4,
                "description": "Adam learning rate of the actor (reference: 1e-4).",
            },
            "critic_lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 1e-3,
                "description": "Adam learning rate of the critic (reference: 1e-3).",
            },
            "tau": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 0.01,
                "description": "Soft target-network update rate τ (reference: 0.01).",
            },
            "noise_sigma": {
                "x-advanced": True,
                "type": "number",
                "minimum": 0.0,
                "maximum": 2.0,
                "default": 0.5,
                "description": "Initial σ of the truncated-normal exploration noise (reference: 0.5).",
            },
            "noise_decay": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0.0,
                "maximum": 1.0,
                "default": 0.95,
                "description": "σ is multiplied by this every episode after the warm-up (reference: 0.95).",
            },
            "seed": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 0,
                "maximum": 2**31 - 1,
                "default": 0,
                "description": "Seed of the built-in model, the calibration sample, the agent and fine-tuning.",
            },
        },
    }

    def output_arch(
        self, config: dict[str, Any], data: DataShape, input_arch: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The fine-tuned AMC model: the input model's family with fewer channels per layer, or the built-in
        ``model`` (an MLP on tabular data) pruned."""
        return input_or_builtin(input_arch, data, config["model"])

    def input_model_problems(self, arch: dict[str, Any], data: DataShape) -> list[str]:
        """The contract's checks, then whether the network has a channel boundary AMC can cut at all (a
        pathlevel cell whose widths all tie to the residual sums or stop at a group convolution has none)."""
        problems = super().input_model_problems(arch, data)
        if problems:
            return problems
        return list(_prunable_problems(json.dumps(arch, sort_keys=True)))

    def objectives(self, config: dict[str, Any]) -> tuple[Objective, ...]:
        """The agent's episode reward (the negative error, or error with log FLOPs/params for the other rewards)."""
        return (Objective("reward", "maximize"),)

    def check(self, config: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if config["warmup_episodes"] >= config["episodes"]:
            errors["warmup_episodes"] = [
                f"must be below episodes ({config['episodes']}): the agent needs at least one episode to learn"
            ]
        if config["reward"] == "error" and config["target_ratio"] < config["min_keep"] ** 2:
            errors["target_ratio"] = [
                f"cannot be met: with every layer at min_keep ({config['min_keep']}) a "
                f"convolution keeps about min_keep² = {config['min_keep'] ** 2:.3f} of its "
                "FLOPs; lower min_keep or raise target_ratio"
            ]
        if config["reward"] != "error" and config["mode"] == "latency":
            errors["mode"] = ["the latency mode needs the resource-constrained reward (error)"]
        return errors

    def budget(self, config: dict[str, Any], data: DataShape | str | None = None) -> float:
        """CPU-minutes on the 2-core machine: pretraining, the episodes (each scaled by the calibration work),
        and fine-tuning two models; latency mode adds the per-layer timing."""
        data = DataShape.of(data, self.default_dataset)
        episode = scaled_seconds(_EPISODE_SECONDS, data, "mnist5k")
        episode *= 0.7 + 0.3 * config["calibration_batches"] / 8
        epoch = scaled_seconds(_EPOCH_SECONDS, data, "mnist5k") * (0.3 + 0.7 * 64 / config["batch_size"])
        seconds = (
            15
            + config["pretrain_epochs"] * epoch
            + config["episodes"] * episode
            + 2 * config["fine_tune_epochs"] * epoch
            + (20 if config["mode"] == "latency" else 0)
        )
        return seconds / 60

    def config_type(self) -> type:
        from search_spaces.adc.search import AdcConfig

        return AdcConfig

    def run(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
        from dataclasses import replace

        from search_spaces.adc.search import AdcConfig, run_adc

        if inputs.dataset is None and inputs.dataset_path is None:
            inputs = replace(inputs, dataset=self.default_dataset)
        return run_adc(AdcConfig.from_config(config), inputs, reporter)
