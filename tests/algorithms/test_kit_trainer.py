"""The training kit's loop: learning, determinism, metrics, cancel, masks and resume."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from search_spaces.base import JobCancelled, MemoryReporter
from search_spaces.kit import datasets, trainer
from search_spaces.kit.models import build_model, default_arch
from search_spaces.kit.trainer import TrainResult, evaluate, set_seed, train


@pytest.fixture(scope="module")
def wine() -> datasets.Splits:
    return datasets.load("wine", seed=0)


def _mlp(splits: datasets.Splits, seed: int = 0, hidden: list[int] | None = None) -> nn.Module:
    set_seed(seed)
    arch = default_arch("mlp", splits.info)
    return build_model({**arch, "hidden": hidden if hidden is not None else [16]})


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class StopAfter(MemoryReporter):
    """Asks to stop on its ``calls``-th ``should_stop`` call."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = 0
        self.limit = calls

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls >= self.limit


def test_it_learns_digits_with_a_cnn() -> None:
    splits = datasets.load("digits", seed=0, max_train=600)
    set_seed(0)
    model = build_model(default_arch("vgg", splits.info))
    result = train(model, splits.x_train, splits.y_train, epochs=4, lr=0.05, x_val=splits.x_val, y_val=splits.y_val)
    assert result.val_acc is not None and result.val_acc > 0.9
    assert result.epochs_done == 4 and not result.stopped and result.seconds > 0
    assert result.val_acc == evaluate(model, splits.x_val, splits.y_val)


def test_jets_mlp_is_learnable_but_not_solved() -> None:
    splits = datasets.load("jets_synthetic", seed=0)
    set_seed(0)
    model = build_model(default_arch("mlp", splits.info))
    result = train(
        model, splits.x_train, splits.y_train, epochs=6, lr=0.05, batch_size=128, x_val=splits.x_val, y_val=splits.y_val
    )
    assert result.val_acc is not None and 0.65 < result.val_acc < 0.9


def test_same_seed_same_weights_other_seed_other_weights(wine: datasets.Splits) -> None:
    runs = []
    for seed in (3, 3, 4):
        model = _mlp(wine, seed=seed)
        train(model, wine.x_train, wine.y_train, epochs=3, lr=0.05, batch_size=16, seed=seed)
        runs.append(_weights(model))
    for key in runs[0]:
        torch.testing.assert_close(runs[0][key], runs[1][key], rtol=0, atol=0)
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_evaluate_counts_correct_predictions_and_restores_mode() -> None:
    model = nn.Sequential(nn.Identity())  # the inputs are the logits
    x = np.array([[2, 1, 0], [0, 3, 1], [1, 0, 5], [4, 0, 0]], dtype=np.float32)
    y = np.array([0, 1, 2, 2])
    model.train()
    assert evaluate(model, x, y, batch_size=3) == pytest.approx(0.75)
    assert model.training
    assert math.isnan(evaluate(model, x[:0], y[:0]))


