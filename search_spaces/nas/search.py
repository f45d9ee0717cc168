"""The ``pathlevel_nas`` driver: train the base network, let the meta-controller grow its cell, finish the best.

1. The base network (residual or dense, every cell a single layer) is trained; it is the parent every sampled
   network starts from (reference: ``arch_manager.get_start_net``), and a checkpoint is written.
2. Per controller update, ``networks_per_update`` cells are sampled by the controller (or uniformly, for
   the random-search baseline), applied to the parent's cells by function-preserving transformations so the
   weights are inherited, fine-tuned for ``finetune_epochs`` and scored on the validation split. A cell seen
   before is not trained again (the reference's net pool). Then REINFORCE updates the controller and a
   checkpoint of the whole search is written (controller, optimizer, baseline, parent weights, history).
3. The best cell's network is trained ``final_epochs`` from its inherited weights, and the same network from
   scratch for the same epochs; both are scored on the test split. Then the paper's equal-size comparison
   (Cai et al. 2018, §4.2 and Table 1: a found cell against its base at the same or fewer parameters): the found
   network's widths are scaled down until its parameters are at or below the base's (:func:`rescale_to_params`),
   and it and the base network are both trained from scratch for ``final_epochs`` with ``compare_seeds`` seeds.

Every training run uses the reference's recipe (han-cai/PathLevel-EAS ``RunConfig``): SGD with Nesterov momentum
0.9, weight decay 1e-4 (:data:`TRAIN_RECIPE`), cosine learning rate annealed every batch.

Sampling of update ``u`` draws from a generator seeded by (seed, u) with the controller as checkpointed before
``u``, so a resumed job re-samples the same cells and takes the scores of finished ones from their trials.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search_spaces.base import JobCancelled, JobInputs, Reporter, TrialRecord, check_stop, json_safe
from search_spaces.kit import checkpoint
from search_spaces.kit import pathlevel as N
from search_spaces.kit import tree_cells as T
from search_spaces.kit.config import typed_config
from search_spaces.nas import controller as C
from search_spaces.nas import evaluate as E

CHECKPOINT_FORMAT = "pathlevel_nas/2"
MAX_RESAMPLES = 50
SEARCH_SHARE = (0.1, 0.85)  # progress: base training before, final training after
TRAIN_RECIPE = E.TRAIN_RECIPE


@dataclass(frozen=True)
class SearchConfig:
    """The job config as typed settings (see ``search_spaces.pathlevel_nas`` for each field's meaning)."""

    base: str = "resnet"
    base_op: str = "sep3x3"
    stem: int = 16
    widths: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int = 1
    growth: int = 12
    dense_layers: tuple[int, ...] = (3, 3)
    max_depth: int = 3
    primitives: tuple[str, ...] = T.PRIMITIVES
    n_networks: int = 20
    networks_per_update: int = 5
    sampler: str = "rl"
    base_epochs: int = 15
    finetune_epochs: int = 3
    final_epochs: int = 15
    lr: float = 0.05
    finetune_lr: float = 0.035
    batch_size: int = 64
    controller_lr: float = 6e-3
    entropy_weight: float = 1e-2
    baseline_decay: float = 0.95
    transform_noise: float = 6e-3
    mimic_epochs: int = 5
    compare_seeds: int = 2
    max_params: int | None = None
    eval_workers: int = 1
    max_train: int | None = None
    seed: int = 0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SearchConfig:
        return typed_config(cls, config)

    def base_arch(self, info: Any) -> dict[str, Any]:
        return N.complete(
            {
                "input_shape": list(info.input_shape),
                "num_classes": info.num_classes,
                "base": self.base,
                "stem": self.stem,
                "widths": list(self.widths),
                "blocks_per_stage": self.blocks_per_stage,
                "growth": self.growth,
                "dense_layers": list(self.dense_layers),
                "tree": T.leaf(self.base_op),
            }
        )


@dataclass
class _State:
    """What a checkpoint holds."""

    arch: dict[str, Any]
    parent: dict[str, torch.Tensor]
    base: dict[str, Any]
    update: int = 0
    history: list[dict[str, Any]] | None = None
    rl: dict[str, Any] | None = None

    def to_bytes(self) -> bytes:
        """The kit's checkpoint format (:mod:`search_spaces.kit.checkpoint`): weights and the controller's
        state as state, the rest as JSON."""
        return checkpoint.pack(
            CHECKPOINT_FORMAT,
            state={"parent": self.parent, "rl": self.rl or {}},
            meta={"arch": self.arch, "base": self.base, "update": self.update, "history": self.history or []},
        )

    @classmethod
    def from_bytes(cls, data: bytes | None) -> _State | None:
        """The state :meth:`to_bytes` wrote; ``None`` (start afresh) for no checkpoint or another format."""
        if not data:
            return None
        try:
            state, meta = checkpoint.unpack(data, CHECKPOINT_FORMAT)
        except checkpoint.CheckpointError:
            return None
        return cls(meta["arch"], state["parent"], meta["base"], meta["update"], meta["history"], state["rl"] or None)


def run_search(cfg: SearchConfig, inputs: JobInputs, reporter: Reporter, *, splits: Any = None) -> dict[str, Any]:
    """Run the whole search (see the module docstring) and return the job's result summary."""
    from search_spaces.kit import datasets

    check_stop(reporter)
    if splits is None:
        splits = datasets.load(inputs.dataset, path=inputs.dataset_path, seed=inputs.seed, max_train=cfg.max_train)
    if splits.info.modality != "image":
        raise ValueError("pathlevel_nas searches convolutional cells and needs image data")
    data = tensors(splits, cfg.seed)
    state = _State.from_bytes(reporter.load_checkpoint())
    if state is None:
        state = _train_base(cfg, splits, data, reporter)
        reporter.save_checkpoint(state.to_bytes())
    if cfg.max_params is not None and state.base["params"] > cfg.max_params:
        raise ValueError(
            f"max_params {cfg.max_params:,} is below the base network's own {state.base['params']:,} "
            "parameters: no grown cell can fit; raise max_params or choose a smaller base"
        )
    search = _Search(cfg, state, data, reporter)
    search.threads = inputs.threads
    search.run()
    reporter.progress(SEARCH_SHARE[1], "final training of the best cell")
    return _finish(cfg, state, splits, data, inputs, reporter, search)


def tensors(splits: Any, seed: int) -> dict[str, torch.Tensor]:
    """The training and validation splits as tensors, and the training images a pooling cell mimics its parent on
    (``x_mimic``, a seeded draw: :func:`.evaluate.mimic_images`)."""
    x_train = torch.from_numpy(splits.x_train)
    return {
        "x_train": x_train,
        "y_train": torch.from_numpy(splits.y_train),
        "x_val": torch.from_numpy(splits.x_val),
        "y_val": torch.from_numpy(splits.y_val),
        "x_mimic": E.mimic_images(x_train, seed),
    }


def _train_base(cfg: SearchConfig, splits: Any, data: dict[str, torch.Tensor], reporter: Reporter) -> _State:
    from search_spaces.kit import counting, trainer

    arch = cfg.base_arch(splits.info)
    trainer.set_seed(cfg.seed)
    net = N.build_network(arch)
    started = time.perf_counter()

    def on_epoch(epoch: int, result: Any) -> None:
        reporter.progress(SEARCH_SHARE[0] * (epoch + 1) / cfg.base_epochs, f"base network epoch {epoch + 1}")

    trainer.train(
        net,
        data["x_train"],
        data["y_train"],
        epochs=cfg.base_epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        x_val=data["x_val"],
        y_val=data["y_val"],
        reporter=reporter,
        metric_prefix="base_",
        on_epoch_end=on_epoch,
        **TRAIN_RECIPE,
    )
    size = counting.count(net, tuple(arch["input_shape"]))
    base = {
        "val_acc": trainer.evaluate(net, splits.x_val, splits.y_val),
        "test_acc": trainer.evaluate(net, splits.x_test, splits.y_test),
        "params": size["params"],
        "macs": size["macs"],
        "seconds": time.perf_counter() - started,
    }
    parent = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return _State(arch=arch, parent=parent, base=base, update=0, history=[])


def _network_seed(cfg: SearchConfig, k: int) -> int:
    """Seed of sampled network ``k``: its transformation noise, mimic and fine-tune batch order."""
    return cfg.seed * 1_000_003 + k


def _cell_key(ep: C.Episode) -> str:
    """The canonical string of the cell ``ep`` grew (identifies equal cells)."""
    if ep.tree is None:
        raise ValueError("the episode has not grown a cell")
    return T.canonical(ep.tree)


class _Search:
    """The controller-update loop over sampled networks."""

    def __init__(self, cfg: SearchConfig, state: _State, data: dict[str, torch.Tensor], reporter: Reporter) -> None:
        self.cfg, self.state, self.data, self.reporter = cfg, state, data, reporter
        self.threads = 1  # intra-op threads per evaluated network (run_search sets the worker's)
        torch.manual_seed(cfg.seed)  # the controller's initial weights
        self.rl = C.Reinforce(
            C.Controller(), lr=cfg.controller_lr, entropy=cfg.entropy_weight, baseline_decay=cfg.baseline_decay
        )
        if state.rl:
            self.rl.load_state_dict(state.rl)
        if self.rl.baseline is None:  # the reference starts the baseline at the base network's reward
            self.rl.baseline = C.reward(state.base["val_acc"])
        self.history: list[dict[str, Any]] = list(state.history or [])
        self.done: dict[int, TrialRecord] = {t.number: t for t in reporter.completed_trials()}
        self.cache = {T.canonical(h["tree"]): h for h in self.history if not h.get("cached")}
        self.start = state.arch["tree"]

    @property
    def updates(self) -> int:
        return math.ceil(self.cfg.n_networks / self.cfg.networks_per_update)

    def run(self) -> None:
        for u in range(self.state.update, self.updates):
            check_stop(self.reporter)
            self._one_update(u)

    def _sample(self, rng: torch.Generator) -> C.Episode:
        cfg = self.cfg
        for _ in range(MAX_RESAMPLES):  # the reference resamples until the cell changed
            if cfg.sampler == "random":
                ep = C.run_episode(
                    self.start, C.random_chooser(rng), max_depth=cfg.max_depth, primitives=cfg.primitives
                )
            else:
                ep = self.rl.controller.sample(self.start, rng=rng, max_depth=cfg.max_depth, primitives=cfg.primitives)
            if ep.ops:
                return ep
        return ep

    def _one_update(self, u: int) -> None:
        cfg = self.cfg
        first = u * cfg.networks_per_update
        count = min(cfg.networks_per_update, cfg.n_networks - first)
        rng = torch.Generator().manual_seed(cfg.seed * 7919 + u)
        episodes = [self._sample(rng) for _ in range(count)]
        entries: dict[int, dict[str, Any]] = {}
        to_run: list[int] = []
        for j, ep in enumerate(episodes):
            k = first + j
            record = self.done.get(k)
            if record is not None:  # finished before a resume: take its score, do not train again
                entries[k] = {**record.metrics, "tree": ep.tree}
                self.cache.setdefault(_cell_key(ep), entries[k])
            elif _cell_key(ep) in self.cache or any(_cell_key(ep) == _cell_key(episodes[i]) for i in range(j)):
                continue  # no entry yet: filled from the cache once its twin is scored
            else:
                to_run.append(k)
        tasks = [self._task(k, episodes[k - first]) for k in to_run]

        def on_result(i: int, result: dict[str, Any]) -> None:
            k = to_run[i]
            entry = self._record(k, episodes[k - first], result, cached=False)
            entries[k] = entry
            self.cache[T.canonical(entry["tree"])] = entry

        E.evaluate_many(tasks, workers=cfg.eval_workers, should_stop=self.reporter.should_stop, on_result=on_result)
        for k in range(first, first + count):
            if entries.get(k) is None:
                twin = self.cache[_cell_key(episodes[k - first])]
                entries[k] = self._record(k, episodes[k - first], twin, cached=True)
        rewards = [entries[k]["reward"] for k in range(first, first + count)]
        if cfg.sampler == "rl":
            stats = self.rl.update(self.start, episodes, rewards, max_depth=cfg.max_depth, primitives=cfg.primitives)
        else:
            stats = {"baseline": float("nan")}
        self.reporter.metric("baseline", stats["baseline"], u)
        self.reporter.metric("mean_reward", sum(rewards) / len(rewards), u)
        for k in range(first, first + count):
            self.history.append({**entries[k], "episode": episodes[k - first].to_json(), "number": k})
        self.state.update, self.state.history, self.state.rl = u + 1, self.history, self.rl.state_dict()
        self.reporter.save_checkpoint(self.state.to_bytes())

    def _task(self, k: int, ep: C.Episode) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "arch": self.state.arch,
            "state_dict": self.state.parent,
            "ops": ep.ops,
            "data": self.data,
            "epochs": cfg.finetune_epochs,
            "lr": cfg.finetune_lr,
            "batch_size": cfg.batch_size,
            "seed": _network_seed(cfg, k),
            "max_params": cfg.max_params,
            "threads": self.threads,
            "noise": cfg.transform_noise,
            "mimic_epochs": cfg.mimic_epochs,
            **TRAIN_RECIPE,
        }

    def _record(self, k: int, ep: C.Episode, result: dict[str, Any], *, cached: bool) -> dict[str, Any]:
        """Report trial ``k`` (one sampled network) and its metric points; returns its history entry."""
        acc = float(result["val_acc"])
        entry: dict[str, Any] = {
            "tree": ep.tree,
            "cell": T.describe(ep.tree),
            "val_acc": acc,
            "reward": C.reward(acc),
            "params": int(result["params"]),
            "macs": int(result["macs"]),
            "finetune_s": 0.0 if cached else float(result["seconds"]),
            "over_budget": bool(result.get("over_budget", False)),
            "mimicked": bool(result.get("mimicked", False)),
            "cached": cached,
        }
        now = time.time()
        state = "pruned" if entry["over_budget"] else "complete"
        self.reporter.trial(
            k,
            params={"tree": ep.tree, "cell": entry["cell"]},
            state=state,
            values=[acc],
            metrics=json_safe({key: entry[key] for key in entry if key != "tree"}),
            started=now - entry["finetune_s"],
            finished=now,
        )
        best = max([h["val_acc"] for h in self.history] + [e["val_acc"] for e in self.cache.values()] + [acc])
        self.reporter.metric("reward", entry["reward"], k, trial=k)
        self.reporter.metric("best_val_acc", best, k)
        lo, hi = SEARCH_SHARE
        self.reporter.progress(lo + (hi - lo) * (k + 1) / self.cfg.n_networks, f"network {k + 1}/{self.cfg.n_networks}")
        check_stop(self.reporter)
        return entry


