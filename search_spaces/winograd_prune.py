"""``winograd_prune``: sparse Winograd-ReLU convolution, pruned in the Winograd domain, multiplications counted.

Liu, Pool, Han, Dally, "Efficient Sparse-Winograd Convolutional Neural Networks", ICLR 2018 (arXiv:1802.06367);
reference code ``xingyul/sparse-winograd-cnn``. The Winograd-ReLU layer ``Y = Aᵀ[W ⊙ ReLU(Bᵀ d B)]A`` (Eq. 2)
learns its weights in the Winograd domain and applies the ReLU there, so both the pruned weights and the
ReLU's zeros survive into the element-wise stage where the multiplications are. A spatial VGG of 3×3
convolutions and its Winograd-ReLU twin are trained, iteratively magnitude-pruned and retrained, and their
exact multiplication counts are compared with dense direct and dense Winograd convolution.

The algorithm lives in :mod:`search_spaces.winograd`; this module imports only light things, since the web
process imports it to serve the schema.
"""

from __future__ import annotations

from typing import Any

from search_spaces.base import DataShape, JobInputs, JobKind, MetricSpec, Objective, Reporter

# Measured on the 2-core machine with one torch thread, default network (16-32-64, two 3×3 convolutions per stage,
# batch 64) on mnist5k: a spatial training epoch costs about 1.0 s per 1,000 training images (28×28; smaller
# inputs cost less, but not below a quarter of it: Python overhead), a Winograd-ReLU epoch 2.2× (F(2×2, 3×3)) or
# 4.2× (F(4×4, 3×3)) that, and one stage's evaluation and exact count 1.1 s (spatial) or 7 s / 15 s (Winograd-ReLU)
# per 1,000 validation images.
_SPATIAL_EPOCH_SECONDS_PER_1K = 1.0
_WINOGRAD_FACTOR = {2: 2.2, 4: 4.2}
_COUNT_SECONDS_PER_1K = {"spatial": 1.1, 2: 7.0, 4: 15.0}
_SAMPLES = {"digits": 1_797, "mnist5k": 5_000, "fashion_mnist": 70_000}


