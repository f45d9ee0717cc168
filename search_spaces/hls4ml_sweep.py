"""``hls4ml_sweep``: reuse factor, precision, strategy and pruning of a small MLP on an FPGA, with hls4ml.

Duarte et al., "Fast inference of deep neural networks in FPGAs for particle physics", JINST 2018
(arXiv:1804.06913). An Optuna multi-objective study (fixed-point accuracy ↑, DSP or utilisation ↓,
latency ↓, subject to fitting the part) over per-layer reuse factors (only the values hls4ml accepts for
that layer), fixed-point precision (one for the network or one per layer), Latency/Resource strategy and
optional magnitude pruning. Each trial converts the model with hls4ml's PyTorch frontend, measures the
bit-accurate emulation's accuracy on the validation split (compiled once per set of numerics, reused for
trials that differ only in reuse factor), reads the applied configuration back from the generated
project and estimates DSP, LUT, FF, BRAM, latency and II (:mod:`search_spaces.hls.estimate`). Each
trial stores an FPGA report; Pareto-optimal projects are archived ready for ``vivado_hls``/``vitis_hls``.
The algorithm lives in :mod:`search_spaces.hls`; only light imports here.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from search_spaces.base import DataShape, JobInputs, JobKind, MetricSpec, Objective, Reporter
from search_spaces.hls.parts import CHOICES as PART_CHOICES

_RF = [1, 2, 4, 8, 16, 32, 64]
# One compile of the bit-accurate emulation, child process included, on a 2-core machine (bench/hls4ml_sweep.py
# measured 5.7–6.0 s), counted as if no trial reused another's emulation.
_SECONDS_PER_COMPILE = 6.0
# A CNN trial in io_stream: ~14 s to compile and up to 500 validation images at 4–27 ms (bench/hls4ml_cnn.py).
_SECONDS_PER_CNN_TRIAL = 30.0


@functools.lru_cache(maxsize=512)
def _conversion_problems(arch_json: str) -> tuple[str, ...]:
    """Why hls4ml cannot take a network of this architecture (the parent picker asks once per listed job: ~10 ms
    a build and conversion of a small pathlevel network, so the answer is kept per architecture)."""
    from search_spaces.hls.config import SweepError
    from search_spaces.hls.graph import to_hls_cnn
    from search_spaces.kit import models

    arch = json.loads(arch_json)
    try:
        full = models.complete_arch(arch)
        to_hls_cnn(models.build_model(full).eval(), tuple(full["input_shape"]))
    except (SweepError, models.ModelError) as exc:
        return (f"hls4ml_sweep cannot convert this {arch['name']}: {exc}",)
    return ()


class Hls4mlSweep(JobKind):
    name = "hls4ml_sweep"
    title = "hls4ml reuse factor and precision sweep (Duarte et al. 2018)"
    description = (
        "Searches the FPGA design knobs of a small trained MLP or CNN (VGG, MobileNet, ResNet or a pathlevel "
        "network, converted in io_stream) — "
        "reuse factor per layer, fixed-point "
        "precision, Latency/Resource strategy, optional pruning — converting each configuration with "
        "hls4ml, measuring its bit-accurate fixed-point accuracy beside the float accuracy, and "
        "estimating DSP, LUT, FF, BRAM, latency and initiation interval on the chosen part. Stores one "
        "FPGA report per trial; synthesis reports can be imported beside the estimates."
    )
    input_families = ("mlp", "vgg", "mobilenet", "resnet", "pathlevel")
    fpga_reports = True
    default_dataset = "jets_synthetic"
    modalities = ("tabular", "image")
    tiny_config: dict[str, Any] = {
        "n_trials": 4,
        "hidden": [16, 8],
        "epochs": 2,
        "strategies": ["Latency"],
        "total_bits": [16],
        "integer_bits": [6],
        "reuse_factors": [1, 2, 4, 8],
        "max_train": 2000,
    }
    metrics = (
        MetricSpec("pretrain_train_loss", "", "loss", "training loss of the float network"),
        MetricSpec("pretrain_val_acc", "fraction", "accuracy", "validation accuracy of the float network"),
        MetricSpec("fixed_accuracy", "fraction", "accuracy", "a trial's fixed-point (emulated) accuracy"),
        MetricSpec("dsp", "DSP", "resources", "a trial's estimated DSP count"),
        MetricSpec("latency_ns", "ns", "time", "a trial's estimated latency"),
    )
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "n_trials": {
                "type": "integer",
                "minimum": 1,
                "maximum": 2000,
                "default": 40,
                "description": "Configurations to try (Optuna trials, failed ones included).",
            },
            "part": {
                "type": "string",
                "enum": PART_CHOICES,
                "default": "xcku115",
                "description": "FPGA part whose capacities give the utilisation: xcku115 (the paper's Kintex "
                "UltraScale), xczu3eg, xcvu9p, xcu250 (Alveo U250), xcu55c, xc7z020.",
            },
            "clock_period_ns": {
                "type": "number",
                "minimum": 1.0,
                "maximum": 100.0,
                "default": 5.0,
                "description": "Target clock period in ns (5 ns = 200 MHz, as in the paper).",
            },
            "io_type": {
                "x-advanced": True,
                "type": "string",
                "enum": ["io_parallel"],
                "default": "io_parallel",
                "description": "hls4ml I/O type of an MLP; the estimator models io_parallel (whole layers "
                "in parallel, the paper's setting). A convolutional input model is always converted in "
                "io_stream (one pixel per word through FIFOs), the only I/O type hls4ml offers for CNNs.",
            },
            "reuse_factors": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 4096},
                "minItems": 1,
                "maxItems": 16,
                "default": _RF,
                "description": "Reuse factors to try; per layer only those hls4ml accepts for its shape are offered.",
            },
            "strategies": {
                "type": "array",
                "items": {"type": "string", "enum": ["Latency", "Resource"]},
                "minItems": 1,
                "uniqueItems": True,
                "default": ["Latency", "Resource"],
                "description": "hls4ml strategies to try (Resource puts weights in BRAM when RF > 1).",
            },
            "precision_mode": {
                "x-advanced": True,
                "type": "string",
                "enum": ["global", "per_layer"],
                "default": "global",
                "description": "One ap_fixed<W,I> for every dense layer, or one per layer.",
            },
            "total_bits": {
                "type": "array",
                "items": {"type": "integer", "minimum": 4, "maximum": 32},
                "minItems": 1,
                "maxItems": 16,
                "default": [8, 10, 12, 14, 16, 18],
                "description": "Total bits W of the weights (and, plus 2, of the layer results).",
            },
            "integer_bits": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 16},
                "minItems": 1,
                "maxItems": 8,
                "default": [4, 6],
                "description": "Integer bits I (sign included) of the weights; too few for the "
                "largest weight makes the trial fail as an overflow.",
            },
            "input_precision": {
                "x-advanced": True,
                "type": "string",
                # W in 1..64 and I in 0..64: a width of 10^20 digits would reach hls4ml and the compiler.
                "pattern": r"^ap_u?fixed<([1-9]|[1-5][0-9]|6[0-4]),([0-9]|[1-5][0-9]|6[0-4])>$",
                "maxLength": 20,
                "default": "ap_fixed<16,6>",
                "description": "Fixed-point type of the network's inputs (features are standardised): "
                "ap_fixed<W,I> or ap_ufixed<W,I> with 1 ≤ W ≤ 64 and 0 ≤ I ≤ W.",
            },
            "pruning_sparsities": {
                "x-advanced": True,
                "type": "array",
                "items": {"type": "number", "minimum": 0.0, "maximum": 0.95},
                "minItems": 1,
                "maxItems": 8,
                "default": [0.0],
                "description": "Fractions of each dense layer's weights to prune by magnitude "
                "(zeros need no multiplier); [0] turns pruning off.",
            },
            "prune_epochs": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "default": 3,
                "description": "Fine-tuning epochs after pruning, with the zeros held.",
            },
            "cost": {
                "type": "string",
                "enum": ["dsp", "utilisation"],
                "default": "dsp",
                "description": "Resource objective: DSP count, or the largest utilisation % of the part.",
            },
            "hidden": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 1024},
                "minItems": 1,
                "maxItems": 8,
                "default": [64, 32, 32],
                "description": "Hidden widths of the built-in MLP trained when the job has no input "
                "model (the paper's jet tagger: 16-64-32-32-5).",
            },
            "epochs": {
                "type": "integer",
                "minimum": 1,
                "maximum": 500,
                "default": 20,
                "description": "Training epochs of the built-in MLP.",
            },
            "lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 0.003,
                "description": "Adam learning rate of the built-in MLP.",
            },
            "batch_size": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 4096,
                "default": 128,
                "description": "Minibatch size of training and fine-tuning.",
            },
            "max_train": {
                "x-advanced": True,
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
                "description": "Seed of the weights, the batches and the sampler.",
            },
        },
    }

    def output_arch(
        self, config: dict[str, Any], data: DataShape, input_arch: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The float MLP the sweep converted (the input model, or the built-in one of ``hidden`` widths)."""
        if input_arch is not None:
            return input_arch
        features = math.prod(data.input_shape)
        return {
            "name": "mlp",
            "input_shape": [features],
            "hidden": list(config["hidden"]),
            "num_classes": data.num_classes,
        }

    def input_model_problems(self, arch: dict[str, Any], data: DataShape) -> list[str]:
        """The contract's checks, then, for a CNN, the conversion itself tried on a freshly built network of
        ``arch`` (what hls4ml can take depends on the layers, not the weights): the layer that stops it."""
        problems = super().input_model_problems(arch, data)
        if problems or arch.get("name") == "mlp":
            return problems
        return list(_conversion_problems(json.dumps(arch, sort_keys=True)))

    def objectives(self, config: dict[str, Any]) -> tuple[Objective, ...]:
        """Fixed-point accuracy up; the resource cost (DSP, or the largest utilisation %) and latency down."""
        cost = Objective("max_utilisation", "minimize", "%") if config.get("cost") == "utilisation" else None
        return (
            Objective("fixed_accuracy", "maximize", "fraction"),
            cost or Objective("dsp", "minimize", "DSP"),
            Objective("latency_ns", "minimize", "ns"),
        )

    def check(self, config: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if min(config["integer_bits"]) > min(config["total_bits"]):
            errors["integer_bits"] = ["every integer width must fit in the smallest total width"]
        width, integer = (int(v) for v in config["input_precision"].split("<")[1].rstrip(">").split(","))
        if integer > width:
            errors["input_precision"] = [f"{integer} integer bits do not fit in {width} bits"]
        return errors

    def budget(self, config: dict[str, Any], data: DataShape | str | None = None) -> float:
        """CPU-minutes: pretraining and pruning epochs (0.1 s per 10,000 training samples of the jet tagger's 16
        features, scaled by the dataset's features), then one compile per trial."""
        data = DataShape.of(data, self.default_dataset)
        samples = 0.7 * (data.num_samples or 10_000)
        if config["max_train"]:
            samples = min(samples, config["max_train"])
        per_epoch = samples / 10_000 * 0.1 * max(data.features / 16, 1.0)
        pretrain = config["epochs"] * per_epoch
        prune = len(config["pruning_sparsities"]) * config["prune_epochs"] * per_epoch
        per_trial = _SECONDS_PER_CNN_TRIAL if data.modality == "image" else _SECONDS_PER_COMPILE
        return round(0.2 + pretrain + prune + config["n_trials"] * per_trial / 60.0, 2)

    def config_type(self) -> type:
        from search_spaces.hls.config import Settings

        return Settings

    def run(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
        from search_spaces.hls.config import Settings
        from search_spaces.hls.sweep import sweep

        return sweep(Settings.from_config(config), inputs, reporter)
