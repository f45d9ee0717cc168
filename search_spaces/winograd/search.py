"""One ``winograd_prune`` job: train, prune and retrain a spatial and a Winograd-ReLU network, count their
multiplications exactly, and compare them with the dense direct and dense Winograd baselines.

Liu, Pool, Han, Dally, "Efficient Sparse-Winograd Convolutional Neural Networks", ICLR 2018. Stages, one trial
each, one checkpoint after each (a resumed job starts at the first stage not in its checkpoint):

* ``0``: the dense spatial network (the kit's vgg), trained ``epochs`` epochs, or the job's input model;
* ``1 … R``: the spatial network magnitude-pruned per layer, then retrained with its masks held (Han et al.
  2015's iterative schedule; the sparsity of round r is ``(1 − density)·r/R``): the spatially pruned baseline;
* ``R+1``: the Winograd-ReLU network (Eq. 2) trained from scratch, same widths and epochs;
* ``R+2 … 2R+1``: its Winograd-domain weights pruned the same way (Section 3, "pruning in the Winograd
  domain"), with retraining and masks held.

Every stage measures validation and test accuracy and counts the multiplications of every convolution on the
validation images (:mod:`search_spaces.winograd.counting`): exact non-zero × non-zero products, not a product
of densities. The first convolution is kept spatial, dense and unpruned in both networks, as in the paper, and
is counted as a dense direct convolution everywhere. The sparsity is counted, not skipped: on a CPU these
networks run no faster than dense ones, and no wall-clock figure is claimed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search_spaces.base import ConfigError, JobInputs, Reporter, check_stop, json_safe
from search_spaces.kit import checkpoint
from search_spaces.kit.config import typed_config
from search_spaces.winograd import counting, network

CHECKPOINT_FORMAT = "winograd_prune/2"  # /1 was its own torch.save layout, before kit/checkpoint.py
# One Winograd-ReLU training epoch costs about this many epochs of the spatial network on the CPU, by tile size
# (measured for the default VGG on mnist5k with one thread; the strided transforms are memory-bound).
WINOGRAD_EPOCH_COST = {2: 2.2, 4: 4.2}
SUMMARY_SHARE = 0.03  # of the progress bar, for the tables, figures and model files
SPATIAL, WINOGRAD_RELU = "spatial", "winograd_relu"


@dataclass(frozen=True)
class WinogradConfig:
    """A validated ``winograd_prune`` config (see the kind's schema for each field)."""

    tile_size: int = 2
    widths: tuple[int, ...] = (16, 32, 64)
    convs_per_stage: int = 2
    weight_density: tuple[float, ...] = (0.3,)
    rounds: int = 4
    epochs: int = 15
    retrain_epochs: int = 3
    lr: float = 0.05
    retrain_lr: float = 0.01
    batch_size: int = 64
    weight_decay: float = 1e-4
    max_train: int = 0
    seed: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WinogradConfig:
        return typed_config(cls, config)

    def densities(self, layers: list[str]) -> dict[str, float]:
        """The target weight density of each pruned layer: one value for all, or one per layer in order."""
        if len(self.weight_density) == 1:
            return {name: float(self.weight_density[0]) for name in layers}
        if len(self.weight_density) != len(layers):
            raise ConfigError(
                {
                    "weight_density": [
                        f"needs one value, or one per pruned convolution ({len(layers)}: every 3×3 convolution "
                        f"but the first); got {len(self.weight_density)}"
                    ]
                }
            )
        return {name: float(d) for name, d in zip(layers, self.weight_density, strict=True)}


@dataclass(frozen=True)
class Stage:
    """One trial: which network, which prune/retrain round (0: dense) and how many epochs it trains."""

    number: int
    network: str
    round: int
    epochs: int


def plan(settings: WinogradConfig, *, input_model: bool) -> list[Stage]:
    """The job's stages in order (see the module docstring)."""
    r = settings.rounds
    stages = [Stage(0, SPATIAL, 0, 0 if input_model else settings.epochs)]
    stages += [Stage(i, SPATIAL, i, settings.retrain_epochs) for i in range(1, r + 1)]
    stages.append(Stage(r + 1, WINOGRAD_RELU, 0, settings.epochs))
    stages += [Stage(r + 1 + i, WINOGRAD_RELU, i, settings.retrain_epochs) for i in range(1, r + 1)]
    return stages


def round_density(target: float, round_: int, rounds: int) -> float:
    """Weight density after prune round ``round_`` of ``rounds``: sparsity rises linearly to ``1 − target``
    (:func:`search_spaces.kit.pruning.sparsity_schedule`); round 0 is dense."""
    from search_spaces.kit.pruning import sparsity_schedule

    if round_ == 0:
        return 1.0
    return 1.0 - sparsity_schedule(1.0 - target, rounds)[round_ - 1]


@dataclass
class Data:
    """The splits as tensors on the job's device."""

    info: Any
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_data(splits: Any, device: str) -> Data:
    from search_spaces.kit.trainer import as_tensor

    return Data(
        splits.info,
        as_tensor(splits.x_train, device, torch.float32),
        as_tensor(splits.y_train, device, torch.long),
        as_tensor(splits.x_val, device, torch.float32),
        as_tensor(splits.y_val, device, torch.long),
        as_tensor(splits.x_test, device, torch.float32),
        as_tensor(splits.y_test, device, torch.long),
    )


# --- checkpoints --------------------------------------------------------------------------------------


@dataclass
class JobState:
    """What a checkpoint holds: the spatial architecture, the next stage, the rows of the finished stages, and
    each network's current weights and masks (``None`` before its dense stage)."""

    arch: dict[str, Any]
    source: str
    next_stage: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, dict[str, torch.Tensor] | None] = field(
        default_factory=lambda: {SPATIAL: None, WINOGRAD_RELU: None}
    )
    masks: dict[str, dict[str, torch.Tensor]] = field(default_factory=lambda: {SPATIAL: {}, WINOGRAD_RELU: {}})