class WinogradPrune(JobKind):
    name = "winograd_prune"
    title = "Sparse Winograd-ReLU CNN pruning (Liu et al. 2018)"
    description = (
        "Moves the ReLU and the pruning into the Winograd domain (Y = Aᵀ[W ⊙ ReLU(BᵀdB)]A), so the zeros of both "
        "weights and activations survive into the element-wise stage. A VGG of 3×3 convolutions and its "
        "Winograd-ReLU twin (trained from scratch; first convolution kept spatial) are iteratively magnitude-"
        "pruned and retrained, one trial per round, and compared with dense direct and dense Winograd "
        "convolution: accuracy and exact multiplication counts per layer, a product counted when both its "
        "weight and its activation are non-zero on the validation images. The sparsity is counted, not "
        "skipped: no wall-clock speed-up is claimed on the CPU. An input vgg model becomes the dense spatial "
        "network (the spatial pruning baseline); the Winograd-ReLU network always trains from scratch."
    )
    input_families = ("vgg",)
    default_dataset = "mnist5k"
    modalities = ("image",)
    metrics = (
        MetricSpec("*/train_loss", "", "loss", "training loss of a network's dense training (round0/) or a retraining"),
        MetricSpec("*/val_acc", "fraction", "accuracy", "validation accuracy after an epoch of (re)training"),
        MetricSpec("*/test_accuracy", "fraction", "accuracy", "a round's test accuracy (step: the round)"),
        MetricSpec(
            "*/multiplication_reduction", "×", "resources", "dense direct multiplications / the round's exact count"
        ),
        MetricSpec("*/weight_density", "fraction", "other", "share of non-zero weights in the pruned layers"),
        MetricSpec(
            "*/activation_density", "fraction", "other", "share of non-zero input activations the pruned layers meet"
        ),
    )
    tiny_config: dict[str, Any] = {
        "widths": [4, 8],
        "convs_per_stage": 1,
        "rounds": 1,
        "epochs": 1,
        "retrain_epochs": 1,
        "max_train": 200,
        "batch_size": 50,
    }
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "tile_size": {
                "type": "integer",
                "enum": [2, 4],
                "default": 2,
                "description": "m of Winograd's F(m×m, 3×3): 2 (4×4 input tiles, 2.25× fewer dense multiplications "
                "on large maps) or 4 (6×6 tiles, 4×). Padding cuts the gain on small maps.",
            },
            "widths": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 512},
                "minItems": 1,
                "maxItems": 6,
                "default": [16, 32, 64],
                "description": "Output channels of each stage of the built-in VGG (3×3 convolutions, 2×2 "
                "max-pooling after each stage); ignored when the job has an input model.",
            },
            "convs_per_stage": {
                "type": "integer",
                "minimum": 1,
                "maximum": 4,
                "default": 2,
                "description": "3×3 convolutions per stage of the built-in VGG.",
            },
            "weight_density": {
                "type": "array",
                "items": {"type": "number", "exclusiveMinimum": 0.0, "maximum": 1.0},
                "minItems": 1,
                "maxItems": 24,
                "default": [0.3],
                "description": "Target share of non-zero weights after the last round: one value for every pruned "
                "convolution, or one per pruned convolution in order (every 3×3 convolution but the "
                "first, which stays spatial and dense). Applies to both the spatial and the "
                "Winograd-domain weights.",
            },
            "rounds": {
                "type": "integer",
                "minimum": 1,
                "maximum": 20,
                "default": 4,
                "description": "Prune/retrain rounds per network (one trial each); the sparsity rises linearly "
                "to its target.",
            },
            "epochs": {
                "type": "integer",
                "minimum": 1,
                "maximum": 200,
                "default": 15,
                "description": "Epochs to train each dense network from scratch (the spatial one only when "
                "there is no input model).",
            },
            "retrain_epochs": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "default": 3,
                "description": "Epochs of retraining after each prune round, with the masks held (0: prune only).",
            },
            "lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 0.05,
                "description": "SGD learning rate (momentum 0.9, cosine schedule) for training from scratch.",
            },
            "retrain_lr": {
                "x-advanced": True,
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1.0,
                "default": 0.01,
                "description": "SGD learning rate (cosine schedule, restarted each round) for retraining.",
            },
            "batch_size": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 4096,
                "default": 64,
                "description": "Minibatch size for training and retraining.",
            },
            "weight_decay": {
                "x-advanced": True,
                "type": "number",
                "minimum": 0,
                "maximum": 0.1,
                "default": 1e-4,
                "description": "L2 weight decay (the reference code uses 1e-4).",
            },
            "max_train": {
                "type": "integer",
                "minimum": 0,
                "maximum": 1_000_000,
                "default": 0,
                "description": "Train on a stratified subset of this many training images (0: all); the "
                "validation and test splits do not change.",
            },
            "seed": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 0,
                "maximum": 2**31 - 1,
                "default": 0,
                "description": "Seed of the initial weights and of the batch order.",
            },
        },
    }

    def output_arch(
        self, config: dict[str, Any], data: DataShape, input_arch: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """None: the Winograd-ReLU network is not a kit architecture any other kind can run (it is stored as a
        ``model`` artifact with its own format), and the spatially pruned vgg is a baseline, stored likewise."""
        return None

    def input_model_problems(self, arch: dict[str, Any], data: DataShape) -> list[str]:
        """Besides family and shape: the vgg must have a second 3×3 convolution to prune (the first stays dense)."""
        problems = super().input_model_problems(arch, data)
        if arch.get("name") == "vgg" and ("conv_widths" in arch or "widths" in arch):
            convs = len(arch.get("conv_widths") or []) or len(arch["widths"]) * int(arch.get("convs_per_stage", 1))
            if convs < 2:
                problems.append("the model has one 3×3 convolution; winograd_prune keeps the first one dense")
        return problems

    def objectives(self, config: dict[str, Any]) -> tuple[Objective, ...]:
        """A trial is one pruning round: validation accuracy, and the multiplications saved against dense direct."""
        return (
            Objective("val_accuracy", "maximize", "fraction"),
            Objective("multiplication_reduction", "maximize", "×"),
        )

    def check(self, config: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        convs = len(config["widths"]) * config["convs_per_stage"]
        if convs < 2:
            errors["widths"] = [
                "the network needs at least two 3×3 convolutions (the first is not pruned): add a stage "
                "or raise convs_per_stage"
            ]
        elif len(config["weight_density"]) not in (1, convs - 1):
            errors["weight_density"] = [
                f"give one value, or one per pruned convolution ({convs - 1}: every 3×3 convolution but the first)"
            ]
        return errors

    def budget(self, config: dict[str, Any], data: DataShape | str | None = None) -> float:
        """CPU-minutes on the 2-core machine: two networks trained from scratch, ``rounds`` retrainings of each,
        and one counting pass over the validation images per stage; scaled by the network's work per pixel."""
        data = DataShape.of(data, self.default_dataset)
        side = min(data.input_shape[1:]) if len(data.input_shape) == 3 else 28
        samples = _SAMPLES.get(data.name) or data.num_samples or _SAMPLES["mnist5k"]
        train = 0.7 * samples if not config["max_train"] else min(config["max_train"], 0.7 * samples)
        work = _work(config["widths"], config["convs_per_stage"]) / _work([16, 32, 64], 2)
        work *= max((side / 28) ** 2, 0.25)
        epoch = _SPATIAL_EPOCH_SECONDS_PER_1K * train / 1_000 * work * (0.3 + 0.7 * 64 / config["batch_size"])
        m = config["tile_size"]
        epochs = config["epochs"] + config["rounds"] * config["retrain_epochs"]
        per_stage = (_COUNT_SECONDS_PER_1K["spatial"] + _COUNT_SECONDS_PER_1K[m]) * 0.15 * samples / 1_000 * work
        return (10 + epochs * epoch * (1 + _WINOGRAD_FACTOR[m]) + (config["rounds"] + 1) * per_stage) / 60

    def config_type(self) -> type:
        from search_spaces.winograd.search import WinogradConfig

        return WinogradConfig

    def run(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
        from dataclasses import replace

        from search_spaces.winograd.search import WinogradConfig, run_winograd

        if inputs.dataset is None and inputs.dataset_path is None:
            inputs = replace(inputs, dataset=self.default_dataset)
        return run_winograd(WinogradConfig.from_config(config), inputs, reporter)


def _work(widths: list[int], per_stage: int) -> float:
    """Multiply-accumulates per input pixel of the VGG's 3×3 convolutions, up to the factor 9 (a budget scale)."""
    total, c_in, scale = 0.0, 1, 1.0
    for width in widths:
        for _ in range(per_stage):
            total += c_in * width * scale
            c_in = width
        scale /= 4
    return max(total, 1.0)
