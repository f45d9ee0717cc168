"""The network the hls4ml sweep works on: the input model or the built-in MLP trained here (a checkpointed
pretrain stage), converted to the stack hls4ml takes (:mod:`.convert`), its data and float accuracy, the
subset of validation images a CNN's emulation predicts, and the float model given back as the job's output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from search_spaces.base import JobInputs, Reporter
from search_spaces.hls.config import Settings, SweepError
from search_spaces.hls.convert import to_hls_stack
from search_spaces.hls.graph import kernel_shape, to_hls_cnn
from search_spaces.hls4ml_sweep import Hls4mlSweep
from search_spaces.kit import datasets, models, trainer

PRETRAIN_SHARE = 0.15
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


@dataclass
class Network:
    """The float network the sweep works on, as the plain stack hls4ml converts (Linear/ReLU/Softmax for an
    MLP; Conv2d/ReLU/pooling, then Linear/ReLU/Softmax for a CNN). ``dense_names`` are the layers with
    weights (convolutions included), ``shapes`` their (``n_in``, ``n_out``) as hls4ml's product kernel sees
    them (a convolution's window ``k·k·C`` in, its filters out)."""

    model: nn.Module  # an MLP's nn.Sequential, a CNN's LayerGraph
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
    def structural(self) -> dict[str, Any]:
        """Per grouped convolution written dense, the 0/1 mask of the weights that may be nonzero (held when
        pruning); empty for an MLP."""
        return getattr(self.model, "structural", {})

    @property
    def convolutional(self) -> bool:
        return len(self.input_shape) == 3


def _flat(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)


def prepare_network(settings: Settings, inputs: JobInputs, reporter: Reporter) -> Network:
    """The input model (a parent's or an upload: an MLP, or a kit CNN) or the built-in MLP trained here
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
        if arch["name"] not in Hls4mlSweep.input_families:
            raise SweepError(f"hls4ml_sweep takes an MLP or a kit CNN; the input model is a {arch['name']}")
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
    stack: nn.Module
    if arch["name"] == "mlp":
        stack, dense = to_hls_stack(model)
    else:
        stack, dense = to_hls_cnn(model, input_shape)
        kit_model = model
        x_train = np.ascontiguousarray(splits.x_train.reshape(len(splits.x_train), *input_shape), dtype=np.float32)
        x_val = np.ascontiguousarray(splits.x_val.reshape(len(splits.x_val), *input_shape), dtype=np.float32)
        keep = emulation_samples(stack, input_shape)
        x_val, y_val = x_val[:keep], y_val[:keep]
    shapes = {name: kernel_shape(m) for name, m in stack.named_children() if name in dense}
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