def dump_checkpoint(state: JobState) -> bytes:
    """The job after ``state.next_stage`` stages in the kit's format (:mod:`search_spaces.kit.checkpoint`): each
    network's weights and masks as state, the architecture, the source and the finished stages' rows as JSON."""
    return checkpoint.pack(
        CHECKPOINT_FORMAT,
        state={"weights": {k: v for k, v in state.weights.items() if v is not None}, "masks": state.masks},
        meta={
            "arch": state.arch,
            "source": state.source,
            "next_stage": state.next_stage,
            "rows": json_safe(state.rows),
        },
    )


def load_checkpoint(blob: bytes) -> JobState:
    """What :func:`dump_checkpoint` wrote; :class:`~search_spaces.kit.checkpoint.CheckpointError` (a
    ``ValueError``) for anything else, an older layout included."""
    data, meta = checkpoint.unpack(blob, CHECKPOINT_FORMAT)
    weights: dict[str, dict[str, torch.Tensor] | None] = {SPATIAL: None, WINOGRAD_RELU: None}
    weights.update(data["weights"])
    return JobState(
        meta["arch"],
        str(meta["source"]),
        int(meta["next_stage"]),
        meta["rows"],
        weights,
        {SPATIAL: {}, WINOGRAD_RELU: {}, **data["masks"]},
    )


# --- the job ------------------------------------------------------------------------------------------


def run_winograd(
    settings: WinogradConfig, inputs: JobInputs, reporter: Reporter, *, splits: Any = None
) -> dict[str, Any]:
    """Run a whole ``winograd_prune`` job (see the module docstring) and return its JSON-safe result."""
    from search_spaces.kit.trainer import torch_threads

    with torch_threads(inputs.threads):
        return _run(settings, inputs, reporter, splits)


def _run(settings: WinogradConfig, inputs: JobInputs, reporter: Reporter, splits: Any) -> dict[str, Any]:
    from search_spaces.kit import datasets

    started = time.time()
    check_stop(reporter)
    if splits is None:
        splits = datasets.load(
            inputs.dataset, path=inputs.dataset_path, seed=inputs.seed, max_train=settings.max_train or None
        )
    if splits.info.modality != "image":
        raise ConfigError({"dataset": ["winograd_prune needs image data (3×3 convolutions)"]})
    data = load_data(splits, inputs.device)
    blob = reporter.load_checkpoint()
    state = load_checkpoint(blob) if blob is not None else _fresh_state(settings, inputs, data)
    stages = plan(settings, input_model=state.source == "input model")
    pruned = list(network.prunable(network.build_spatial(state.arch)))
    if not pruned:
        raise ConfigError({"widths": ["the network needs at least two 3×3 convolutions: the first is not pruned"]})
    targets = settings.densities(pruned)
    _report_stored_rows(state, reporter)
    factor = WINOGRAD_EPOCH_COST[settings.tile_size]
    costs = [s.epochs * (factor if s.network == WINOGRAD_RELU else 1.0) + 0.5 for s in stages]
    scale = (1.0 - SUMMARY_SHARE) / sum(costs)
    for stage in stages[state.next_stage :]:
        check_stop(reporter)
        before = sum(costs[: stage.number]) * scale
        row = _run_stage(settings, inputs, state, stage, targets, data, reporter, before, costs[stage.number] * scale)
        state.rows.append(row)
        state.next_stage = stage.number + 1
        reporter.save_checkpoint(dump_checkpoint(state))  # before the trial: a stored trial always has its state
        _report_row(reporter, row)
        reporter.progress(
            before + costs[stage.number] * scale,
            f"{_label(stage)}: test accuracy {row['test_accuracy']:.4f}, "
            f"{row['multiplication_reduction']:.2f}× fewer multiplications",
        )
    check_stop(reporter)
    from search_spaces.winograd.report import summarise

    result = summarise(settings, inputs, state, data, reporter)
    result["seconds_this_attempt"] = time.time() - started
    reporter.progress(1.0, "done")
    return json_safe(result)


