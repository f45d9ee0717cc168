"""The hls4ml sweep: an Optuna multi-objective search over reuse factor, fixed-point precision, strategy
and pruning of a small trained MLP, every trial converted with hls4ml's PyTorch frontend, its bit-accurate
emulation compiled (or reused) to measure fixed-point accuracy, and its applied configuration read back
from the generated project for the resource and latency estimate.

Trials whose numerics are the same (same precisions, strategy and pruned weights; only the reuse factors
differ) share one compiled emulation: the reuse factor changes how many cycles and multipliers the
hardware uses, not the arithmetic, so the fixed-point accuracy is cached under that key and only the
project files are written again (milliseconds) for the applied configuration.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import shutil
import tarfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState
from torch import nn

from search_spaces.base import JobCancelled, JobInputs, Reporter, TrialRecord, check_stop, json_safe
from search_spaces.hls import estimate as est
from search_spaces.hls.parts import Part, get_part
from search_spaces.hls.project import ProjectError, clean_config_yaml, read_project
from search_spaces.kit import datasets, models, procs, trainer
from search_spaces.kit.config import typed_config
from search_spaces.kit.pruning import group_mask
from search_spaces.kit.studies import pareto_mask, rdb_storage

PRETRAIN_SHARE = 0.15
EMULATION_TIMEOUT_S = 600
EMULATION_LOG = "emulation.log"  # in the trial's project: the emulation child's stderr
MAX_PARETO_ARCHIVES = 8
# Validation images a CNN's bit-accurate emulation predicts per compile, sized so a trial stays under a minute
# on 2 cores. Measured on this 2-core machine at a load average of 5-6 (shared): the kit VGG 16-32-64 compiles
# in 14-20 s for 8x8 inputs and 34 s for 28x28 ones; its emulation takes 3.6 ms an 8x8 image (157 k MACs) and
# 112 ms a 28x28 one (1.9 M MACs); 32-128-128 on 8x8, 27 ms (1.2 M MACs): up to ~60 ns per multiply-accumulate.
# So EMULATION_SECONDS / (MACs · SECONDS_PER_MAC) images, 100 to 500: 500 8x8 digits, 130 28x28 images
# (34 s + 15 s), 208 for the wide VGG.
CNN_EMULATION_SAMPLES = 500
CNN_MIN_EMULATION_SAMPLES = 100
EMULATION_SECONDS = 15.0
SECONDS_PER_MAC = 60e-9
log = logging.getLogger(__name__)


class SweepError(ValueError):
    """An input this sweep cannot work with (not an MLP, too wide for the part table …)."""


@dataclass(frozen=True)
class Settings:
    n_trials: int
    reuse_factors: tuple[int, ...]
    strategies: tuple[str, ...]
    precision_mode: str
    total_bits: tuple[int, ...]
    integer_bits: tuple[int, ...]
    input_precision: str
    pruning_sparsities: tuple[float, ...]
    prune_epochs: int
    part: Part
    clock_period_ns: float
    io_type: str
    cost: str
    hidden: tuple[int, ...]
    epochs: int
    lr: float
    batch_size: int
    max_train: int | None
    seed: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Settings:
        """The validated config, typed; the search grids sorted and deduplicated, the part looked up."""
        grids = ("reuse_factors", "total_bits", "integer_bits", "pruning_sparsities")
        return typed_config(
            cls, config, part=get_part(config["part"]), **{key: tuple(sorted(set(config[key]))) for key in grids}
        )


@dataclass
class Network:
    """The float network the sweep works on, as the plain stack hls4ml converts (Linear/ReLU/Softmax for an
    MLP; Conv2d/ReLU/pooling, then Linear/ReLU/Softmax for a CNN). ``dense_names`` are the layers with
    weights (convolutions included), ``shapes`` their (``n_in``, ``n_out``) as hls4ml's product kernel sees
    them (a convolution's window ``k·k·C`` in, its filters out)."""

    model: nn.Sequential
    arch: dict[str, Any]
    dense_names: list[str]
    shapes: dict[str, tuple[int, int]]
    float_accuracy: float
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    input_shape: tuple[int, ...] = ()  # per sample, as the model takes it (C×H×W for a CNN)
    kit_model: nn.Module | None = None  # a CNN's input model as loaded, given back as the job's output

    @property
    def convolutional(self) -> bool:
        return len(self.input_shape) == 3


@dataclass
class _Run:
    settings: Settings
    inputs: JobInputs
    reporter: Reporter
    net: Network
    study: optuna.Study
    workdir: Path
    valid_rf: dict[str, list[int]]
    pruned: dict[float, tuple[nn.Sequential, float]] = field(default_factory=dict)
    accuracy_cache: dict[tuple[Any, ...], float] = field(default_factory=dict)
    compiles: int = 0
    cache_hits: int = 0
    compile_seconds: float = 0.0


# --- the network ---------------------------------------------------------------------------------------


def to_hls_stack(model: nn.Module) -> tuple[nn.Sequential, list[str]]:
    """The kit MLP as Linear/ReLU layers ending in Softmax, BatchNorm folded into the Linear before it
    (exact in eval mode). Refuses anything that is not a plain MLP."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    dense: list[str] = []
    last: nn.Linear | None = None  # the Linear layer a BatchNorm is folded into
    modules = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    i = 0
    for module in modules:
        if isinstance(module, nn.Flatten):
            continue
        if isinstance(module, nn.Linear):
            i += 1
            linear = nn.Linear(module.in_features, module.out_features)
            linear.load_state_dict(module.state_dict())
            name = f"fc{i}"
            layers[name] = last = linear
            dense.append(name)
        elif isinstance(module, nn.BatchNorm1d):
            if last is None:
                raise SweepError("a BatchNorm before the first Linear layer cannot be folded")
            _fold_bn(last, module)
        elif isinstance(module, nn.ReLU):
            layers[f"relu{i}"] = nn.ReLU()
        else:
            raise SweepError(
                f"hls4ml_sweep takes MLPs (Linear, BatchNorm1d, ReLU); the model has {type(module).__name__}"
            )
    if not dense:
        raise SweepError("the model has no Linear layer")
    layers["softmax"] = nn.Softmax(dim=1)
    return nn.Sequential(layers).eval(), dense


def _fold_bn(linear: nn.Linear, bn: nn.BatchNorm1d) -> None:
    if bn.running_mean is None or bn.running_var is None:
        raise SweepError("a BatchNorm without running statistics cannot be folded")
    if linear.bias is None:  # to_hls_stack builds every Linear with a bias
        raise SweepError("a BatchNorm cannot be folded into a Linear layer without a bias")
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        linear.weight.mul_(scale[:, None])
        linear.bias.copy_((linear.bias - bn.running_mean) * scale + bn.bias)


def _fold_bn2d(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d with a bias equal to ``conv`` followed by ``bn`` in eval mode (exact)."""
    if bn.running_mean is None or bn.running_var is None:
        raise SweepError("a BatchNorm without running statistics cannot be folded")
    folded = copy.deepcopy(conv)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded.weight.mul_(scale[:, None, None, None])
        folded.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return folded


def to_hls_cnn(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Sequential, list[str]]:
    """The kit's VGG-style CNN as the layers hls4ml's PyTorch frontend converts in io_stream: Conv2d (its
    BatchNorm folded in), ReLU, MaxPool2d, the global average pool as an ``AvgPool2d`` over the whole
    remaining image (hls4ml 1.3 has no handler for ``AdaptiveAvgPool2d``; equal when the pool covers the
    image), Flatten, Linear, ReLU and a Softmax over the last dimension (io_stream needs ``dim=-1``).
    Refuses grouped (depthwise) convolutions, which hls4ml 1.3's PyTorch frontend does not convert."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    weighted: list[str] = []
    modules = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    shape = torch.Size([1, *input_shape])
    pending: nn.Conv2d | None = None
    n_conv = n_fc = n_pool = 0

    def flush() -> None:
        nonlocal pending, n_conv
        if pending is not None:
            n_conv += 1
            layers[f"conv{n_conv}"] = pending
            weighted.append(f"conv{n_conv}")
            pending = None

    with torch.no_grad():
        for module in modules:
            if isinstance(module, nn.Conv2d):
                flush()
                if module.groups != 1:
                    raise SweepError("a grouped (depthwise) Conv2d cannot be converted by hls4ml's PyTorch frontend")
                pending = copy.deepcopy(module)
                shape = pending(torch.zeros(shape)).shape
            elif isinstance(module, nn.BatchNorm2d):
                if pending is None:
                    raise SweepError("a BatchNorm2d not after a Conv2d cannot be folded")
                pending = _fold_bn2d(pending, module)
            elif isinstance(module, nn.ReLU):
                flush()
                prefix = "crelu" if len(shape) == 4 else "relu"
                layers[f"{prefix}{n_conv if len(shape) == 4 else n_fc}"] = nn.ReLU()
            elif isinstance(module, nn.MaxPool2d):
                flush()
                n_pool += 1
                layers[f"pool{n_pool}"] = nn.MaxPool2d(module.kernel_size, module.stride)
                shape = layers[f"pool{n_pool}"](torch.zeros(shape)).shape
            elif isinstance(module, nn.AdaptiveAvgPool2d):
                flush()
                if module.output_size not in (1, (1, 1)):
                    raise SweepError("only a global AdaptiveAvgPool2d (output size 1) can be converted")
                if shape[-1] > 1 or shape[-2] > 1:
                    layers["gap"] = nn.AvgPool2d((int(shape[-2]), int(shape[-1])))
                shape = torch.Size([shape[0], shape[1], 1, 1])
            elif isinstance(module, nn.Flatten):
                flush()
                layers["flatten"] = nn.Flatten()
                shape = torch.Size([shape[0], math.prod(shape[1:])])
            elif isinstance(module, nn.Linear):
                flush()
                n_fc += 1
                linear = nn.Linear(module.in_features, module.out_features)
                linear.load_state_dict(module.state_dict())
                layers[f"fc{n_fc}"] = linear
                weighted.append(f"fc{n_fc}")
                shape = torch.Size([shape[0], module.out_features])
            else:
                raise SweepError(
                    f"hls4ml_sweep converts Conv2d, BatchNorm2d, ReLU, MaxPool2d, a global average pool and Linear "
                    f"layers; the model has {type(module).__name__}"
                )
    flush()
    if not any(name.startswith("conv") for name in weighted) or not any(name.startswith("fc") for name in weighted):
        raise SweepError("a convolutional network needs a Conv2d and a Linear layer")
    layers["softmax"] = nn.Softmax(dim=-1)
    return nn.Sequential(layers).eval(), weighted


def _flat(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)


def prepare_network(settings: Settings, inputs: JobInputs, reporter: Reporter) -> Network:
    """The input model (a parent's or an upload: an MLP, or a VGG-style CNN) or the built-in MLP trained here
    (a reported pretrain stage, checkpointed so a resumed job does not train it again). A CNN keeps its images
    (C×H×W) and is emulated on the first :func:`emulation_samples` validation images (stratified order)."""
    splits = datasets.load(
        inputs.dataset or "jets_synthetic", path=inputs.dataset_path, seed=settings.seed, max_train=settings.max_train
    )
    x_train, x_val = _flat(splits.x_train), _flat(splits.x_val)
    y_val = splits.y_val
    saved = reporter.load_checkpoint()
    if saved is not None:
        trained = models.TrainedModel.from_bytes(saved)
        model, arch = trained.build(), trained.arch
    elif inputs.model_path is not None:
        model, arch = models.load_model(inputs.model_path, architecture=inputs.model_arch)
        if arch["name"] not in ("mlp", "vgg"):
            raise SweepError(f"hls4ml_sweep takes an MLP or a VGG-style CNN; the input model is a {arch['name']}")
        reporter.progress(PRETRAIN_SHARE, "input model loaded")
    else:
        arch = models.complete_arch(
            {
                "name": "mlp",
                "input_shape": [x_train.shape[1]],
                "hidden": list(settings.hidden),
                "num_classes": splits.info.num_classes,
            }
        )
        trainer.set_seed(settings.seed)
        model = models.build_model(arch)
        total = settings.epochs

        def after_epoch(epoch: int, result: Any) -> bool:
            reporter.progress(PRETRAIN_SHARE * (epoch + 1) / total, f"pretraining epoch {epoch + 1}/{total}")
            return False

        trainer.train(
            model,
            x_train,
            splits.y_train,
            epochs=total,
            lr=settings.lr,
            batch_size=settings.batch_size,
            seed=settings.seed,
            optimizer="adam",
            x_val=x_val,
            y_val=splits.y_val,
            reporter=reporter,
            metric_prefix="pretrain_",
            on_epoch_end=after_epoch,
        )
    model.eval()
    n_in = x_train.shape[1]
    if int(np.prod(arch["input_shape"])) != n_in:
        raise SweepError(f"the model takes {arch['input_shape']} inputs; the dataset has {n_in} features")
    input_shape = tuple(int(v) for v in arch["input_shape"])
    kit_model: nn.Module | None = None
    if arch["name"] == "mlp":
        stack, dense = to_hls_stack(model)
    else:
        stack, dense = to_hls_cnn(model, input_shape)
        kit_model = model
        x_train = np.ascontiguousarray(splits.x_train.reshape(len(splits.x_train), *input_shape), dtype=np.float32)
        x_val = np.ascontiguousarray(splits.x_val.reshape(len(splits.x_val), *input_shape), dtype=np.float32)
        keep = emulation_samples(stack, input_shape)
        x_val, y_val = x_val[:keep], y_val[:keep]
    shapes = {name: _kernel_shape(m) for name, m in stack.named_children() if name in dense}
    float_acc = trainer.evaluate(stack, x_val, y_val)
    if saved is None:  # checked and usable: a resumed job starts from here
        source = "input model" if inputs.model_path is not None else f"trained {settings.epochs} epochs"
        reporter.save_checkpoint(models.TrainedModel(arch, models.cpu_state(model), float_acc, source).to_bytes())
    return Network(stack, arch, dense, shapes, float_acc, x_train, splits.y_train, x_val, y_val, input_shape, kit_model)


def emulation_samples(stack: nn.Module, input_shape: tuple[int, ...]) -> int:
    """How many validation images a CNN's emulation predicts (see ``EMULATION_SECONDS``); the stratified split
    keeps every prefix balanced over the classes."""
    from search_spaces.kit.counting import count

    macs = max(1, count(stack, input_shape)["macs"])
    fits = int(EMULATION_SECONDS / (macs * SECONDS_PER_MAC))
    return max(CNN_MIN_EMULATION_SAMPLES, min(CNN_EMULATION_SAMPLES, fits))


def _kernel_shape(module: nn.Module) -> tuple[int, int]:
    """(``n_in``, ``n_out``) of the dense product kernel hls4ml builds for a layer (a conv: its window)."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return kh * kw * module.in_channels, module.out_channels
    assert isinstance(module, nn.Linear)
    return module.in_features, module.out_features


def prune_network(run: _Run, sparsity: float) -> tuple[nn.Sequential, float]:
    """The network with the ``sparsity`` smallest-magnitude weights of every dense layer zeroed, fine-tuned
    for ``prune_epochs`` with the zeros held; cached per sparsity (and deterministic given the seed)."""
    if sparsity in run.pruned:
        return run.pruned[sparsity]
    net = run.net
    if sparsity <= 0:
        run.pruned[sparsity] = (net.model, net.float_accuracy)
        return run.pruned[sparsity]
    model = copy.deepcopy(net.model)
    masks = {
        f"{name}.weight": group_mask(getattr(model, name).weight.detach(), "fine", sparsity, "l1")
        for name in net.dense_names
    }
    if run.settings.prune_epochs > 0:
        trainer.train(
            model,
            net.x_train,
            net.y_train,
            epochs=run.settings.prune_epochs,
            lr=run.settings.lr * 0.3,
            batch_size=run.settings.batch_size,
            seed=run.settings.seed,
            optimizer="adam",
            masks=masks,
            reporter=None,
        )
    else:
        with torch.no_grad():
            for key, mask in masks.items():
                model.get_parameter(key).mul_(mask)
    model.eval()
    run.pruned[sparsity] = (model, trainer.evaluate(model, net.x_val, net.y_val))
    return run.pruned[sparsity]


# --- one trial -----------------------------------------------------------------------------------------


def suggest(trial: optuna.Trial, run: _Run) -> dict[str, Any]:
    s = run.settings
    params: dict[str, Any] = {"strategy": trial.suggest_categorical("strategy", list(s.strategies))}
    for name in run.net.dense_names:
        params[f"rf_{name}"] = trial.suggest_categorical(f"rf_{name}", run.valid_rf[name])
    layers = run.net.dense_names if s.precision_mode == "per_layer" else ["all"]
    for name in layers:
        params[f"bits_{name}"] = trial.suggest_categorical(f"bits_{name}", list(s.total_bits))
        params[f"int_{name}"] = trial.suggest_categorical(f"int_{name}", list(s.integer_bits))
    params["sparsity"] = trial.suggest_categorical("sparsity", list(s.pruning_sparsities))
    return params


def distributions(run: _Run) -> dict[str, optuna.distributions.BaseDistribution]:
    s, cat = run.settings, optuna.distributions.CategoricalDistribution
    dists: dict[str, optuna.distributions.BaseDistribution] = {
        "strategy": cat(list(s.strategies)),
        "sparsity": cat(list(s.pruning_sparsities)),
    }
    for name in run.net.dense_names:
        dists[f"rf_{name}"] = cat(run.valid_rf[name])
    for name in run.net.dense_names if s.precision_mode == "per_layer" else ["all"]:
        dists[f"bits_{name}"], dists[f"int_{name}"] = cat(list(s.total_bits)), cat(list(s.integer_bits))
    return dists


def layer_precision(params: dict[str, Any], name: str) -> tuple[int, int]:
    key = name if f"bits_{name}" in params else "all"
    bits, integer = int(params[f"bits_{key}"]), int(params[f"int_{key}"])
    return bits, min(integer, bits)


def hls_config(run: _Run, model: nn.Sequential, params: dict[str, Any]) -> dict[str, Any]:
    """The hls4ml configuration of ``params``: per dense layer its reuse factor and ``ap_fixed<W,I>`` for
    weights and biases; results of dense and ReLU layers round and saturate (``AP_RND, AP_SAT``) so a
    narrow type clips instead of wrapping around; the softmax keeps hls4ml's table types."""
    import hls4ml

    s = run.settings
    shape = run.net.input_shape or (run.net.shapes[run.net.dense_names[0]][0],)
    with contextlib.redirect_stdout(io.StringIO()):
        cfg = hls4ml.utils.config_from_pytorch_model(
            model,
            input_shape=shape,
            granularity="name",
            default_precision=s.input_precision,
            default_reuse_factor=1,
            backend="Vitis",
        )
    cfg["Model"]["Strategy"] = params["strategy"]
    layers = cfg["LayerName"]
    layers["input_1"]["Precision"]["result"] = s.input_precision
    previous = None
    for name in model._modules:
        if name in run.net.dense_names:
            bits, integer = layer_precision(params, name)
            layers[name]["ReuseFactor"] = int(params[f"rf_{name}"])
            layers[name]["Strategy"] = params["strategy"]
            plain = f"ap_fixed<{bits},{integer}>"
            layers[name]["Precision"].update(
                weight=plain, bias=plain, result=f"ap_fixed<{bits + 2},{integer + 2},AP_RND,AP_SAT>"
            )
            previous = (bits, integer)
        elif name.startswith(("relu", "crelu", "pool", "gap")) and previous is not None and name in layers:
            # pooling keeps its ReLU input's type (a max or mean of non-negative values)
            bits, integer = previous
            layers[name]["Precision"]["result"] = f"ap_ufixed<{bits},{integer},AP_RND,AP_SAT>"
        elif name == "softmax":
            layers[name]["Precision"]["result"] = "ap_fixed<16,6,AP_RND,AP_SAT>"
    return cfg


def weight_overflow(model: nn.Sequential, params: dict[str, Any], dense: list[str]) -> str | None:
    """Why the chosen precision cannot hold the weights (hls4ml writes them with wrap-around), or None."""
    for name in dense:
        bits, integer = layer_precision(params, name)
        limit = 2.0 ** (integer - 1)
        layer = getattr(model, name)
        biggest = float(max(layer.weight.detach().abs().max(), layer.bias.detach().abs().max()))
        if biggest >= limit:
            return (
                f"layer {name}: weights reach {biggest:.3g}, beyond ap_fixed<{bits},{integer}>'s range "
                f"±{limit:g}; the configuration overflows (raise the integer bits)"
            )
    return None


def numerics_key(params: dict[str, Any]) -> tuple[Any, ...]:
    """Everything that changes the emulation's numbers: all parameters except the reuse factors."""
    return tuple(sorted((k, v) for k, v in params.items() if not k.startswith("rf_")))


def evaluate_trial(run: _Run, number: int, params: dict[str, Any]) -> dict[str, Any]:
    """Convert, write (or compile) and estimate one configuration; raises :class:`TrialFailed`."""
    import hls4ml

    model, float_acc = prune_network(run, float(params["sparsity"]))
    if reason := weight_overflow(model, params, run.net.dense_names):
        raise TrialFailed(reason)
    out_dir = run.workdir / f"trial_{number:04d}"
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = hls_config(run, model, params)
    with contextlib.redirect_stdout(io.StringIO()) as chatter:
        hm = hls4ml.converters.convert_from_pytorch_model(
            model,
            hls_config=cfg,
            output_dir=str(out_dir),
            backend="Vitis",
            io_type="io_stream" if run.net.convolutional else run.settings.io_type,
            part=run.settings.part.part,
            clock_period=run.settings.clock_period_ns,
        )
        hm.write()
    clean_config_yaml(out_dir)
    key = numerics_key(params)
    cached = key in run.accuracy_cache
    started = time.perf_counter()
    if cached:
        run.cache_hits += 1
    else:
        y = emulate(run, out_dir).reshape(len(run.net.x_val), -1)
        if not np.all(np.isfinite(y)):
            raise TrialFailed("the fixed-point emulation gives non-finite outputs")
        run.accuracy_cache[key] = float((y.argmax(axis=1) == run.net.y_val).mean())
        run.compiles += 1
    seconds = time.perf_counter() - started
    run.compile_seconds += seconds if not cached else 0.0
    try:
        applied = read_project(out_dir)
    except ProjectError as exc:
        raise TrialFailed(f"could not read the generated project: {exc}") from exc
    estimate = est.estimate(applied, run.settings.part, run.settings.clock_period_ns)
    fixed = run.accuracy_cache[key]
    warnings = [line.strip() for line in chatter.getvalue().splitlines() if "WARNING" in line]
    return {
        "fixed_accuracy": fixed,
        "float_accuracy": float_acc,
        "accuracy_drop": float_acc - fixed,
        "dsp": estimate["dsp"],
        "lut": estimate["lut"],
        "ff": estimate["ff"],
        "bram": estimate["bram"],
        "latency_cycles": estimate["latency_cycles"],
        "latency_ns": estimate["latency_ns"],
        "initiation_interval": estimate["initiation_interval"],
        "utilisation": estimate["utilisation"],
        "fits": estimate["fits"],
        "reuse_factor": applied.reuse_factors(),
        "precision": applied.precisions(),
        "strategy": sorted(applied.strategies())[0],
        "io_type": applied.io_type,
        "layers": estimate["layers"],
        "emulation": "reused" if cached else "compiled",
        "seconds": round(seconds, 3),
        "mean_reuse_factor": float(np.mean(list(applied.reuse_factors().values()))),
        "mean_bits": float(np.mean([layer_precision(params, n)[0] for n in run.net.dense_names])),
        "hls4ml_warnings": warnings[:10],
        "project": out_dir.name,
    }


class TrialFailed(Exception):
    """A configuration hls4ml cannot build or that overflows: a failed trial with its message."""


def emulate(run: _Run, project: Path) -> np.ndarray:
    """Compile ``project``'s bit-accurate emulation and predict the validation inputs in a child process
    (:mod:`search_spaces.hls.emulate`), so a compiler error or a crash of the emulation is this trial's
    failure and not the worker's. Polls ``should_stop()`` while it runs; kills the child on a cancel."""
    inputs = run.workdir / "x_val.npy"
    if not inputs.exists():
        np.save(inputs, np.ascontiguousarray(run.net.x_val, dtype=np.float32))
    outputs = project / "emulation_outputs.npy"
    log_path = project / EMULATION_LOG
    # stdout discarded: hls4ml and the compiled emulation chatter there, and the error is on stderr
    child = procs.start_python(
        ["-m", "search_spaces.hls.emulate", str(project), str(inputs), str(outputs)],
        threads=1,
        log=log_path,
        discard_stdout=True,
    )
    deadline = time.monotonic() + EMULATION_TIMEOUT_S
    try:
        while child.poll() is None:
            if run.reporter.should_stop():
                raise JobCancelled()
            if time.monotonic() > deadline:
                raise TrialFailed(f"compiling and running the emulation took over {EMULATION_TIMEOUT_S} s")
            time.sleep(0.1)
    finally:
        procs.stop([child], grace_s=0)
    if child.returncode != 0:
        reason = procs.log_tail(log_path, lines=6) or "no output"
        raise TrialFailed(f"hls4ml compile or emulation failed: {reason}\n({procs.describe_exit(child.returncode)})")
    return np.load(outputs)


def _note(io_type: str) -> str:
    """What an estimate of this I/O type is worth, against which real reports (shown with every report)."""
    if io_type == "io_stream":
        from search_spaces.hls.stream import ACCURACY_NOTE

        return ACCURACY_NOTE
    return est.ACCURACY_NOTE


def cost_of(metrics: dict[str, Any], cost: str) -> float:
    if cost == "utilisation":
        return float(max(metrics["utilisation"].values()))
    return float(metrics["dsp"])


def _values(metrics: dict[str, Any], cost: str) -> list[float]:
    return [float(metrics["fixed_accuracy"]), cost_of(metrics, cost), float(metrics["latency_ns"])]


def run_one(run: _Run) -> None:
    trial = run.study.ask()
    number = trial.number
    started = time.time()
    params = suggest(trial, run)
    run.reporter.trial(number, params=params, state="running", started=started)
    try:
        metrics = evaluate_trial(run, number, params)
    except TrialFailed as exc:
        trial.set_user_attr("failure", str(exc))
        run.study.tell(trial, state=TrialState.FAIL)
        run.reporter.trial(
            number, params=params, state="failed", metrics={"error": str(exc)}, started=started, finished=time.time()
        )
        return
    metrics = json_safe(metrics)
    values = _values(metrics, run.settings.cost)
    trial.set_constraint("fits_part", max(metrics["utilisation"].values()) / 100.0 - 1.0)
    trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if k != "layers"})
    s = run.settings
    run.reporter.fpga_report(
        number,
        {
            "source": "estimate",
            "part": s.part.part,
            "clock_period_ns": s.clock_period_ns,
            "reuse_factor": metrics["reuse_factor"],
            "precision": metrics["precision"],
            "strategy": metrics["strategy"],
            "io_type": metrics["io_type"],
            "dsp": metrics["dsp"],
            "lut": metrics["lut"],
            "ff": metrics["ff"],
            "bram": metrics["bram"],
            "latency_cycles": metrics["latency_cycles"],
            "latency_ns": metrics["latency_ns"],
            "initiation_interval": metrics["initiation_interval"],
            "utilisation": metrics["utilisation"],
            "fixed_point_accuracy": metrics["fixed_accuracy"],
            "float_accuracy": metrics["float_accuracy"],
            "raw": {"layers": metrics["layers"], "note": _note(metrics["io_type"]), "fits": metrics["fits"]},
        },
    )
    run.reporter.trial(
        number,
        params=params,
        state="complete",
        values=values,
        metrics={k: v for k, v in metrics.items() if k != "layers"},
        started=started,
        finished=time.time(),
    )
    run.study.tell(trial, values=values)
    for name, value in (
        ("fixed_accuracy", metrics["fixed_accuracy"]),
        ("dsp", metrics["dsp"]),
        ("latency_ns", metrics["latency_ns"]),
    ):
        run.reporter.metric(name, value, step=number, trial=number)


