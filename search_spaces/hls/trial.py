"""One trial of the hls4ml sweep: the run's state, the search space, the pruned network of a sparsity, the
hls4ml configuration of a trial's parameters, converting and writing the project, its fixed-point accuracy
(compiled, or reused when only the reuse factors differ), the estimate read back from the project, and the
trial told to the study and reported."""

from __future__ import annotations

import contextlib
import copy
import io
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState
from torch import nn

from search_spaces.base import JobInputs, Reporter, json_safe
from search_spaces.hls import estimate as est
from search_spaces.hls.config import Settings, TrialFailed
from search_spaces.hls.emulation import emulate
from search_spaces.hls.network import Network
from search_spaces.hls.project import ProjectError, clean_config_yaml, read_project
from search_spaces.kit import trainer
from search_spaces.kit.pruning import group_mask


@dataclass
class _Run:
    settings: Settings
    inputs: JobInputs
    reporter: Reporter
    net: Network
    study: optuna.Study
    workdir: Path
    valid_rf: dict[str, list[int]]
    pruned: dict[float, tuple[nn.Module, float]] = field(default_factory=dict)
    accuracy_cache: dict[tuple[Any, ...], float] = field(default_factory=dict)
    compiles: int = 0
    cache_hits: int = 0
    compile_seconds: float = 0.0


def prune_network(run: _Run, sparsity: float) -> tuple[nn.Module, float]:
    """The network with the ``sparsity`` smallest-magnitude weights of every dense layer zeroed, fine-tuned
    for ``prune_epochs`` with the zeros held; cached per sparsity (and deterministic given the seed)."""
    if sparsity in run.pruned:
        return run.pruned[sparsity]
    net = run.net
    if sparsity <= 0:
        run.pruned[sparsity] = (net.model, net.float_accuracy)
        return run.pruned[sparsity]
    model = copy.deepcopy(net.model)
    # A grouped convolution written dense keeps its zeros: they are held, and count towards the sparsity.
    masks = {
        f"{name}.weight": group_mask(
            getattr(model, name).weight.detach(), "fine", sparsity, "l1", keep=net.structural.get(name)
        )
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


def hls_config(run: _Run, model: nn.Module, params: dict[str, Any]) -> dict[str, Any]:
    """The hls4ml configuration of ``params``: per dense layer its reuse factor and ``ap_fixed<W,I>`` for
    weights and biases; results of dense and ReLU layers round and saturate (``AP_RND, AP_SAT``) so a
    narrow type clips instead of wrapping around; a merge (``add``/``cat`` of a CNN's graph) keeps the result
    type of the weighted layer before it; the softmax keeps hls4ml's table types. Layers are visited in the
    traced graph's order (hls4ml's layer names)."""
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
    layers[next(iter(layers))]["Precision"]["result"] = s.input_precision  # the input layer comes first
    previous = None
    for name in list(layers):
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
        elif name.startswith(("add", "cat")) and previous is not None:
            bits, integer = previous
            layers[name]["Precision"]["result"] = f"ap_fixed<{bits + 2},{integer + 2},AP_RND,AP_SAT>"
        elif name == "softmax":
            layers[name]["Precision"]["result"] = "ap_fixed<16,6,AP_RND,AP_SAT>"
    return cfg


def weight_overflow(model: nn.Module, params: dict[str, Any], dense: list[str]) -> str | None:
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
