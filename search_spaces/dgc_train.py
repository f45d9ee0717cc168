"""``dgc_train``: data-parallel training with Deep Gradient Compression against a dense baseline.

Lin, Han, Mao, Wang, Dally, "Deep Gradient Compression: Reducing the Communication Bandwidth for
Distributed Training", ICLR 2018 (arXiv:1712.01887). N worker processes train one model over
``torch.distributed`` (gloo, CPU), each on its shard of the data; they exchange only the top 0.1% of
their accumulated gradient (values + int32 indices, all-gathered), with momentum correction, local
gradient clipping, momentum factor masking and a warm-up of the sparsity, each switchable for
ablations. Every parameter tensor is sparsified by default. The same seed, shards, batches and schedule
then train a dense all-reduce baseline and, by default, DGC the way the reference code
(``synxlin/deep-gradient-compression``) trains: 1-D tensors (biases, BatchNorm) sent dense, exactly k
entries per tensor, weight decay applied locally, learning-rate warm-up. The result sets the runs side by
side: accuracy, bytes on the wire, compression ratio, wall time, and the time projected on a link.

Two defaults follow from the arithmetic of a 0.1% density. The step count: an entry is sent about once
every 1/(1 − sparsity) steps (1,000 at 99.9%), so a run of too few steps never sends part of the model;
the per-worker batch is chosen so that every entry is expected to be sent ``min_sends_per_entry`` times
after the warm-up (see :func:`auto_batch_size`). The model: the reference way sends the 1-D tensors
whole, which caps the ratio at 4 / (value bytes × 1-D share); on the kit's default VGG (0.97% 1-D) that
is 154× even with fp16 values, so the built-in ``vgg`` here is a wider one whose 1-D share is about 0.3%
(:func:`dgc_vgg_arch`), on which the reference way reaches about 320× with fp16 values (the default
wire format) and the headline about 600×.

One trial per epoch and run (DGC first, then the baseline, then the reference-mode run); the job
checkpoints at every epoch boundary, so a resumed job goes on from the last finished epoch. The algorithm lives in
:mod:`search_spaces.dgc`; this module imports only light things at the top, since the web process
imports it to serve the schema.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import time
from typing import Any

from search_spaces.base import DataShape, JobCancelled, JobInputs, JobKind, MetricSpec, Objective, Reporter

_WARMUP = [0.75, 0.9375, 0.984375, 0.996, 0.999]
_ARCHITECTURES = ["vgg", "resnet", "mobilenet", "mlp"]
# The built-in vgg of this kind: the widest stages last, one 3×3 convolution each (see dgc_vgg_arch).
_DGC_VGG_WIDTHS = [16, 32, 128, 128]
# The automatic per-worker batch: the largest in this range that gives enough steps (auto_batch_size).
_AUTO_BATCH = (2, 32)
_CHECKPOINT_FORMAT = "dgc_train/1"
# Seconds per 1,000 training samples and epoch at batch 32, 4 workers sharing 2 CPU cores, exchange included,
# scaled up for smaller batches in budget(). With the automatic batch bench/dgc.py used 129 CPU-seconds per
# 20-epoch run on mnist5k (batch 6) and 92 on digits (batch 2): a default job (three runs) is 5–7 CPU-minutes
# plus start-up, and budget() says 11, so the figure stays.
_EPOCH_SECONDS_PER_1K_SAMPLES = 0.5


class DgcTrain(JobKind):
    name = "dgc_train"
    title = "Deep Gradient Compression training (Lin et al. 2018)"
    description = (
        "Trains a model with N real worker processes (torch.distributed, gloo) that exchange only the "
        "largest 0.1% of their accumulated gradients, with momentum correction, local gradient "
        "clipping, momentum factor masking and sparsity warm-up, then trains a dense all-reduce "
        "baseline with the same seed and schedule, and DGC the reference code's way (1-D tensors "
        "dense, exactly k entries, local weight decay, learning-rate warm-up). Reports accuracy, bytes "
        "sent, compression ratio, compute vs communication time and the projected time on a given link, "
        "per epoch and overall."
    )
    input_families = tuple(_ARCHITECTURES)
    default_dataset = "digits"
    modalities = ("image",)
    tiny_config: dict[str, Any] = {"workers": 2, "epochs": 3, "max_train": 400}
    metrics = (
        MetricSpec(
            "*/train_loss",
            "",
            "loss",
            "training loss of the dgc/, dense/ or reference/ run (mean over a window of steps)",
        ),
        MetricSpec(
            "*/val_acc",
            "fraction",
            "accuracy",
            "validation accuracy of the dgc/, dense/ or reference/ run after an epoch",
        ),
    )
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "model": {
                "type": "string",
                "enum": _ARCHITECTURES,
                "default": "vgg",
                "description": "Built-in architecture trained when the job has no input model (an input "
                "model's weights are the start): the training kit's, sized for the dataset, except vgg, which "
                "is widened to stages of 16, 32, 128, 128 channels (as many of the last ones as the input's "
                "resolution holds) so that 1-D tensors are about 0.3% of its parameters, as in the paper's "
                "ResNets; the kit's default VGG has 0.97%, which caps the reference way at 154×.",
            },
            "workers": {
                "type": "integer",
                "minimum": 1,
                "maximum": 8,
                "default": 4,
                "description": "Worker processes on this host (N), each with its own shard of the data.",
            },
            "epochs": {
                "type": "integer",
                "minimum": 1,
                "maximum": 500,
                "default": 20,
                "description": "Training epochs of each run (DGC and, if enabled, the dense baseline).",
            },
            "batch_size": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 1024,
                "default": None,
                "description": "Minibatch per worker; the global batch is workers × batch_size. Null: "
                "enough steps for the density, chosen by the rule: an entry is sent about once every "
                "1/(1 − sparsity) steps (1,000 at 99.9%), so the largest batch from 2 to 32 is taken "
                "for which (epochs − warmup_epochs) × ⌈shard / batch⌉ × (1 − sparsity) ≥ "
                "min_sends_per_entry, i.e. every entry is expected to be sent that many times after the "
                "warm-up (shard: the training samples per worker); 2 if none is (raise epochs then), 32 "
                "if there is no step after the warm-up.",
            },
            "min_sends_per_entry": {
                "x-advanced": True,
                "type": "number",
                "minimum": 0.0,
                "maximum": 100.0,
                "default": 2.0,
                "description": "Automatic batch size (batch_size null): how many times every gradient "
                "entry is expected to be sent after the warm-up, (steps after the warm-up) × (1 − sparsity). "
                "Below 1 part of the model is never sent: at 0.42 (batch 32 on mnist5k) DGC missed the "
                "dense accuracy; at 1.65 (batch 8) it matched it within 0.5 points on three seeds.",
            },
            "lr": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 10.0,
                "default": 0.1,
                "description": "Peak SGD learning rate (applied to the worker-averaged gradient).",
            },
            "lr_schedule": {
                "x-advanced": True,
                "type": "string",
                "enum": ["cosine", "constant"],
                "default": "cosine",
                "description": "Per-epoch learning-rate schedule: cosine annealing to 0, or constant.",
            },
            "lr_warmup_epochs": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "default": 0,
                "description": "DGC and dense runs: ramp the learning rate linearly per step from lr/N to lr "
                "over these epochs, then run the schedule over the rest (Goyal et al. 2017, the reference "
                "code's warm-up). The reference-mode run always ramps over warmup_epochs.",
            },
            "momentum": {
                "x-advanced": True,
                "type": "number",
                "minimum": 0.0,
                "maximum": 0.999,
                "default": 0.9,
                "description": "SGD momentum m (DGC: of the locally accumulated velocity u).",
            },
            "weight_decay": {
                "x-advanced": True,
                "type": "number",
                "minimum": 0.0,
                "maximum": 0.1,
                "default": 0.0,
                "description": "L2 weight decay: added to each worker's gradient before compression, or "
                "applied locally after the exchange with local_weight_decay (and in the reference-mode run).",
            },
            "sparsity": {
                "type": "number",
                "minimum": 0.0,
                "maximum": 0.99999,
                "default": 0.999,
                "description": "Fraction of gradient entries a worker does not send in a step after the "
                "warm-up (0.999: the top 0.1% by magnitude of every parameter tensor).",
            },
            "warmup_epochs": {
                "type": "integer",
                "minimum": 0,
                "maximum": 20,
                "default": 5,
                "description": "Warm-up epochs: epoch e < warmup_epochs uses warmup_sparsity[e] "
                "(capped at sparsity); 0 turns the warm-up off.",
            },
            "warmup_sparsity": {
                "type": "array",
                "items": {"type": "number", "minimum": 0.0, "maximum": 0.99999},
                "maxItems": 20,
                "default": list(_WARMUP),
                "description": "Sparsity of each warm-up epoch, rising exponentially (the paper's "
                "75%, 93.75%, 98.4375%, 99.6%, 99.9%).",
            },
            "momentum_correction": {
                "x-advanced": True,
                "type": "boolean",
                "default": True,
                "description": "Accumulate the velocity u ← m·u + ∇, v ← v + u and send "
                "sparse(v); off: accumulate raw gradients and apply momentum "
                "after the exchange.",
            },
            "local_clipping": {
                "x-advanced": True,
                "type": "boolean",
                "default": True,
                "description": "Clip each worker's share of the gradient before accumulating it, at clip_norm·N^-1/2.",
            },
            "clip_norm": {
                "x-advanced": True,
                "type": "number",
                "minimum": 0.0,
                "maximum": 1000.0,
                "default": 5.0,
                "description": "Global gradient-norm threshold (0: no clipping). The dense baseline "
                "clips the averaged gradient at it; DGC clips locally if local_clipping.",
            },
            "factor_masking": {
                "x-advanced": True,
                "type": "boolean",
                "default": True,
                "description": "Momentum factor masking: zero the momentum u at the positions just "
                "sent (the accumulator v is always cleared there).",
            },
            "dense_vectors": {
                "x-advanced": True,
                "type": "boolean",
                "default": False,
                "description": "Send 1-D tensors (biases, BatchNorm scales and shifts) whole every step, "
                "as the reference code does; off: sparsify them like the rest (each "
                "tensor still sends at least one entry per step).",
            },
            "exact_k": {
                "x-advanced": True,
                "type": "boolean",
                "default": False,
                "description": "Send at most k = ⌈(1 − sparsity)·n⌉ entries of a tensor per step, as the "
                "reference code does; off: a sampled threshold that selects up to 1.3·k is kept as it is "
                "(only a larger selection is cut to k), which saves a pass but sends up to 30% more.",
            },
            "local_weight_decay": {
                "x-advanced": True,
                "type": "boolean",
                "default": False,
                "description": "Apply weight_decay after the exchange, each worker to its own (identical) "
                "weights with its own momentum buffer (the reference's DGCSGD), instead of adding it to "
                "the gradient before compression, where it competes for the k entries.",
            },
            "value_dtype": {
                "x-advanced": True,
                "type": "string",
                "enum": ["fp32", "fp16"],
                "default": "fp16",
                "description": "Wire format of the sent values, and of 1-D tensors sent dense (indices are "
                "always int32, 4 bytes): fp16 makes an entry 6 bytes instead of 8, as the reference code's "
                "fp16_values does. The dense baseline all-reduces fp32.",
            },
            "run_dense_baseline": {
                "type": "boolean",
                "default": True,
                "description": "Also train the dense all-reduce baseline with the same seed, "
                "shards and schedule, and compare.",
            },
            "run_reference_mode": {
                "type": "boolean",
                "default": True,
                "description": "Also train DGC the reference code's way, with the same seed, shards and "
                "settings except: dense_vectors, exact_k and local_weight_decay on, and the learning "
                "rate warmed up over warmup_epochs; reported beside the headline run.",
            },
            "link_gbps": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1000.0,
                "default": 1.0,
                "description": "Link speed in Gbit/s for the projected training time (measured bytes "
                "over this link plus measured compute time).",
            },
            "max_train": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 10_000_000,
                "default": None,
                "description": "Use at most this many training samples (stratified); null: all.",
            },
            "rendezvous": {
                "x-advanced": True,
                "type": ["object", "null"],
                "default": None,
                "additionalProperties": False,
                "required": ["address", "port", "world_size", "rank_offset"],
                "description": "Multi-host training: where rank 0's host listens and how many workers all hosts "
                "have together; every host runs the same job with its own rank_offset. Null: "
                "this host only, on a free local port.",
                "properties": {
                    "address": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 255,
                        "description": "Address of rank 0's host (MASTER_ADDR).",
                    },
                    "port": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 65535,
                        "description": "Port of rank 0's rendezvous store (MASTER_PORT).",
                    },
                    "world_size": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 1024,
                        "description": "Workers on all hosts together.",
                    },
                    "rank_offset": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": 1023,
                        "description": "Global rank of this host's first worker.",
                    },
                    "timeout_s": {
                        "type": "number",
                        "minimum": 5,
                        "maximum": 3600,
                        "default": 60,
                        "description": "Seconds to wait for the rendezvous and for any collective.",
                    },
                },
            },
            "seed": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 0,
                "maximum": 2**31 - 1,
                "default": 0,
                "description": "Seed of the initial weights, the shards, the batch order and the sampling.",
            },
        },
    }

    def objectives(self, config: dict[str, Any]) -> tuple[Objective, ...]:
        """A trial is one epoch of one run (DGC, dense, reference): its validation accuracy."""
        return (Objective("accuracy", "maximize", "fraction"),)

    def check(self, config: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if config["warmup_epochs"] > len(config["warmup_sparsity"]):
            errors["warmup_sparsity"] = [f"needs at least warmup_epochs ({config['warmup_epochs']}) entries"]
        rendezvous = config.get("rendezvous")
        world = config["workers"]
        if rendezvous:
            world = rendezvous["world_size"]
            if rendezvous["rank_offset"] + config["workers"] > world:
                errors["rendezvous"] = ["rank_offset + workers must not exceed world_size"]
        if config["max_train"] is not None and config["max_train"] < world:
            errors["max_train"] = [f"every worker needs a sample: at least {world}"]
        return errors

    def output_arch(
        self, config: dict[str, Any], data: DataShape, input_arch: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The model trained with compressed gradients: the input model's architecture, or the built-in ``model``."""
        if input_arch is not None:
            return input_arch
        family = "mlp" if data.modality == "tabular" else config["model"]
        if family == "vgg":
            return dgc_vgg_arch(data.input_shape, data.num_classes)
        return {"name": family, "input_shape": list(data.input_shape), "num_classes": data.num_classes}

    def budget(self, config: dict[str, Any], data: DataShape | str | None = None) -> float:
        """CPU-minutes on the 2-core machine: start-up, then each run's epochs at mnist5k's epoch cost
        (a conservative estimate for any built-in dataset; an upload's own training samples and numbers per
        sample, relative to mnist5k's 784, are counted), scaled by ``max_train`` and for small batches."""
        data = DataShape.of(data, self.default_dataset)
        full = 3500 if data.name else max(1, int(0.7 * (data.num_samples or 5000)))
        samples = min(config["max_train"] or full, full)
        batch = resolve_batch_size(config, samples)
        epoch = _EPOCH_SECONDS_PER_1K_SAMPLES * samples / 1000 * (0.5 + 0.5 * 32 / batch)
        epoch *= max(1.0, data.features / 784)
        runs = 1 + int(config["run_dense_baseline"]) + int(config["run_reference_mode"])
        return 2 * (10 + runs * config["epochs"] * epoch) / 60

    def run(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
        """Train DGC (then the baseline) in ``workers`` processes; CPU only (gloo), ``inputs.device`` unused."""
        return _run(config, inputs, reporter)


# --- the run (torch and the kit are imported inside) --------------------------------------------------------


def _run(config: dict[str, Any], inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
    from search_spaces.dgc import distributed as dd
    from search_spaces.kit import datasets

    if reporter.should_stop():
        raise JobCancelled()
    splits = datasets.load(inputs.dataset, path=inputs.dataset_path, seed=inputs.seed, max_train=config["max_train"])
    arch, initial_state = _initial_model(config, inputs, splits)
    config = {**config, "batch_size": resolve_batch_size(config, len(splits.y_train))}
    modes = ["dgc"] + (["dense"] if config["run_dense_baseline"] else [])
    modes += ["reference"] if config["run_reference_mode"] else []
    checkpoint = _Checkpoint.restore(reporter.load_checkpoint(), world_size(config))
    listener = _JobListener(config, reporter, checkpoint, modes)
    listener.report_checkpointed_epochs()
    phases = tuple(checkpoint.phase_start(mode) for mode in modes if checkpoint.epochs_done(mode) < config["epochs"])
    started = time.time()
    if phases:
        dd.train_data_parallel(
            _train_spec(config, splits, arch, initial_state, phases=phases, threads=inputs.threads), listener
        )
    summary = _summarise(config, splits, arch, checkpoint, modes, inputs, reporter)
    summary["wall_s_this_attempt"] = time.time() - started
    path = inputs.workdir / "summary.json"
    path.write_text(json.dumps(summary, indent=2))
    reporter.artifact("summary.json", path, "data")
    reporter.progress(1.0, "done")
    return summary


def world_size(config: dict[str, Any]) -> int:
    """N: this host's workers, or all hosts' together under a multi-host rendezvous."""
    return config["rendezvous"]["world_size"] if config.get("rendezvous") else config["workers"]


def expected_sends_per_entry(
    n_train: int, world: int, batch_size: int, *, epochs: int, warmup_epochs: int, sparsity: float
) -> float:
    """How often an average gradient entry is sent after the warm-up: (steps after it) × (1 − sparsity).

    A step sends k ≈ (1 − sparsity)·n entries of n, so over S steps the entries are sent S·(1 − sparsity)
    times on average; an entry waits about 1/(1 − sparsity) steps between sends (§3.1: nothing is lost,
    only delayed, and a delay longer than the run is a loss)."""
    steps = math.ceil(max(n_train // max(world, 1), 1) / batch_size)
    return max(epochs - warmup_epochs, 0) * steps * (1.0 - sparsity)


def auto_batch_size(
    n_train: int, world: int, *, epochs: int, warmup_epochs: int, sparsity: float, min_sends: float
) -> int:
    """The largest per-worker batch in 2..32 with which every entry is expected to be sent ``min_sends``
    times after the warm-up (:func:`expected_sends_per_entry`); 2 if none is, 32 if no step follows it."""
    low, high = _AUTO_BATCH
    if epochs <= warmup_epochs:
        return high
    for batch in range(high, low - 1, -1):
        sends = expected_sends_per_entry(
            n_train, world, batch, epochs=epochs, warmup_epochs=warmup_epochs, sparsity=sparsity
        )
        if sends >= min_sends:
            return batch
    return low


def resolve_batch_size(config: dict[str, Any], n_train: int) -> int:
    """``batch_size`` as configured, or :func:`auto_batch_size` when it is null."""
    if config["batch_size"] is not None:
        return int(config["batch_size"])
    return auto_batch_size(
        n_train,
        world_size(config),
        epochs=config["epochs"],
        warmup_epochs=config["warmup_epochs"],
        sparsity=config["sparsity"],
        min_sends=config["min_sends_per_entry"],
    )


def dgc_vgg_arch(input_shape: Any, num_classes: int) -> dict[str, Any]:
    """This kind's built-in ``vgg``: the kit's VGG family with stages of 16, 32, 128, 128 channels, one 3×3
    convolution each, keeping as many of the last stages as the input's resolution holds (every
    convolution sees at least 2×2 pixels: four on 28×28, the last three, 32-128-128, on 8×8).

    Why wider than the kit's default (16-32-64): the reference code sends 1-D tensors dense, so the
    ratio is at most 4 / (value bytes × their share of the parameters). The kit's VGG has 0.97% of 1-D
    parameters (154× with fp16 at best); this one has about 0.3%, like the paper's ResNets, so the
    reference way reaches about 320× with fp16 values. Most of the added weights sit where the
    resolution is lowest, so a step costs about twice the kit's VGG's, not the 8× of its parameters."""
    size, stages = min(int(d) for d in list(input_shape)[1:]), 0
    while size >= 2 and stages < len(_DGC_VGG_WIDTHS):
        stages, size = stages + 1, size // 2
    return {
        "name": "vgg",
        "input_shape": [int(d) for d in input_shape],
        "num_classes": int(num_classes),
        "widths": _DGC_VGG_WIDTHS[-max(stages, 1) :],
        "convs_per_stage": 1,
        "fc": [],
    }


def _initial_model(config: dict[str, Any], inputs: JobInputs, splits: Any) -> tuple[dict[str, Any], bytes]:
    """The architecture and the starting weights shared by both runs: the input model's, or a fresh
    kit model seeded with ``config["seed"]``."""
    from search_spaces.kit import models, trainer

    if inputs.model_path is not None:
        model, arch = models.load_model(inputs.model_path)
    else:
        if inputs.model_arch:
            arch = dict(inputs.model_arch)
        elif config["model"] == "vgg" and splits.info.modality == "image":
            arch = dgc_vgg_arch(splits.info.input_shape, splits.info.num_classes)
        else:
            arch = models.default_arch(config["model"], splits.info)
        trainer.set_seed(config["seed"])
        model = models.build_model(arch)
    return models.complete_arch(arch), _save_bytes(model.state_dict())


def _train_spec(
    config: dict[str, Any],
    splits: Any,
    arch: dict[str, Any],
    initial_state: bytes,
    phases: tuple[Any, ...],
    threads: int = 1,
) -> Any:
    from dataclasses import replace

    from search_spaces.dgc import distributed as dd
    from search_spaces.dgc.compressor import DGCSettings

    dgc = DGCSettings(
        sparsity=config["sparsity"],
        warmup=tuple(config["warmup_sparsity"][: config["warmup_epochs"]]),
        momentum=config["momentum"],
        weight_decay=config["weight_decay"],
        momentum_correction=config["momentum_correction"],
        local_clipping=config["local_clipping"],
        clip_norm=config["clip_norm"],
        factor_masking=config["factor_masking"],
        value_dtype=config["value_dtype"],
        dense_vectors=config["dense_vectors"],
        exact_k=config["exact_k"],
        local_weight_decay=config["local_weight_decay"],
    )
    # The reference code's way (dgc/compression.py, dgc/optim/sgd.py, train.py): only tensors of 2+
    # dimensions compressed, k entries exactly, weight decay outside the exchange, lr warmed up as long
    # as the sparsity is (its configs warm both up over 5 epochs).
    reference = replace(dgc, dense_vectors=True, exact_k=True, local_weight_decay=True)
    rv = config.get("rendezvous")
    rendezvous = (
        dd.Rendezvous()
        if not rv
        else dd.Rendezvous(
            address=rv["address"],
            port=rv["port"],
            world_size=rv["world_size"],
            rank_offset=rv["rank_offset"],
            timeout_s=float(rv.get("timeout_s", 60)),
        )
    )
    return dd.TrainSpec(
        arch=arch,
        initial_state=initial_state,
        x_train=splits.x_train,
        y_train=splits.y_train,
        x_val=splits.x_val,
        y_val=splits.y_val,
        phases=phases,
        workers=config["workers"],
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        lr=config["lr"],
        lr_schedule=config["lr_schedule"],
        lr_warmup_epochs=config["lr_warmup_epochs"],
        reference=reference,
        reference_lr_warmup_epochs=config["warmup_epochs"],
        momentum=config["momentum"],
        weight_decay=config["weight_decay"],
        clip_norm=config["clip_norm"],
        dgc=dgc,
        seed=config["seed"],
        rendezvous=rendezvous,
        threads_per_worker=max(1, threads // config["workers"]),
    )


def _save_bytes(obj: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


_RUN_ORDER = {"dgc": 0, "dense": 1, "reference": 2}


def trial_number(config: dict[str, Any], mode: str, epoch: int) -> int:
    """DGC epoch ``e`` is trial ``e``; the baseline's is ``epochs + e``, the reference mode's ``2·epochs + e``."""
    return _RUN_ORDER[mode] * config["epochs"] + epoch


class _Checkpoint:
    """Per run: epochs finished, the model after the last one, every local worker's state, and each
    finished epoch's statistics. Stored with ``torch.save`` (tensors and plain containers only)."""

    def __init__(self, world_size: int, runs: dict[str, dict[str, Any]] | None = None) -> None:
        self.world_size = world_size
        self.runs: dict[str, dict[str, Any]] = runs or {}

    @classmethod
    def restore(cls, data: bytes | None, world_size: int) -> _Checkpoint:
        import torch

        if data is None:
            return cls(world_size)
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if payload.get("format") != _CHECKPOINT_FORMAT:
            raise RuntimeError("the checkpoint was not written by dgc_train")
        if payload["world_size"] != world_size:
            raise RuntimeError(f"the checkpoint holds {payload['world_size']} workers' state, the job has {world_size}")
        return cls(world_size, payload["runs"])

    def dump(self) -> bytes:
        return _save_bytes({"format": _CHECKPOINT_FORMAT, "world_size": self.world_size, "runs": self.runs})

    def epochs_done(self, mode: str) -> int:
        return int(self.runs.get(mode, {}).get("epoch", 0))

    def history(self, mode: str) -> list[dict[str, Any]]:
        return list(self.runs.get(mode, {}).get("history", []))

    def model_state(self, mode: str) -> bytes | None:
        blob = self.runs.get(mode, {}).get("model")
        return None if blob is None else blob.numpy().tobytes()

    def phase_start(self, mode: str) -> Any:
        from search_spaces.dgc.distributed import PhaseStart

        run = self.runs.get(mode)
        if not run:
            return PhaseStart(mode)
        workers = {int(rank): blob.numpy().tobytes() for rank, blob in run["workers"].items()}
        return PhaseStart(
            mode, start_epoch=int(run["epoch"]), model_state=self.model_state(mode), worker_states=workers
        )

    def update(self, report: Any) -> None:
        import torch

        def blob(data: bytes) -> Any:
            return torch.frombuffer(bytearray(data), dtype=torch.uint8)

        run = self.runs.setdefault(report.mode, {"history": []})
        run["epoch"] = report.epoch + 1
        run["model"] = blob(report.model_state)
        run["workers"] = {int(rank): blob(state) for rank, state in report.worker_states.items()}
        run["history"].append(
            {"epoch": report.epoch, "stats": dict(report.stats), "started": report.started, "finished": report.finished}
        )


class _JobListener:
    """Turns the workers' news into reporter calls: running/complete trials, metric points, progress,
    checkpoints (saved before the trial is recorded, so a resume never skips an unsaved epoch)."""

    def __init__(self, config: dict[str, Any], reporter: Reporter, checkpoint: _Checkpoint, modes: list[str]) -> None:
        self.config, self.reporter, self.checkpoint, self.modes = config, reporter, checkpoint, modes
        self.done = {t.number for t in reporter.completed_trials()}
        self.total_epochs = config["epochs"] * len(modes)

    def _fraction(self, mode: str, epoch_fraction: float) -> float:
        finished = sum(self.checkpoint.epochs_done(m) for m in self.modes)
        return min((finished + epoch_fraction) / self.total_epochs, 0.999)

    def report_checkpointed_epochs(self) -> None:
        """Epochs the checkpoint holds but the reporter has not stored (a stop between the two)."""
        for mode in self.modes:
            for item in self.checkpoint.history(mode):
                self._record(mode, item["epoch"], item["stats"], item["started"], item["finished"])

    def _record(self, mode: str, epoch: int, stats: dict[str, Any], started: float, finished: float) -> None:
        number = trial_number(self.config, mode, epoch)
        if number in self.done:
            return
        self.reporter.trial(
            number,
            params={"mode": mode, "epoch": epoch},
            state="complete",
            values=[float(stats["accuracy"])],
            metrics=_json_stats(stats),
            started=started,
            finished=finished,
        )
        self.reporter.metric(f"{mode}/val_acc", float(stats["accuracy"]), step=epoch + 1, trial=number)
        self.done.add(number)

    def begin(self, mode: str, epoch: int, started: float) -> None:
        number = trial_number(self.config, mode, epoch)
        if number not in self.done:
            self.reporter.trial(number, params={"mode": mode, "epoch": epoch}, state="running", started=started)
        self.reporter.progress(self._fraction(mode, 0.0), f"{mode} epoch {epoch + 1}/{self.config['epochs']}")

    def metric(self, mode: str, epoch: int, name: str, value: float, step: int, fraction: float) -> None:
        self.reporter.metric(name, value, step, trial=trial_number(self.config, mode, epoch))
        self.reporter.progress(self._fraction(mode, fraction), f"{mode} epoch {epoch + 1}/{self.config['epochs']}")

    def epoch(self, report: Any) -> None:
        self.checkpoint.update(report)
        self.reporter.save_checkpoint(self.checkpoint.dump())
        self._record(report.mode, report.epoch, report.stats, report.started, report.finished)
        self.reporter.progress(
            self._fraction(report.mode, 0.0),
            f"{report.mode} epoch {report.epoch + 1}/{self.config['epochs']}: "
            f"validation accuracy {report.stats['accuracy']:.4f}",
        )

    def should_stop(self) -> bool:
        return self.reporter.should_stop()


def _json_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in stats.items()}


def projected_seconds(compute_s: float, payload_bytes: float, *, mode: str, workers: int, link_gbps: float) -> float:
    """Compute time plus the time the exchange would take on a link of ``link_gbps``.

    Bytes each worker moves per exchange: a ring all-reduce of the dense gradient sends 2(N−1)/N of it,
    an all-gather of sparse pieces N−1 pieces (each worker must see every other worker's piece).
    """
    n = max(workers, 1)
    traffic = payload_bytes * (2 * (n - 1) / n if mode == "dense" else (n - 1))
    return compute_s + traffic * 8 / (link_gbps * 1e9)


def _summarise(
    config: dict[str, Any],
    splits: Any,
    arch: dict[str, Any],
    checkpoint: _Checkpoint,
    modes: list[str],
    inputs: JobInputs,
    reporter: Reporter,
) -> dict[str, Any]:
    """Both runs side by side; final models saved as artifacts, scored on the test split."""
    import torch

    from search_spaces.kit import models, trainer

    world = world_size(config)
    runs: dict[str, Any] = {}
    for mode in modes:
        history = checkpoint.history(mode)
        state = checkpoint.model_state(mode)
        if not history or state is None:
            raise RuntimeError(f"the {mode} run finished no epoch")
        model = models.build_model(arch)
        model.load_state_dict(torch.load(io.BytesIO(state), map_location="cpu", weights_only=True))
        name = f"{mode}_model.pt"
        path = inputs.workdir / name
        models.save_model(model, arch, path)
        reporter.artifact(name, path, "model")
        runs[mode] = _run_summary(config, history, mode, world)
        runs[mode]["test_accuracy"] = trainer.evaluate(model, splits.x_test, splits.y_test)
        runs[mode]["model_artifact"] = name
    n_train = len(splits.y_train)
    summary: dict[str, Any] = {
        "dataset": splits.info.name,
        "model": arch["name"],
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "one_dimensional_share": sum(p.numel() for p in model.parameters() if p.dim() <= 1)
        / max(sum(p.numel() for p in model.parameters()), 1),
        "workers": world,
        "epochs": config["epochs"],
        "batch_size": config["batch_size"],
        "expected_sends_per_entry": expected_sends_per_entry(
            n_train,
            world,
            config["batch_size"],
            epochs=config["epochs"],
            warmup_epochs=config["warmup_epochs"],
            sparsity=config["sparsity"],
        ),
        "sparsity": config["sparsity"],
        "value_dtype": config["value_dtype"],
        "link_gbps": config["link_gbps"],
        "val_images": len(splits.y_val),
        "test_images": len(splits.y_test),
        "dgc": runs["dgc"],
        "dense": runs.get("dense"),
        "reference": runs.get("reference"),
        **models.output_entry("dgc_model.pt", arch),
    }
    if "dense" in runs:
        dgc, dense = runs["dgc"], runs["dense"]
        summary["accuracy_gap_points"] = 100 * (dgc["val_accuracy"] - dense["val_accuracy"])
        summary["test_accuracy_gap_points"] = 100 * (dgc["test_accuracy"] - dense["test_accuracy"])
        summary["bytes_saved_factor"] = dense["bytes_per_worker"] / max(dgc["bytes_per_worker"], 1)
        summary["projected_speedup"] = dense["projected_s"] / max(dgc["projected_s"], 1e-12)
        if "reference" in runs:
            ref = runs["reference"]
            summary["reference_accuracy_gap_points"] = 100 * (ref["val_accuracy"] - dense["val_accuracy"])
            summary["reference_test_accuracy_gap_points"] = 100 * (ref["test_accuracy"] - dense["test_accuracy"])
    summary.update(_shown(summary, checkpoint, modes, inputs, reporter))
    return summary


def _shown(
    summary: dict[str, Any], checkpoint: _Checkpoint, modes: list[str], inputs: JobInputs, reporter: Reporter
) -> dict[str, Any]:
    """Headlines (accuracy gap, bytes saved, steady-phase compression, projected speed-up), the DGC vs dense
    table (the two runs side by side) and the per-epoch figure, reported as an artifact."""
    import plotly.graph_objects as go

    from search_spaces.kit.results import headline, is_number, table, write_figure
    from search_spaces.kit.results import summary as headlines

    dgc, ref = summary["dgc"], summary.get("reference") or {}

    def maybe(label: str, key: str, unit: str, source: dict[str, Any] = summary) -> dict[str, Any] | None:
        return headline(label, source[key], unit) if is_number(source.get(key)) else None

    fig = go.Figure()
    for mode in modes:
        history = sorted(checkpoint.history(mode), key=lambda item: item["epoch"])
        epochs = [item["epoch"] + 1 for item in history]
        sent = list(itertools.accumulate(float(item["stats"]["bytes_per_worker"]) for item in history))
        fig.add_trace(
            go.Scatter(x=epochs, y=[float(i["stats"]["accuracy"]) for i in history], name=f"{mode}: val accuracy")
        )
        fig.add_trace(
            go.Scatter(x=epochs, y=sent, name=f"{mode}: bytes sent per worker", yaxis="y2", line={"dash": "dot"})
        )
    fig.update_layout(
        title={"text": "DGC vs dense: validation accuracy and gradient bytes sent per worker"},
        xaxis={"title": {"text": "epoch"}, "dtick": 1},
        yaxis={"title": {"text": "validation accuracy"}},
        yaxis2={
            "title": {"text": "bytes sent per worker (cumulative)"},
            "overlaying": "y",
            "side": "right",
            "type": "log",
        },
        legend={"orientation": "h", "y": -0.2},
    )
    write_figure(reporter, inputs.workdir, "dgc_vs_dense.json", fig)
    columns = [
        "run",
        "epochs",
        "val accuracy",
        "test accuracy",
        "final loss",
        "bytes per worker",
        "compression ratio",
        "density",
        "compute s",
        "comm s",
        "projected s",
    ]
    keys = [
        "epochs",
        "val_accuracy",
        "test_accuracy",
        "final_loss",
        "bytes_per_worker",
        "compression_ratio",
        "density",
        "compute_s",
        "comm_s",
        "projected_s",
    ]
    rows = [[mode, *(summary[mode].get(k) for k in keys)] for mode in modes]
    return {
        "summary": headlines(
            maybe("DGC vs dense, validation accuracy", "accuracy_gap_points", "points"),
            maybe("Gradient bytes sent, dense / DGC", "bytes_saved_factor", "×"),
            maybe("Steady-phase compression ratio", "steady_compression_ratio", "×", dgc),
            maybe(
                "Reference way (1-D dense, k exact): steady-phase compression ratio",
                "steady_compression_ratio",
                "×",
                ref,
            ),
            maybe("Reference way vs dense, validation accuracy", "reference_accuracy_gap_points", "points"),
            maybe(f"Projected speed-up at {summary['link_gbps']:g} Gb/s", "projected_speedup", "×"),
            headline("DGC test accuracy", 100 * dgc["test_accuracy"], "%"),
            headline("Bytes sent per worker (DGC)", dgc["bytes_per_worker"], "bytes", "lower"),
            headline(
                "Expected sends per gradient entry after the warm-up", summary["expected_sends_per_entry"], "", None
            ),
            headline("Batch per worker", summary["batch_size"], "", None),
        ),
        "tables": [table("DGC vs dense", columns, rows)],
    }


def _run_summary(config: dict[str, Any], history: list[dict[str, Any]], mode: str, world: int) -> dict[str, Any]:
    stats = [item["stats"] for item in sorted(history, key=lambda item: item["epoch"])]

    def total(key: str, rows: list[dict[str, Any]] = stats) -> float:
        return float(sum(float(r[key]) for r in rows))

    steady = [r for r, item in zip(stats, history, strict=True) if item["epoch"] >= config["warmup_epochs"]]
    nbytes, dense_bytes = total("bytes_per_worker"), total("dense_bytes_per_worker")
    steps = total("steps")
    return {
        "epochs": len(stats),
        "val_accuracy": float(stats[-1]["accuracy"]),
        "final_loss": float(stats[-1]["loss"]),
        "bytes_per_worker": nbytes,
        "dense_bytes_per_worker": dense_bytes,
        "bytes_per_step": nbytes / max(steps, 1),
        "compression_ratio": dense_bytes / nbytes if nbytes else None,
        "steady_compression_ratio": (
            total("dense_bytes_per_worker", steady) / total("bytes_per_worker", steady)
            if mode != "dense" and steady
            else None
        ),
        "density": float(sum(float(r["density"]) * float(r["steps"]) for r in stats) / max(steps, 1)),
        "compute_s": total("compute_s"),
        "comm_s": total("comm_s"),
        "select_s": total("select_s"),
        "wall_s": total("epoch_s"),
        "projected_s": projected_seconds(
            total("compute_s"), nbytes, mode=mode, workers=world, link_gbps=config["link_gbps"]
        ),
    }