def _finish(
    cfg: SearchConfig,
    state: _State,
    splits: Any,
    data: dict[str, torch.Tensor],
    inputs: JobInputs,
    reporter: Reporter,
    search: _Search,
) -> dict[str, Any]:
    from search_spaces.kit import counting, models, trainer
    from search_spaces.nas.compare import equal_size
    from search_spaces.nas.draw import tree_svg

    scored = [h for h in search.history if not h.get("over_budget")]
    # Every sampled network over max_params: the base cell itself is the best network within the budget.
    best = (
        max(scored, key=lambda h: h["val_acc"])
        if scored
        else {"val_acc": state.base["val_acc"], "episode": {"ops": []}, "number": -1}
    )
    ops = best["episode"]["ops"]
    torch.manual_seed(cfg.seed)
    net, arch = E.build_candidate(
        state.arch,
        state.parent,
        ops,
        data["x_train"][:256],
        noise=cfg.transform_noise,
        seed=_network_seed(cfg, int(best.get("number", -1))),  # the noise and mimic its trial had
        mimic_x=data.get("x_mimic"),
        mimic_epochs=cfg.mimic_epochs,
    )
    final_seed = cfg.seed * 1_000_003 + 999_983
    runs = 2 + 2 * cfg.compare_seeds  # inherited, same net from scratch, then base and scaled found per seed
    share = (1 - SEARCH_SHARE[1]) / runs

    def at(done: float, what: str) -> None:
        if reporter.should_stop():
            raise JobCancelled()
        reporter.progress(SEARCH_SHARE[1] + share * done, what)

    def progress(offset: float) -> Any:
        def on_epoch(epoch: int, result: Any) -> None:
            at(offset + (epoch + 1) / cfg.final_epochs, "final training")

        return on_epoch

    inherited = trainer.train(
        net,
        data["x_train"],
        data["y_train"],
        epochs=cfg.final_epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=final_seed,
        on_epoch_end=progress(0),
        **TRAIN_RECIPE,
    )
    test_inherited = trainer.evaluate(net, splits.x_test, splits.y_test)
    trainer.set_seed(cfg.seed)
    scratch = N.build_network(arch)
    from_scratch = trainer.train(
        scratch,
        data["x_train"],
        data["y_train"],
        epochs=cfg.final_epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=final_seed,
        on_epoch_end=progress(1),
        **TRAIN_RECIPE,
    )
    test_scratch = trainer.evaluate(scratch, splits.x_test, splits.y_test)
    size = counting.count(net, tuple(arch["input_shape"]))
    same_size = equal_size(
        state.arch,
        arch,
        data,
        (splits.x_test, splits.y_test),
        seeds=cfg.compare_seeds,
        epochs=cfg.final_epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        recipe=TRAIN_RECIPE,
        on_run=lambda done: at(2 + done, "equal-size comparison"),
    )

    out = Path(inputs.workdir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "best_model.pt"
    models.save_model(net, {"name": "pathlevel", **{k: v for k, v in arch.items()}}, model_path)
    tree_path = out / "best_tree.json"
    tree_path.write_text(json.dumps(arch["tree"], indent=2))
    svg_path = out / "best_tree.svg"
    svg_path.write_text(tree_svg(arch["tree"], T.describe(arch["tree"])))
    controller_path = out / "controller.pt"
    torch.save(search.rl.state_dict(), controller_path)
    history_path = out / "search_history.json"
    history_path.write_text(
        json.dumps(json_safe([{k: v for k, v in h.items() if k != "episode"} for h in search.history]), indent=1)
    )
    reporter.artifact("best_model.pt", model_path, "model")
    reporter.artifact("best_tree.json", tree_path, "config")
    reporter.artifact("best_tree.svg", svg_path, "plot")
    reporter.artifact("controller.pt", controller_path, "checkpoint")
    reporter.artifact("search_history.json", history_path, "data")

    accs = [h["val_acc"] for h in search.history]
    quarter = max(1, len(accs) // 4)
    rewards = [h["reward"] for h in search.history]
    result = {
        "best_tree": arch["tree"],
        "best_cell": T.describe(arch["tree"]),
        "best_val_acc": best["val_acc"],
        "test_acc": test_inherited,
        "test_acc_from_scratch": test_scratch,
        "final_epochs": cfg.final_epochs,
        "final_train_s": inherited.seconds,
        "scratch_train_s": from_scratch.seconds,
        "params": size["params"],
        "macs": size["macs"],
        "base": {"cell": T.describe(state.arch["tree"]), **state.base},
        "networks": len(search.history),
        "sampler": cfg.sampler,
        "mean_reward_first_quarter": sum(rewards[:quarter]) / quarter,
        "mean_reward_last_quarter": sum(rewards[-quarter:]) / quarter,
        "mean_val_acc": sum(accs) / len(accs),
        "mean_val_acc_first_quarter": sum(accs[:quarter]) / quarter,
        "mean_val_acc_last_quarter": sum(accs[-quarter:]) / quarter,
        "equal_size": same_size,
        **models.output_entry("best_model.pt", {"name": "pathlevel", **arch}),
        "within_max_params": len(scored),
    }
    result.update(_shown(result, search.history, out, reporter))
    reporter.progress(1.0, "done")
    return json_safe(result)


def _shown(result: dict[str, Any], history: list[dict[str, Any]], out: Path, reporter: Reporter) -> dict[str, Any]:
    """Headlines (found cell vs base, Cai et al. 2018's comparison), the found-vs-base and best-networks tables,
    and the search's reward figure, reported as an artifact (the tree drawing stays an SVG plot)."""
    import plotly.graph_objects as go

    from search_spaces.kit.results import headline, summary, table, write_figure

    base, same = result["base"], result["equal_size"]
    numbers = [h["number"] for h in history]
    best_so_far = [max(h["val_acc"] for h in history[: i + 1]) for i in range(len(history))]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=numbers,
            y=[h["val_acc"] for h in history],
            mode="markers",
            name="sampled network",
            text=[h["cell"] for h in history],
            hovertemplate="network %{x}<br>val acc %{y:.4f}<br>%{text}<extra></extra>",
            marker={"symbol": ["x" if h.get("over_budget") else "circle" for h in history]},
        )
    )
    fig.add_trace(go.Scatter(x=numbers, y=best_so_far, mode="lines", name="best so far", line={"shape": "hv"}))
    fig.add_hline(y=base["val_acc"], line_dash="dash", annotation_text="base network")
    fig.update_layout(
        title={"text": "Validation accuracy of each sampled network (x: over max_params)"},
        xaxis={"title": {"text": "sampled network"}},
        yaxis={"title": {"text": "validation accuracy (after fine-tuning)"}},
    )
    write_figure(reporter, out, "search_history_figure.json", fig)
    top = sorted(history, key=lambda h: -h["val_acc"])[:10]
    return {
        "summary": summary(
            # the paper's pair: at the same or fewer parameters, both from scratch for the same epochs
            headline(
                f"Found cell vs base at ≤ the base's parameters, both from scratch, test accuracy "
                f"(mean of {len(same['runs'])} seeds)",
                same["found_minus_base_points"],
                "points",
            ),
            headline("Parameters, narrowed found / base", same["params_ratio"], "×", "lower"),
            headline("Found network, test accuracy", 100 * result["test_acc"], "%"),
            headline("Found network trained from scratch, test accuracy", 100 * result["test_acc_from_scratch"], "%"),
            headline("Parameters, found / base", result["params"] / max(base["params"], 1), "×", "lower"),
            headline("Networks sampled", result["networks"], "", None),
        ),
        "tables": [
            table(
                "Found vs base",
                ["network", "cell", "test accuracy", "params", "MACs"],
                [
                    ["base", base["cell"], base["test_acc"], base["params"], base["macs"]],
                    [
                        "found, inherited weights",
                        result["best_cell"],
                        result["test_acc"],
                        result["params"],
                        result["macs"],
                    ],
                    [
                        "found, from scratch",
                        result["best_cell"],
                        result["test_acc_from_scratch"],
                        result["params"],
                        result["macs"],
                    ],
                ],
            ),
            table(
                f"Found vs base at equal size ({same['epochs']} epochs from scratch, found widths × "
                f"{same['width_factor']:.3f})",
                ["seed", "base test accuracy", "found test accuracy", "base val accuracy", "found val accuracy"],
                [
                    [r["seed"], r["base_test_acc"], r["found_test_acc"], r["base_val_acc"], r["found_val_acc"]]
                    for r in same["runs"]
                ],
            ),
            table(
                "Best sampled networks",
                ["network", "cell", "val accuracy", "params", "over max_params"],
                [[h["number"], h["cell"], h["val_acc"], h["params"], bool(h.get("over_budget"))] for h in top],
            ),
        ],
    }
