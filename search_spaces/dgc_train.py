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
after the warm-up (see :func:`search_spaces.dgc.config.auto_batch_size`). The model: the reference way
sends the 1-D tensors whole, which caps the ratio at 4 / (value bytes × 1-D share); on the kit's default
VGG (0.97% 1-D) that is 154× even with fp16 values, so the built-in ``vgg`` here is a wider one whose 1-D
share is about 0.3% (:func:`~search_spaces.dgc.config.dgc_vgg_arch`), on which the reference way reaches
about 320× with fp16 values (the default wire format) and the headline about 600×.

One trial per epoch and run (DGC first, then the baseline, then the reference-mode run); the job
checkpoints at every epoch boundary, so a resumed job goes on from the last finished epoch. The algorithm lives in
:mod:`search_spaces.dgc` (:mod:`~search_spaces.dgc.job` runs a job, :mod:`~search_spaces.dgc.config` is its typed
config); this module imports only light things at the top, since the web process imports it to serve the schema.
"""

from __future__ import annotations

from typing import Any

from search_spaces.base import DataShape, JobInputs, JobKind, MetricSpec, Objective, Reporter
from search_spaces.dgc.config import WARMUP_SPARSITY as _WARMUP
from search_spaces.dgc.config import DgcConfig, dgc_vgg_arch, resolve_batch_size

_ARCHITECTURES = ["vgg", "resnet", "mobilenet", "mlp"]
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
        batch = resolve_batch_size(DgcConfig.from_config(config), samples)
        epoch = _EPOCH_SECONDS_PER_1K_SAMPLES * samples / 1000 * (0.5 + 0.5 * 32 / batch)
        epoch *= max(1.0, data.features / 784)
        runs = 1 + int(config["run_dense_baseline"]) + int(config["run_reference_mode"])
        return 2 * (10 + runs * config["epochs"] * epoch) / 60

    def config_type(self) -> type:
        return DgcConfig

    def run(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
        """Train DGC (then the baseline) in ``workers`` processes; CPU only (gloo), ``inputs.device`` unused."""
        from search_spaces.dgc.job import run_dgc

        return run_dgc(DgcConfig.from_config(config), inputs, reporter)