# --- the study -----------------------------------------------------------------------------------------


def open_study(run_settings: Settings, inputs: JobInputs) -> optuna.Study:
    storage = rdb_storage(inputs.optuna_storage) if inputs.optuna_storage else None
    startup = max(4, min(10, run_settings.n_trials // 4))
    sampler = optuna.samplers.TPESampler(seed=run_settings.seed, n_startup_trials=startup)
    return optuna.create_study(
        storage=storage,
        sampler=sampler,
        load_if_exists=True,
        study_name=inputs.study_name or f"hls4ml-sweep-seed{run_settings.seed}",
        directions=["maximize", "minimize", "minimize"],
    )


def reconcile(run: _Run, records: list[TrialRecord]) -> None:
    """On a resume: trials a killed run left RUNNING in the study are closed (with the values the service
    kept, or as failed); with in-memory storage the service's records are added back to the study."""
    by_number = {r.number: r for r in records}
    for t in run.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        record = by_number.get(t.number)
        if record is not None and record.state == "complete" and record.values:
            run.study.tell(t.number, values=list(record.values))
        else:
            run.study.tell(t.number, state=TrialState.FAIL)
    if run.study.trials or not records:
        return
    dists = distributions(run)
    for record in sorted(records, key=lambda r: r.number):
        params = {k: v for k, v in record.params.items() if k in dists}
        values = list(record.values) if record.state == "complete" and record.values else None
        complete = values is not None
        try:
            frozen = optuna.trial.create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                values=values,
                state=TrialState.COMPLETE if complete else TrialState.FAIL,
                user_attrs={"metrics": dict(record.metrics), "resumed": True},
            )
        except ValueError:
            continue
        run.study.add_trial(frozen)


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))


def pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows that fit the part and that no other fitting row beats on accuracy, cost and latency at once."""
    fitting = [r for r in rows if r["metrics"].get("fits", True)]
    if not fitting:
        return []
    mask = pareto_mask([r["values"] for r in fitting], ("maximize", "minimize", "minimize"))
    front = (r for r, on in zip(fitting, mask, strict=True) if on)
    return sorted(front, key=lambda r: (r["values"][1], r["values"][2]))


def sweep(settings: Settings, inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
    """Run the sweep; returns the result summary. Trials stop early when the job is cancelled."""
    with trainer.torch_threads(inputs.threads):
        return _sweep(settings, inputs, reporter)


def _sweep(settings: Settings, inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
    from hls4ml.backends import get_backend

    workdir = Path(inputs.workdir) / "hls4ml"
    workdir.mkdir(parents=True, exist_ok=True)
    net = prepare_network(settings, inputs, reporter)
    check_stop(reporter)
    backend = get_backend("Vitis")
    valid_rf: dict[str, list[int]] = {}
    for name in net.dense_names:
        n_in, n_out = net.shapes[name]
        valid = set(backend.get_valid_reuse_factors(n_in, n_out))
        chosen = [rf for rf in settings.reuse_factors if rf in valid]
        valid_rf[name] = chosen or [min(valid, key=lambda v: abs(v - settings.reuse_factors[0]))]
    study = open_study(settings, inputs)
    run = _Run(settings, inputs, reporter, net, study, workdir, valid_rf)
    reconcile(run, reporter.completed_trials())
    while len(finished(study)) < settings.n_trials:
        check_stop(reporter)
        run_one(run)
        done = len(finished(study))
        reporter.progress(
            PRETRAIN_SHARE + (1 - PRETRAIN_SHARE) * 0.95 * done / settings.n_trials, f"trial {done}/{settings.n_trials}"
        )
    return summarise(run)


def summarise(run: _Run) -> dict[str, Any]:
    rows = []
    failed = []
    for t in finished(run.study):
        if t.state == TrialState.COMPLETE and t.user_attrs.get("metrics"):
            rows.append(
                {
                    "number": t.number,
                    "params": dict(t.params),
                    "values": list(t.values),
                    "metrics": t.user_attrs["metrics"],
                }
            )
        elif t.state == TrialState.FAIL:
            failed.append({"number": t.number, "error": t.user_attrs.get("failure", "worker lost")})
    if not rows:
        first = failed[0]["error"] if failed else "no trial ran"
        raise SweepError(f"every trial failed ({len(failed)}); the first: {first}")
    front = pareto(rows)
    from search_spaces.hls import plots

    artifacts_dir = run.workdir / "artifacts"
    artifacts_dir.mkdir(exist_ok=True)
    figures = plots.write_figures(rows, front, run.settings.cost, run.reporter, artifacts_dir)
    archived = []
    for row in front[:MAX_PARETO_ARCHIVES]:
        project = run.workdir / row["metrics"]["project"]
        if not project.is_dir():
            continue  # a trial from before a resume on another host: its project is gone
        archive = artifacts_dir / f"hls4ml_project_trial{row['number']}.tar.gz"
        _archive_project(project, archive)
        run.reporter.artifact(archive.name, archive, "archive")
        yml = project / "hls4ml_config.yml"
        if yml.exists():
            target = artifacts_dir / f"hls4ml_config_trial{row['number']}.yml"
            shutil.copyfile(yml, target)
            run.reporter.artifact(target.name, target, "config")
        archived.append(row["number"])
    model_path = artifacts_dir / "float_model.pt"
    models.save_model(*_kit_model(run.net), model_path)
    run.reporter.artifact(model_path.name, model_path, "model")
    for child in run.workdir.glob("trial_*"):
        shutil.rmtree(child, ignore_errors=True)
    run.reporter.progress(1.0, "done")

    def brief(row: dict[str, Any]) -> dict[str, Any]:
        m = row["metrics"]
        return {
            "number": row["number"],
            "fixed_accuracy": m["fixed_accuracy"],
            "dsp": m["dsp"],
            "lut": m["lut"],
            "bram": m["bram"],
            "latency_ns": m["latency_ns"],
            "initiation_interval": m["initiation_interval"],
            "reuse_factor": m["reuse_factor"],
            "strategy": m["strategy"],
            "mean_bits": m["mean_bits"],
            "sparsity": row["params"].get("sparsity", 0.0),
            "utilisation": m["utilisation"],
        }

    best = max(rows, key=lambda r: (r["metrics"]["fixed_accuracy"], -r["values"][1]), default=None)
    return json_safe(
        {
            "float_accuracy": run.net.float_accuracy,
            "part": run.settings.part.part,
            "clock_period_ns": run.settings.clock_period_ns,
            "trials": len(rows) + len(failed),
            "failed": failed,
            "compiles": run.compiles,
            "emulations_reused": run.cache_hits,
            "compile_seconds": round(run.compile_seconds, 2),
            "pareto": [brief(r) for r in front],
            "best_accuracy": brief(best) if best else None,
            "archived_trials": archived,
            "estimate_note": _note("io_stream" if run.net.convolutional else "io_parallel"),
            **models.output_entry("float_model.pt", run.net.arch),
            "plots": figures,
            **shown(run, front, best),
        }
    )


def shown(run: _Run, front: list[dict[str, Any]], best: dict[str, Any] | None) -> dict[str, Any]:
    """The result's headlines (float and best fixed-point accuracy, the most accurate trial's estimated cost) and
    the Pareto front as a table."""
    from search_spaces.kit.results import headline, summary, table

    def rf(m: dict[str, Any]) -> str:
        return ", ".join(f"{layer}={r}" for layer, r in sorted(m["reuse_factor"].items()))

    m = best["metrics"] if best else None
    return {
        "summary": summary(
            headline("Float accuracy", 100 * run.net.float_accuracy, "%"),
            headline("Best fixed-point accuracy", 100 * m["fixed_accuracy"], "%") if m else None,
            headline("DSP of that trial (estimate)", m["dsp"], "DSP", "lower") if m else None,
            headline("Latency of that trial (estimate)", m["latency_ns"], "ns", "lower") if m else None,
            headline("Pareto-optimal trials", len(front), "", None),
        ),
        "tables": [
            table(
                "Pareto front (estimates)",
                [
                    "trial",
                    "fixed-point accuracy",
                    "DSP",
                    "LUT",
                    "FF",
                    "BRAM",
                    "latency ns",
                    "II",
                    "mean bits",
                    "strategy",
                    "reuse factors",
                ],
                [
                    [
                        r["number"],
                        r["metrics"]["fixed_accuracy"],
                        r["metrics"]["dsp"],
                        r["metrics"]["lut"],
                        r["metrics"]["ff"],
                        r["metrics"]["bram"],
                        r["metrics"]["latency_ns"],
                        r["metrics"]["initiation_interval"],
                        r["metrics"]["mean_bits"],
                        r["metrics"]["strategy"],
                        rf(r["metrics"]),
                    ]
                    for r in front
                ],
            )
        ],
    }


def _kit_model(net: Network) -> tuple[nn.Module, dict[str, Any]]:
    """The float MLP back in the kit's layout (BatchNorm folded away), so the file loads as an input model; a
    CNN is given back as it came (the kit's layout, BatchNorm and all)."""
    if net.kit_model is not None:
        return net.kit_model, net.arch
    arch = models.complete_arch({**net.arch, "batchnorm": False})
    model = models.build_model(arch)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for linear, name in zip(linears, net.dense_names, strict=True):
        linear.load_state_dict(getattr(net.model, name).state_dict())
    return model, arch


def _archive_project(project: Path, target: Path) -> None:
    """The project as ``vivado_hls -f build_prj.tcl`` wants it, without the host-specific emulation library."""
    tmp = target.with_suffix(".partial")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(project.rglob("*")):
            if path.is_file() and path.suffix != ".so" and path.name not in ("emulation_outputs.npy", EMULATION_LOG):
                tar.add(path, arcname=str(Path(project.name) / path.relative_to(project)))
    tmp.replace(target)
