"""``mlp_sweep``: seeded random search over a NumPy MLP's width and learning rate.

The service's smallest real job kind: it trains real networks on real (small) data in well under a
second per trial, so the queue, cancel, resume and storage paths can be exercised end to end quickly.
It trains with NumPy alone, which also makes it the kind the embedded-default smoke test runs; torch is
loaded only to write its checkpoint, in the kit's one format.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from search_spaces.base import DataShape, JobCancelled, JobInputs, JobKind, MetricSpec, Objective, Reporter
from search_spaces.kit import checkpoint
from search_spaces.kit.config import typed_config

CHECKPOINT_FORMAT = "mlp_sweep/2"  # /1 was a NumPy .npz of the best trial, before kit/checkpoint.py


@dataclass(frozen=True)
class MlpSweepConfig:
    """The typed config of ``mlp_sweep`` (the schema's properties; see :mod:`search_spaces.kit.config`)."""

    trials: int = 8
    epochs: int = 20
    hidden_min: int = 8
    hidden_max: int = 128
    lr_min: float = 0.005
    lr_max: float = 0.5
    batch_size: int = 32
    seed: int = 0


class MlpSweep(JobKind):
    name = "mlp_sweep"
    title = "MLP width / learning-rate sweep"
    description = (
        "Random search over the hidden width and learning rate of a one-hidden-layer MLP trained "
        "with minibatch SGD (NumPy). One trial per sampled configuration; the best model's "
        "weights are kept."
    )
    tiny_config: dict[str, Any] = {"trials": 4, "epochs": 5}
    metrics = (
        MetricSpec("train_loss", "", "loss", "mean minibatch cross-entropy of an epoch"),
        MetricSpec("val_accuracy", "fraction", "accuracy", "validation accuracy after an epoch"),
        MetricSpec("trial_val_accuracy", "fraction", "accuracy", "a finished trial's validation accuracy"),
    )
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "trials": {
                "type": "integer",
                "minimum": 1,
                "maximum": 200,
                "default": 8,
                "description": "Number of configurations to sample and train.",
            },
            "epochs": {
                "type": "integer",
                "minimum": 1,
                "maximum": 2000,
                "default": 20,
                "description": "Training epochs per trial.",
            },
            "hidden_min": {
                "type": "integer",
                "minimum": 2,
                "maximum": 1024,
                "default": 8,
                "description": "Smallest hidden width sampled.",
            },
            "hidden_max": {
                "type": "integer",
                "minimum": 2,
                "maximum": 1024,
                "default": 128,
                "description": "Largest hidden width sampled.",
            },
            "lr_min": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 10,
                "default": 0.005,
                "description": "Smallest learning rate (sampled log-uniformly).",
            },
            "lr_max": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 10,
                "default": 0.5,
                "description": "Largest learning rate.",
            },
            "batch_size": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 1,
                "maximum": 4096,
                "default": 32,
                "description": "Minibatch size.",
            },
            "seed": {
                "x-advanced": True,
                "type": "integer",
                "minimum": 0,
                "maximum": 2**31 - 1,
                "default": 0,
                "description": "Seed of the data split, the sampler and the initial weights.",
            },
        },
    }

    def objectives(self, config: dict[str, Any]) -> tuple[Objective, ...]:
        return (Objective("val_accuracy", "maximize", "fraction"),)

    def check(self, config: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if config["hidden_min"] > config["hidden_max"]:
            errors["hidden_min"] = ["must not exceed hidden_max"]
        if config["lr_min"] > config["lr_max"]:
            errors["lr_min"] = ["must not exceed lr_max"]
        return errors

    def budget(self, config: dict[str, Any], data: DataShape | str | None = None) -> float:
        # Training samples x (F·H + H·K) multiply-adds x 6 (forward + backward) at ~1 GFLOP/s in NumPy; digits
        # (about 1,260 training samples of 64 features, 10 classes) unless the dataset says otherwise.
        data = DataShape.of(data, "digits")
        samples = max(0.7 * (data.num_samples or 1797), 2000)  # the measured constant was 2,000 on digits
        flops = (
            config["trials"]
            * config["epochs"]
            * samples
            * 6
            * config["hidden_max"]
            * (data.features + data.num_classes)
        )
        return flops / 1e9 / 60

    def config_type(self) -> type:
        return MlpSweepConfig

    def run(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
        return self._run(typed_config(MlpSweepConfig, config), inputs, reporter)

    def _run(self, config: MlpSweepConfig, inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
        from search_spaces.kit import datasets

        splits = datasets.load(inputs.dataset, path=inputs.dataset_path, seed=inputs.seed)
        x_train, x_val, x_test = (a.reshape(len(a), -1) for a in (splits.x_train, splits.x_val, splits.x_test))
        classes = splits.info.num_classes
        done = {t.number: t for t in reporter.completed_trials()}
        best = _Best.restore(reporter.load_checkpoint())
        total = config.trials
        scores: dict[int, float] = {}  # trial -> validation accuracy, for the result's table and figure
        for number in range(total):
            params = sample_params(config, number)
            if number in done:
                stored = done[number].values
                if stored:
                    scores[number] = float(stored[0])
                continue
            if reporter.should_stop():
                raise JobCancelled()
            reporter.progress(number / total, f"trial {number + 1}/{total}")
            started = time.time()
            reporter.trial(number, params=params, state="running", started=started)
            weights, val_acc, loss = train_mlp(
                x_train,
                splits.y_train,
                x_val,
                splits.y_val,
                classes=classes,
                hidden=params["hidden"],
                lr=params["lr"],
                epochs=config.epochs,
                batch_size=config.batch_size,
                seed=inputs.seed * 1000 + number,
                reporter=reporter,
                trial=number,
                progress=(number / total, 1 / total),
            )
            finished = time.time()
            if best.improves(val_acc):
                # Checkpoint before the trial is recorded as finished: a resume skips finished trials.
                best = _Best(number, val_acc, weights)
                reporter.save_checkpoint(best.dump())
            reporter.trial(
                number,
                params=params,
                state="complete",
                values=[val_acc],
                metrics={
                    "val_accuracy": val_acc,
                    "train_loss": loss,
                    "params": int(sum(w.size for w in weights.values())),
                },
                started=started,
                finished=finished,
            )
            reporter.metric("trial_val_accuracy", val_acc, step=number)
            scores[number] = val_acc
        if best.weights is None:
            raise RuntimeError("no trial finished")
        test_acc = accuracy(best.weights, x_test, splits.y_test)
        path = inputs.workdir / "best_mlp.npz"
        np.savez(path, allow_pickle=True, **best.weights)  # numpy's default, named: **weights cannot set it
        reporter.artifact("best_mlp.npz", path, "model")
        summary = {
            "best_trial": best.number,
            "best_params": sample_params(config, best.number),
            "best_val_accuracy": best.val_acc,
            "test_accuracy": test_acc,
            "dataset": splits.info.name,
        }
        summary.update(_shown(config, scores, summary, inputs, reporter))
        summary_path = inputs.workdir / "summary.json"
        summary_path.write_text(json.dumps(summary, indent=2))
        reporter.artifact("summary.json", summary_path, "data")
        reporter.progress(1.0, "done")
        return summary


def _shown(
    config: MlpSweepConfig, scores: dict[int, float], result: dict[str, Any], inputs: JobInputs, reporter: Reporter
) -> dict[str, Any]:
    """The result's headlines and trial table, and the accuracy-vs-width figure (reported as an artifact)."""
    import plotly.graph_objects as go

    from search_spaces.kit.results import headline, summary, table, write_figure

    params = {n: sample_params(config, n) for n in sorted(scores)}
    rows = [[n, params[n]["hidden"], params[n]["lr"], scores[n]] for n in sorted(scores)]
    fig = go.Figure(
        go.Scatter(
            x=[params[n]["hidden"] for n in sorted(scores)],
            y=[scores[n] for n in sorted(scores)],
            mode="markers",
            text=[f"trial {n}, lr {params[n]['lr']:g}" for n in sorted(scores)],
            marker={
                "color": [math.log10(params[n]["lr"]) for n in sorted(scores)],
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": "log10 lr"}},
                "size": 10,
            },
            hovertemplate="%{text}<br>hidden %{x}<br>val acc %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        title={"text": "Validation accuracy vs hidden width (colour: learning rate)"},
        xaxis={"title": {"text": "hidden width"}, "type": "log"},
        yaxis={"title": {"text": "validation accuracy"}},
    )
    write_figure(reporter, inputs.workdir, "accuracy_vs_width.json", fig)
    best = params[result["best_trial"]]
    return {
        "summary": summary(
            headline("Best validation accuracy", 100 * result["best_val_accuracy"], "%"),
            headline("Test accuracy of the best trial", 100 * result["test_accuracy"], "%"),
            headline("Hidden width of the best trial", best["hidden"], "", None),
            headline("Trials", len(scores), "", None),
        ),
        "tables": [table("Trials", ["trial", "hidden", "learning rate", "validation accuracy"], rows)],
    }


def sample_params(config: MlpSweepConfig, number: int) -> dict[str, Any]:
    """Trial ``number``'s configuration: a pure function of (seed, number), so a resume samples the same."""
    rng = np.random.default_rng([config.seed, number])
    hidden = int(round(math.exp(rng.uniform(math.log(config.hidden_min), math.log(config.hidden_max)))))
    lr = float(math.exp(rng.uniform(math.log(config.lr_min), math.log(config.lr_max))))
    return {"hidden": hidden, "lr": round(lr, 6)}


def _forward(w: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.maximum(x @ w["w1"] + w["b1"], 0.0)
    return h, h @ w["w2"] + w["b2"]


def accuracy(w: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return float((_forward(w, x)[1].argmax(1) == y).mean())


def train_mlp(
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    classes: int,
    hidden: int,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    reporter: Reporter,
    trial: int,
    progress: tuple[float, float],
) -> tuple[dict[str, np.ndarray], float, float]:
    """Softmax cross-entropy MLP (He init, plain SGD); returns weights, validation accuracy, last loss."""
    rng = np.random.default_rng(seed)
    n_in = x.shape[1]
    w = {
        "w1": rng.normal(0, math.sqrt(2 / n_in), (n_in, hidden)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": rng.normal(0, math.sqrt(1 / hidden), (hidden, classes)).astype(np.float32),
        "b2": np.zeros(classes, np.float32),
    }
    loss = float("nan")
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        losses = []
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            xb, yb = x[idx], y[idx]
            h, logits = _forward(w, xb)
            logits -= logits.max(1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(1, keepdims=True)
            losses.append(float(-np.log(p[np.arange(len(yb)), yb] + 1e-12).mean()))
            p[np.arange(len(yb)), yb] -= 1.0
            p /= len(yb)
            dh = (p @ w["w2"].T) * (h > 0)
            w["w2"] -= lr * (h.T @ p)
            w["b2"] -= lr * p.sum(0)
            w["w1"] -= lr * (xb.T @ dh)
            w["b1"] -= lr * dh.sum(0)
        if reporter.should_stop():
            raise JobCancelled()
        loss = float(np.mean(losses))
        reporter.metric("train_loss", loss, step=epoch, trial=trial)
        reporter.metric("val_accuracy", accuracy(w, x_val, y_val), step=epoch, trial=trial)
        reporter.progress(progress[0] + progress[1] * (epoch + 1) / epochs, f"trial {trial + 1}, epoch {epoch + 1}")
    return w, accuracy(w, x_val, y_val), loss


class _Best:
    """The best trial so far; its bytes are the job's checkpoint."""

    def __init__(self, number: int = -1, val_acc: float = -1.0, weights: dict[str, np.ndarray] | None = None):
        self.number, self.val_acc, self.weights = number, val_acc, weights

    def improves(self, val_acc: float) -> bool:
        return val_acc > self.val_acc

    def dump(self) -> bytes:
        """The kit's checkpoint format (:mod:`search_spaces.kit.checkpoint`): the weights as tensors (same
        dtype, so a resumed job computes the same numbers), the trial number and its accuracy as JSON."""
        import torch

        assert self.weights is not None
        state = {k: torch.from_numpy(v) for k, v in self.weights.items()}
        return checkpoint.pack(CHECKPOINT_FORMAT, state=state, meta={"number": self.number, "val_acc": self.val_acc})

    @classmethod
    def restore(cls, data: bytes | None) -> _Best:
        """What :meth:`dump` wrote; :class:`~search_spaces.kit.checkpoint.CheckpointError` (a ``ValueError``)
        for anything else, an older layout included: its finished trials would be skipped without their best."""
        if data is None:
            return cls()
        state, meta = checkpoint.unpack(data, CHECKPOINT_FORMAT)
        weights = {k: state[k].numpy() for k in ("w1", "b1", "w2", "b2")}
        return cls(int(meta["number"]), float(meta["val_acc"]), weights)