def test_metrics_are_prefixed_stepped_and_throttled(wine: datasets.Splits) -> None:
    reporter = MemoryReporter()
    n = len(wine.y_train)
    steps = math.ceil(n / 8)
    train(
        _mlp(wine),
        wine.x_train,
        wine.y_train,
        epochs=3,
        lr=0.05,
        batch_size=8,
        x_val=wine.x_val,
        y_val=wine.y_val,
        reporter=reporter,
        metric_prefix="trial3/",
        step_offset=1000,
    )
    names = {name for name, *_ in reporter.metrics}
    assert names == {"trial3/train_loss", "trial3/val_acc"}
    val_steps = [step for name, _, step, _ in reporter.metrics if name == "trial3/val_acc"]
    assert val_steps == [1000 + steps * e for e in (1, 2, 3)]
    loss_steps = [step for name, _, step, _ in reporter.metrics if name == "trial3/train_loss"]
    assert len(loss_steps) == 3 * (steps // max(1, steps // trainer.LOSS_POINTS_PER_EPOCH))
    assert loss_steps == sorted(loss_steps) and loss_steps[0] > 1000 and loss_steps[-1] <= 1000 + 3 * steps
    losses = [v for name, v, *_ in reporter.metrics if name == "trial3/train_loss"]
    assert losses[-1] < losses[0]


def test_cancel_is_honoured_between_batches(wine: datasets.Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer, "STOP_CHECK_SECONDS", 0.0)
    model = _mlp(wine)
    before = _weights(model)
    reporter = StopAfter(calls=5)
    with pytest.raises(JobCancelled):
        train(model, wine.x_train, wine.y_train, epochs=50, lr=0.05, batch_size=8, reporter=reporter)
    assert reporter.calls == 5  # stopped at the fifth batch, not at the end of an epoch
    assert any(not torch.equal(before[k], v) for k, v in _weights(model).items())


def test_cancel_is_prompt_with_the_default_throttle(wine: datasets.Splits) -> None:
    reporter = StopAfter(calls=2)
    with pytest.raises(JobCancelled):
        train(_mlp(wine), wine.x_train, wine.y_train, epochs=10_000, lr=0.01, batch_size=8, reporter=reporter)
    assert reporter.calls == 2


def test_masks_keep_pruned_weights_at_zero(wine: datasets.Splits) -> None:
    model = _mlp(wine)
    weight = dict(model.named_parameters())["fc1.weight"]
    mask = (torch.rand(weight.shape, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    before = weight.detach().clone()
    train(model, wine.x_train, wine.y_train, epochs=3, lr=0.1, batch_size=8, masks={"fc1.weight": mask})
    assert torch.all(weight[mask == 0] == 0)
    assert torch.all(weight[mask == 1] != before[mask == 1])


def test_bad_masks_are_refused(wine: datasets.Splits) -> None:
    model = _mlp(wine)
    with pytest.raises(ValueError, match="does not have"):
        train(model, wine.x_train, wine.y_train, epochs=1, lr=0.1, masks={"nope": torch.ones(1)})
    with pytest.raises(ValueError, match="shape"):
        train(model, wine.x_train, wine.y_train, epochs=1, lr=0.1, masks={"fc1.weight": torch.ones(2)})


def test_resume_from_checkpoint_equals_an_uninterrupted_run(wine: datasets.Splits) -> None:
    kwargs: dict[str, Any] = dict(epochs=4, lr=0.05, batch_size=16, seed=7, weight_decay=1e-4)
    straight = _mlp(wine, seed=1)
    train(straight, wine.x_train, wine.y_train, **kwargs)

    saved: list[bytes] = []

    def checkpoint_and_stop(epoch: int, result: TrainResult) -> bool:
        saved.append(trainer.checkpoint_bytes(first_half, result.state, {"epoch": epoch}))
        return epoch == 1  # "killed" after the second epoch

    first_half = _mlp(wine, seed=1)
    result = train(first_half, wine.x_train, wine.y_train, on_epoch_end=checkpoint_and_stop, **kwargs)
    assert result.stopped and result.epochs_done == 2
    resumed = _mlp(wine, seed=99)  # different initial weights: the checkpoint must overwrite them
    state, extra = trainer.restore_checkpoint(saved[-1], resumed)
    assert extra == {"epoch": 1} and state["epoch"] == 2
    result = train(resumed, wine.x_train, wine.y_train, state=state, **kwargs)
    assert result.epochs_done == 4 and not result.stopped
    for key, value in _weights(straight).items():
        torch.testing.assert_close(_weights(resumed)[key], value, rtol=1e-6, atol=1e-7)


def test_start_epoch_continues_the_learning_rate_schedule(wine: datasets.Splits) -> None:
    seen: list[tuple[int, float]] = []

    def record(epoch: int, result: TrainResult) -> None:
        seen.append((epoch, result.state["optimizer"]["param_groups"][0]["lr"]))

    train(_mlp(wine), wine.x_train, wine.y_train, epochs=4, lr=0.1, start_epoch=2, on_epoch_end=record)
    # Cosine over 4 epochs: after epoch e the rate is 0.1 · ½(1 + cos(π(e + 1)/4)).
    assert [e for e, _ in seen] == [2, 3]
    assert [lr for _, lr in seen] == pytest.approx([0.05 * (1 + math.cos(3 * math.pi / 4)), 0.0], abs=1e-12)


@pytest.mark.parametrize("epochs", [1, 2, 3])
def test_cosine_anneals_every_batch_to_zero_at_the_last_step(
    epochs: int, wine: datasets.Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference's schedule (han-cai/PathLevel-EAS ``_learning_rate``): batch t of T runs at ½·lr·(1 + cos(πt/T)),
    so a fine-tune of one, two or three epochs ends near 0 instead of at its last epoch's rate."""
    used: list[float] = []
    step = torch.optim.SGD.step

    def record(self: torch.optim.SGD, *args: Any, **kwargs: Any) -> Any:
        used.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", record)
    per_epoch = math.ceil(len(wine.y_train) / 4)  # batch 4: 31 steps an epoch
    result = train(_mlp(wine), wine.x_train, wine.y_train, epochs=epochs, lr=0.1, batch_size=4)
    total = epochs * per_epoch
    assert len(used) == total
    assert used == pytest.approx([0.05 * (1 + math.cos(math.pi * t / total)) for t in range(total)], abs=1e-12)
    assert used[-1] < 0.003 * 0.1  # ~0 at the last step (0.26% of the rate for 31 steps)
    assert all(a > b for a, b in zip(used, used[1:], strict=False))
    assert result.state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-15)


def test_per_epoch_cosine_is_still_available(wine: datasets.Splits) -> None:
    seen: list[float] = []
    train(
        _mlp(wine),
        wine.x_train,
        wine.y_train,
        epochs=2,
        lr=0.1,
        schedule="cosine_epoch",
        on_epoch_end=lambda e, r: seen.append(r.state["optimizer"]["param_groups"][0]["lr"]),
    )
    assert seen == pytest.approx([0.05, 0.0], abs=1e-12)  # the second epoch ran at half the rate


def test_nesterov_momentum_is_passed_to_sgd() -> None:
    model = nn.Linear(2, 2)
    opt = trainer.make_optimizer(model, "sgd", lr=0.1, weight_decay=1e-4, nesterov=True)
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["weight_decay"] == 1e-4


def test_adam_constant_schedule_and_bad_options(wine: datasets.Splits) -> None:
    model = _mlp(wine)
    result = train(
        model,
        wine.x_train,
        wine.y_train,
        epochs=5,
        lr=0.01,
        optimizer="adam",
        schedule="constant",
        x_val=wine.x_val,
        y_val=wine.y_val,
    )
    assert result.val_acc is not None and result.val_acc > 0.8
    assert result.state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="optimizer"):
        train(model, wine.x_train, wine.y_train, epochs=1, lr=0.01, optimizer="lion")
    with pytest.raises(ValueError, match="schedule"):
        train(model, wine.x_train, wine.y_train, epochs=1, lr=0.01, schedule="step")
    with pytest.raises(ValueError, match="samples"):
        train(model, wine.x_train, wine.y_train[:-1], epochs=1, lr=0.01)


def test_torch_threads_is_restored_after_the_block_even_on_error() -> None:
    from search_spaces.kit.trainer import torch_threads

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with pytest.raises(RuntimeError), torch_threads(target):
        assert torch.get_num_threads() == target
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
