"""The model a job starts from: its input model (a parent job's output or an upload), or a built-in
architecture sized for the data, seeded, and trained in the job if the kind needs a trained one.

Every torch kind that transforms a model (granularity_sweep, adc_prune) or trains one (dgc_train) begins
here, so the three sources behave the same everywhere: an input model is loaded with
``torch.load(weights_only=True)`` under the architecture the service handed over and must fit the data; a
built-in one is the input architecture (``inputs.model_arch`` without weights) or the kind's own choice for
the family, built after :func:`~search_spaces.kit.trainer.set_seed` so that one seed gives one network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search_spaces.base import ConfigError, JobInputs, Reporter

if TYPE_CHECKING:
    import torch
    from torch import nn

    from search_spaces.kit.datasets import DatasetInfo
    from search_spaces.kit.models import TrainedModel


@dataclass(frozen=True)
class Pretrain:
    """How a built-in architecture is trained before the kind's own work: SGD with the kit's cosine
    schedule for ``epochs`` at ``lr``, filling the first ``share`` of the job's progress bar."""

    epochs: int
    lr: float
    batch_size: int
    seed: int
    share: float = 0.1


@dataclass
class Start:
    """The network a job starts from, its complete architecture, and where it came from: ``"input model"``,
    ``"built-in"`` (seeded, untrained) or ``"<family> trained N epochs"``."""

    model: nn.Module
    arch: dict[str, Any]
    source: str

    @property
    def from_input(self) -> bool:
        return self.source == "input model"


def starting_model(
    inputs: JobInputs,
    info: DatasetInfo,
    *,
    family: str,
    seed: int,
    builtin_arch: Callable[[DatasetInfo], dict[str, Any]] | None = None,
) -> Start:
    """The input model if the job has one, else a fresh built-in network seeded with ``seed``.

    ``family`` names the built-in architecture (the kit's reference one for ``info``, an MLP on tabular data);
    ``builtin_arch`` replaces the kit's choice by the kind's own. An input model that does not take the data's
    input shape and classes is refused with a :class:`ConfigError` on ``model``."""
    from search_spaces.kit import models, trainer

    if inputs.model_path is not None:
        model, arch = models.load_model(inputs.model_path, architecture=inputs.model_arch)
        if list(arch["input_shape"]) != list(info.input_shape) or arch["num_classes"] != info.num_classes:
            raise ConfigError(
                {
                    "model": [
                        f"the input model takes {arch['input_shape']} with {arch['num_classes']} "
                        f"classes; the dataset has {list(info.input_shape)} with "
                        f"{info.num_classes}"
                    ]
                }
            )
        return Start(model, dict(arch), "input model")
    name = "mlp" if info.modality == "tabular" else family
    if inputs.model_arch:
        arch = dict(inputs.model_arch)
    elif builtin_arch is not None and name == family:
        arch = builtin_arch(info)
    else:
        arch = models.default_arch(name, info)
    trainer.set_seed(seed)
    return Start(models.build_model(arch), dict(models.complete_arch(arch)), "built-in")


def trained_start(
    inputs: JobInputs,
    info: DatasetInfo,
    data: tuple[Any, Any, Any, Any],
    *,
    family: str,
    pretrain: Pretrain,
    reporter: Reporter,
    device: str | torch.device = "cpu",
) -> TrainedModel:
    """:func:`starting_model`, trained with ``pretrain`` if it is built-in, scored on the validation data.

    ``data`` is ``(x_train, y_train, x_val, y_val)``; the built-in network trains on the first two, reports
    ``pretrain/`` curves and progress through ``reporter`` and keeps its weights on the CPU in the result."""
    from search_spaces.kit import trainer
    from search_spaces.kit.models import TrainedModel, cpu_state

    x_train, y_train, x_val, y_val = data
    start = starting_model(inputs, info, family=family, seed=pretrain.seed)
    model = start.model.to(device)
    if not start.from_input:
        reporter.progress(0.0, "pretrain")

        def progress(epoch: int, result: Any) -> None:
            reporter.progress(
                pretrain.share * (epoch + 1) / pretrain.epochs,
                f"pretrain epoch {epoch + 1}/{pretrain.epochs}: validation accuracy {result.val_acc:.4f}",
            )

        result = trainer.train(
            model,
            x_train,
            y_train,
            epochs=pretrain.epochs,
            lr=pretrain.lr,
            batch_size=pretrain.batch_size,
            device=device,
            seed=pretrain.seed,
            optimizer="sgd",
            x_val=x_val,
            y_val=y_val,
            reporter=reporter,
            metric_prefix="pretrain/",
            on_epoch_end=progress,
        )
        start.source = f"{start.arch['name']} trained {result.epochs_done} epochs"
    accuracy = trainer.evaluate(model, x_val, y_val, device=device)
    return TrainedModel(start.arch, cpu_state(model), float(accuracy), start.source)