def _fresh_state(settings: WinogradConfig, inputs: JobInputs, data: Data) -> JobState:
    """The spatial architecture (the input model's or the configured one) and, for an input model, its weights
    as the dense spatial network."""
    from search_spaces.kit import models

    info = data.info
    if inputs.model_path is not None:
        model, arch = models.load_model(inputs.model_path, architecture=inputs.model_arch)
        problems = _arch_problems(arch, info)
        if problems:
            raise ConfigError({"model": problems})
        state = JobState(network.spatial_arch(arch), "input model")
        state.weights[SPATIAL] = models.cpu_state(model)
        return state
    if inputs.model_arch is not None:
        problems = _arch_problems(inputs.model_arch, info)
        if problems:
            raise ConfigError({"model": problems})
        return JobState(network.spatial_arch(inputs.model_arch), "built-in (given architecture)")
    arch = {
        "name": "vgg",
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "widths": list(settings.widths),
        "convs_per_stage": settings.convs_per_stage,
    }
    return JobState(network.spatial_arch(arch), "built-in")


def _arch_problems(arch: dict[str, Any], info: Any) -> list[str]:
    problems = []
    if arch.get("name") != "vgg":
        problems.append(f"winograd_prune takes a vgg model (3×3 convolutions); this one is a {arch.get('name')}")
    if list(arch.get("input_shape") or []) != list(info.input_shape) or arch.get("num_classes") != info.num_classes:
        problems.append(
            f"the model takes {arch.get('input_shape')} with {arch.get('num_classes')} classes; the dataset has "
            f"{list(info.input_shape)} with {info.num_classes}"
        )
    return problems


def _label(stage: Stage) -> str:
    name = "spatial" if stage.network == SPATIAL else "Winograd-ReLU"
    return f"{name} dense" if stage.round == 0 else f"{name} round {stage.round}"


def _build(state: JobState, which: str, settings: WinogradConfig) -> nn.Module:
    if which == SPATIAL:
        return network.build_spatial(state.arch)
    return network.build_winograd_relu(network.winograd_arch(state.arch, settings.tile_size))


def _run_stage(
    settings: WinogradConfig,
    inputs: JobInputs,
    state: JobState,
    stage: Stage,
    targets: dict[str, float],
    data: Data,
    reporter: Reporter,
    progress_start: float,
    progress_span: float,
) -> dict[str, Any]:
    """Train (dense stage) or prune and retrain (a round) one network, then measure and count it."""
    from search_spaces.kit import models, pruning, trainer

    started = time.time()
    which = stage.network
    # Each stage seeds itself, so a resumed job trains exactly what an uninterrupted one would.
    trainer.set_seed(settings.seed * 1_000 + stage.number)
    model = _build(state, which, settings)
    stored = state.weights[which]
    if stored is not None:
        model.load_state_dict(stored)
    model.to(inputs.device)
    masks = {k: v.to(inputs.device) for k, v in state.masks[which].items()}
    densities = {name: round_density(t, stage.round, settings.rounds) for name, t in targets.items()}
    if stage.round > 0:
        weights = network.prunable(model)
        masks = {
            name: pruning.group_mask(weights[name], "fine", 1.0 - densities[name], keep=masks.get(name))
            for name in targets
        }
        pruning.apply_masks(model, masks)
    if stage.epochs > 0:

        def progress(epoch: int, result: Any) -> None:
            reporter.progress(
                progress_start + progress_span * (epoch + 1) / (stage.epochs + 0.5),
                f"{_label(stage)}: epoch {epoch + 1}/{stage.epochs}, validation accuracy {result.val_acc:.4f}",
            )

        trainer.train(
            model,
            data.x_train,
            data.y_train,
            epochs=stage.epochs,
            lr=settings.lr if stage.round == 0 else settings.retrain_lr,
            batch_size=settings.batch_size,
            device=inputs.device,
            seed=settings.seed * 1_000 + stage.number,
            weight_decay=settings.weight_decay,
            x_val=data.x_val,
            y_val=data.y_val,
            reporter=reporter,
            metric_prefix=f"{which}/round{stage.round}/",
            masks=masks or None,
            on_epoch_end=progress,
        )
    model.eval()
    first = network.conv_modules(model)[0][0]
    counts = counting.count_network(model, data.x_val, settings.tile_size, dense_layers=(first,), reporter=reporter)
    state.weights[which] = models.cpu_state(model)
    state.masks[which] = {k: v.detach().cpu() for k, v in masks.items()}
    dense_direct = counting.total(counts, "dense_direct")
    multiplications = counting.total(counts)
    pruned_counts = [c for c in counts if c.name != first]
    return {
        "stage": stage.number,
        "network": which,
        "round": stage.round,
        "epochs": stage.epochs,
        "target_density": densities,
        "val_accuracy": trainer.evaluate(model, data.x_val, data.y_val, device=inputs.device),
        "test_accuracy": trainer.evaluate(model, data.x_test, data.y_test, device=inputs.device),
        "multiplications": multiplications,
        "independent_estimate": counting.total(counts, "independent_estimate"),
        "dense_direct_multiplications": dense_direct,
        "multiplication_reduction": dense_direct / multiplications if multiplications else math.inf,
        "weight_density": _weighted(pruned_counts, "weight_density", "dense_direct"),
        "activation_density": _weighted(pruned_counts, "activation_density", "dense_direct"),
        "layers": [c.to_json() for c in counts],
        "started": started,
        "finished": time.time(),
    }


def _weighted(counts: list[counting.LayerCount], key: str, weight: str) -> float:
    """``key`` averaged over layers, each weighted by its dense cost (a layer's share of the work)."""
    total = sum(float(getattr(c, weight)) for c in counts)
    return sum(float(getattr(c, key)) * float(getattr(c, weight)) for c in counts) / total if total else math.nan


def _report_stored_rows(state: JobState, reporter: Reporter) -> None:
    """Rows checkpointed by an attempt that died before storing their trial are stored now."""
    done = {t.number for t in reporter.completed_trials()}
    for row in state.rows:
        if row["stage"] not in done:
            _report_row(reporter, row)


def _report_row(reporter: Reporter, row: dict[str, Any]) -> None:
    layers = row["layers"]
    params = {
        "network": row["network"],
        "round": row["round"],
        "epochs": row["epochs"],
        "target_density": row["target_density"],
    }
    metrics = {
        "val_accuracy": row["val_accuracy"],
        "test_accuracy": row["test_accuracy"],
        "multiplications": row["multiplications"],
        "multiplication_reduction": row["multiplication_reduction"],
        "independent_estimate": row["independent_estimate"],
        "weight_density": row["weight_density"],
        "activation_density": row["activation_density"],
        "layer_weight_density": {c["name"]: c["weight_density"] for c in layers},
        "layer_activation_density": {c["name"]: c["activation_density"] for c in layers},
        "layer_multiplications": {c["name"]: c["multiplications"] for c in layers},
    }
    reporter.trial(
        row["stage"],
        params=params,
        state="complete",
        values=[row["val_accuracy"], row["multiplication_reduction"]],
        metrics=json_safe(metrics),
        started=row["started"],
        finished=row["finished"],
    )
    prefix = row["network"]
    reporter.metric(f"{prefix}/test_accuracy", row["test_accuracy"], row["round"])
    reporter.metric(f"{prefix}/multiplication_reduction", row["multiplication_reduction"], row["round"])
    reporter.metric(f"{prefix}/activation_density", row["activation_density"], row["round"])
    reporter.metric(f"{prefix}/weight_density", row["weight_density"], row["round"])


def settings_dict(settings: WinogradConfig) -> dict[str, Any]:
    return asdict(settings)


def state_model(state: JobState, which: str, settings: WinogradConfig) -> nn.Module:
    """The network ``which`` with its current (last stage's) weights, on the CPU, in eval mode."""
    model = _build(state, which, settings)
    stored = state.weights[which]
    if stored is not None:
        model.load_state_dict(stored)
    return model.eval()


def save_outputs(settings: WinogradConfig, state: JobState, workdir: Path) -> dict[str, str]:
    """The final spatially pruned network (a kit vgg with zeros) and the final Winograd-ReLU network, as files."""
    from search_spaces.kit import models

    files = {SPATIAL: "spatial_pruned.pt", WINOGRAD_RELU: "winograd_relu_pruned.pt"}
    models.save_model(state_model(state, SPATIAL, settings), state.arch, workdir / files[SPATIAL])
    network.save_winograd_relu(
        state_model(state, WINOGRAD_RELU, settings),
        network.winograd_arch(state.arch, settings.tile_size),
        workdir / files[WINOGRAD_RELU],
    )
    return files
