"""One ``adc_prune`` job: the model to prune, the DDPG episodes, checkpoints, fine-tuning and the result.

Order of work: (1) the dense model: a resumed job's checkpoint, the input model, or the kit's reference
model trained here (a reported pretrain stage); (2) calibration statistics for the least-squares refit;
(3) ``episodes`` episodes, each one trial and one checkpoint (agent, replay buffer, RNG, history);
(4) the best policy and the uniform policy at the same budget are built, fine-tuned and measured, and
the result table, models, agent and charts are stored. Rewards use one half of the validation split (a
stratified part held out of the training data); the policy kept at the end is chosen among the best episodes on
the other half, the selection split (:func:`select_policy`), so the winner of hundreds of noisy episodes is not
also judged on the images it won on; the test split is touched only for the final table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search_spaces.adc import graph as g
from search_spaces.adc.ddpg import DDPG, AgentSettings
from search_spaces.adc.env import STATE_DIM, EnvSettings, Outcome, PruningEnv, describe
from search_spaces.base import ConfigError, JobInputs, Reporter, check_stop, json_safe
from search_spaces.kit import checkpoint
from search_spaces.kit.config import typed_config
from search_spaces.kit.models import TrainedModel

CHECKPOINT_FORMAT = "adc_prune/2"
PRETRAIN_SHARE, SEARCH_END = 0.1, 0.85  # of the progress bar
SELECTION_CANDIDATES = 5  # best distinct episodes (by reward) re-scored on the selection split
LATENCY_ROUND = 8  # the reference's channel rounding; the default in latency mode


@dataclass(frozen=True)
class AdcConfig:
    """A validated ``adc_prune`` config (see the kind's schema for each field)."""

    model: str = "vgg"
    mode: str = "flops"
    reward: str = "error"
    target_ratio: float = 0.5
    episodes: int = 200
    warmup_episodes: int = 50
    min_keep: float = 0.2
    channel_round: int | None = None
    calibration_batches: int = 8
    calibration_points: int = 10
    reconstruct: bool = True
    recalibrate_bn: bool = True
    fill_budget: bool = True
    pretrain_epochs: int = 20
    pretrain_lr: float = 0.05
    fine_tune_epochs: int = 10
    fine_tune_lr: float = 0.01
    batch_size: int = 64
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    tau: float = 0.01
    noise_sigma: float = 0.5
    noise_decay: float = 0.95
    seed: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AdcConfig:
        return typed_config(cls, config)

    @property
    def rounding(self) -> int:
        """The channel rounding in force: ``channel_round``, or by default :data:`LATENCY_ROUND` in the latency
        mode (odd channel counts run slower on the CPU) and 1 otherwise."""
        if self.channel_round is not None:
            return self.channel_round
        return LATENCY_ROUND if self.mode == "latency" else 1

    def env_settings(self) -> EnvSettings:
        return EnvSettings(
            target_ratio=self.target_ratio,
            min_keep=self.min_keep,
            channel_round=self.rounding,
            reward=self.reward,
            reconstruct=self.reconstruct,
            recalibrate_bn=self.recalibrate_bn,
            fill_budget=self.fill_budget,
        )

    def agent_settings(self) -> AgentSettings:
        return AgentSettings(
            actor_lr=self.actor_lr,
            critic_lr=self.critic_lr,
            tau=self.tau,
            warmup_episodes=self.warmup_episodes,
            noise_sigma=self.noise_sigma,
            noise_decay=self.noise_decay,
            low=self.min_keep,
            high=1.0,
        )


@dataclass
class Data:
    """The splits as float tensors (CPU), and the calibration batches drawn from the training split.

    ``x_val``/``y_val`` is the half of the validation split the agent's rewards are measured on, ``x_sel``/``y_sel``
    the other half, on which the final policy is chosen (:func:`select_policy`)."""

    splits: Any
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    calibration: list[torch.Tensor]
    x_sel: torch.Tensor
    y_sel: torch.Tensor


def halves(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two stratified halves of labels ``y`` (each class dealt alternately, in a seeded order); the
    first half gets the odd one out of a class with an odd count."""
    rng = np.random.default_rng(seed)
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        first.append(members[0::2])
        second.append(members[1::2])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def load_data(splits: Any, settings: AdcConfig) -> Data:
    def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    x_train = t(splits.x_train, torch.float32)
    order = torch.from_numpy(np.random.default_rng(settings.seed + 17).permutation(len(x_train)))
    take = order[: settings.calibration_batches * settings.batch_size]
    calibration = [x_train[take[i : i + settings.batch_size]] for i in range(0, len(take), settings.batch_size)]
    learn, select = halves(np.asarray(splits.y_val), settings.seed + 29)
    x_val, y_val = t(splits.x_val, torch.float32), t(splits.y_val, torch.long)
    return Data(
        splits,
        x_train,
        t(splits.y_train, torch.long),
        x_val[learn],
        y_val[learn],
        t(splits.x_test, torch.float32),
        t(splits.y_test, torch.long),
        calibration,
        x_val[select],
        y_val[select],
    )


# --- the dense model ----------------------------------------------------------------------------------


def prepare_dense(settings: AdcConfig, inputs: JobInputs, data: Data, reporter: Reporter) -> TrainedModel:
    """The kit's starting model (:func:`~search_spaces.kit.starting.trained_start`): the input model (checked
    against the data), or the kit's reference model trained for ``pretrain_epochs`` (an MLP on tabular data)."""
    from search_spaces.kit.starting import Pretrain, trained_start

    return trained_start(
        inputs,
        data.splits.info,
        (data.x_train, data.y_train, data.x_val, data.y_val),
        family=settings.model,
        pretrain=Pretrain(
            settings.pretrain_epochs, settings.pretrain_lr, settings.batch_size, settings.seed, PRETRAIN_SHARE
        ),
        reporter=reporter,
    )


# --- checkpoints --------------------------------------------------------------------------------------


@dataclass
class SearchState:
    """What a checkpoint holds besides the agent."""

    dense: TrainedModel
    episode: int = 0
    history: list[dict[str, Any]] | None = None
    best: dict[str, Any] | None = None
    latency: dict[str, Any] | None = None


def dump_checkpoint(state: SearchState, agent: DDPG | None) -> bytes:
    """The search after ``state.episode`` episodes in the kit's format (:mod:`search_spaces.kit.checkpoint`):
    the dense model, the agent and torch's RNG as state, the episodes and the best policy as JSON."""
    return checkpoint.pack(
        CHECKPOINT_FORMAT,
        state={
            "dense": state.dense.to_dict(),
            "agent": agent.state_dict() if agent else None,
            "torch_rng": torch.get_rng_state(),
        },
        meta={"episode": state.episode, "history": state.history or [], "best": state.best, "latency": state.latency},
    )


def load_checkpoint(blob: bytes) -> tuple[SearchState, dict[str, Any] | None]:
    """What :func:`dump_checkpoint` wrote (torch's RNG restored); :class:`~search_spaces.kit.checkpoint.CheckpointError`
    (a ``ValueError``) for anything else."""
    data, meta = checkpoint.unpack(blob, CHECKPOINT_FORMAT)
    torch.set_rng_state(data["torch_rng"])
    state = SearchState(
        TrainedModel.from_dict(data["dense"]),
        int(meta["episode"]),
        meta["history"],
        meta["best"],
        meta["latency"],
    )
    return state, data["agent"]


# --- the search ---------------------------------------------------------------------------------------


def run_adc(
    settings: AdcConfig,
    inputs: JobInputs,
    reporter: Reporter,
    *,
    splits: Any = None,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Run a whole ``adc_prune`` job (see the module docstring) and return its JSON-safe result; PyTorch uses
    ``torch_threads`` intra-op threads (``None``: the worker's, ``inputs.threads``)."""
    from search_spaces.kit.trainer import torch_threads as threads

    with threads(inputs.threads if torch_threads is None else torch_threads):
        return _run(settings, inputs, reporter, splits)


def _run(settings: AdcConfig, inputs: JobInputs, reporter: Reporter, splits: Any) -> dict[str, Any]:
    from search_spaces.adc.latency import LatencyTable
    from search_spaces.adc.reconstruct import collect_stats
    from search_spaces.kit import datasets

    started = time.time()
    check_stop(reporter)
    if splits is None:
        splits = datasets.load(inputs.dataset, path=inputs.dataset_path, seed=inputs.seed)
    data = load_data(splits, settings)
    blob = reporter.load_checkpoint()
    agent_state = None
    if blob is not None:
        state, agent_state = load_checkpoint(blob)
    else:
        state = SearchState(prepare_dense(settings, inputs, data, reporter), history=[])
        reporter.save_checkpoint(dump_checkpoint(state, None))
    reporter.progress(PRETRAIN_SHARE, f"dense model: validation accuracy {state.dense.val_accuracy:.4f}")
    dense = state.dense.build().eval()
    if state.dense.arch["name"] not in g.FAMILIES:
        raise ConfigError(
            {
                "model": [
                    f"adc_prune prunes {', '.join(g.FAMILIES)} models; this one is a {state.dense.arch['name']} network"
                ]
            }
        )
    graph = g.build_graph(dense, state.dense.arch)
    if not graph.units:
        raise ConfigError({"model": [f"this {graph.family} model has no prunable channels"]})
    check_stop(reporter)
    resource = {"flops": g.FLOPS, "params": g.PARAMS}.get(settings.mode)
    if resource is None:
        if state.latency is None:  # measured once; a resumed job keeps the same model (and so the same wall)
            state.latency = LatencyTable.measure(dense, graph).to_json()
        resource = LatencyTable.from_json(state.latency).resource()
    stats = (
        collect_stats(dense, graph, data.calibration, points=settings.calibration_points, seed=settings.seed)
        if settings.reconstruct
        else None
    )
    env = PruningEnv(
        dense,
        graph,
        resource,
        settings.env_settings(),
        stats=stats,
        bn_batches=data.calibration,
        x_val=data.x_val,
        y_val=data.y_val,
    )
    agent = DDPG(STATE_DIM, env.n_units, settings.agent_settings(), seed=settings.seed)
    if agent_state is not None:
        agent.load_state_dict(agent_state)
    _search(settings, state, env, agent, reporter, graph)
    check_stop(reporter)
    result = _summarise(settings, inputs, state, env, agent, data, reporter, graph)
    result["seconds"] = time.time() - started
    reporter.progress(1.0, "done")
    return json_safe(result)


def _search(
    settings: AdcConfig, state: SearchState, env: PruningEnv, agent: DDPG, reporter: Reporter, graph: g.Graph
) -> None:
    history = state.history if state.history is not None else []
    state.history = history
    done = {t.number for t in reporter.completed_trials()}
    for row in history:  # checkpointed but not stored (the job died between the two): store it now
        if row["episode"] not in done:
            _report_episode(reporter, row, graph)
    for episode in range(state.episode, settings.episodes):
        check_stop(reporter)
        if episode in done:  # stored by an attempt whose checkpoint was lost: not redone
            continue
        started = time.time()
        observation: np.ndarray | None = env.reset()
        transitions = []
        while observation is not None:
            action = agent.act(observation, episode)
            following, applied = env.step(action)
            transitions.append(
                (observation, applied, following if following is not None else observation, following is None)
            )
            observation = following
        outcome = env.finish()
        agent.remember(transitions, outcome.reward)
        losses = [agent.update() for _ in transitions] if episode >= settings.warmup_episodes else []
        if state.best is None or outcome.reward > state.best["reward"]:
            state.best = {**describe(outcome), "episode": episode}
        row = {
            **describe(outcome),
            "episode": episode,
            "sigma": agent.sigma(episode),
            "warmup": episode < settings.warmup_episodes,
            "best_reward": state.best["reward"],
            "critic_loss": float(np.mean([c for c, _ in losses])) if losses else None,
            "started": started,
            "finished": time.time(),
        }
        history.append(row)
        state.episode = episode + 1
        reporter.save_checkpoint(dump_checkpoint(state, agent))
        _report_episode(reporter, row, graph)
        reporter.progress(
            PRETRAIN_SHARE + (SEARCH_END - PRETRAIN_SHARE) * (episode + 1) / settings.episodes,
            f"episode {episode + 1}/{settings.episodes}: reward {outcome.reward:.4f}, best {state.best['reward']:.4f}",
        )


def _report_episode(reporter: Reporter, row: dict[str, Any], graph: g.Graph) -> None:
    episode = row["episode"]
    layers = [u.name for u in graph.units]
    params = {"keep_ratios": dict(zip(layers, row["keep_ratios"], strict=True)), "channels": row["counts"]}
    metrics = {
        k: row[k]
        for k in (
            "accuracy",
            "reward",
            "flops",
            "params",
            "cost_ratio",
            "sigma",
            "warmup",
            "best_reward",
            "critic_loss",
        )
    }
    reporter.trial(
        episode,
        params=params,
        state="complete",
        values=[row["reward"]],
        metrics=json_safe(metrics),
        started=row["started"],
        finished=row["finished"],
    )
    reporter.metric("reward", row["reward"], episode)
    reporter.metric("best_reward", row["best_reward"], episode)
    reporter.metric("noise_sigma", row["sigma"], episode)
    reporter.metric("accuracy", row["accuracy"], episode)
    reporter.metric("cost_ratio", row["cost_ratio"], episode)


# --- after the search ---------------------------------------------------------------------------------


def _best_counts(state: SearchState, reporter: Reporter) -> list[int]:
    if state.best is not None:
        return list(state.best["counts"])
    records = [r for r in reporter.completed_trials() if r.values]
    if not records:
        raise RuntimeError("no episode finished: nothing to fine-tune")
    return list(max(records, key=lambda r: r.values[0]).params["channels"])  # type: ignore[index]


def select_policy(
    env: PruningEnv, state: SearchState, data: Data, reporter: Reporter
) -> tuple[list[int], dict[str, Any]]:
    """The policy to keep: of the :data:`SELECTION_CANDIDATES` best distinct episodes by reward (measured on the
    agent's half of the validation split), the one whose reward is best on the selection split (the other half).

    The best of hundreds of episodes on the images they were scored on is biased upwards (some of its lead is
    luck on those images); re-scoring a few leaders on images none of them was chosen on keeps the choice honest.
    Returns the counts and ``{"candidates": [...], "chosen_episode"}``."""
    from search_spaces.kit import trainer

    ranked = sorted(state.history or [], key=lambda r: -r["reward"])
    seen: set[tuple[int, ...]] = set()
    leaders: list[dict[str, Any]] = []
    for row in ranked:
        if tuple(row["counts"]) not in seen:
            seen.add(tuple(row["counts"]))
            leaders.append(row)
        if len(leaders) == SELECTION_CANDIDATES:
            break
    if not leaders:  # the history was lost with the checkpoint: the stored trials' best
        return _best_counts(state, reporter), {"candidates": [], "chosen_episode": None}
    scored = []
    for row in leaders:
        check_stop(reporter)
        accuracy = trainer.evaluate(env.build(row["counts"]), data.x_sel, data.y_sel)
        scored.append(
            {
                "episode": row["episode"],
                "reward": row["reward"],
                "accuracy": row["accuracy"],
                "selection_accuracy": accuracy,
                "selection_reward": env.reward(accuracy, row["flops"], row["params"]),
            }
        )
    chosen = max(range(len(scored)), key=lambda i: (scored[i]["selection_reward"], scored[i]["reward"]))
    return list(leaders[chosen]["counts"]), {"candidates": scored, "chosen_episode": scored[chosen]["episode"]}


def _summarise(
    settings: AdcConfig,
    inputs: JobInputs,
    state: SearchState,
    env: PruningEnv,
    agent: DDPG,
    data: Data,
    reporter: Reporter,
    graph: g.Graph,
) -> dict[str, Any]:
    from search_spaces.adc.latency import measure_latency
    from search_spaces.kit import counting, models, trainer

    workdir = Path(inputs.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shape = graph.input_shape
    best, selection = select_policy(env, state, data, reporter)
    # Accuracy-guaranteed search has no target: the uniform baseline gets the AMC policy's own cost.
    same_cost = None if env.constrained else env.graph.total(best, env.resource) * (1 + 1e-9)
    policies = {"amc": best, "uniform": env.uniform_counts(same_cost)}
    rows: dict[str, dict[str, Any]] = {}
    dense = env.model
    counted = counting.count(dense, shape)
    rows["original"] = {
        "keep_ratios": [1.0] * env.n_units,
        "val_accuracy": state.dense.val_accuracy,
        "selection_accuracy": trainer.evaluate(dense, data.x_sel, data.y_sel),
        "test_accuracy": trainer.evaluate(dense, data.x_test, data.y_test),
        "val_accuracy_finetuned": None,
        "test_accuracy_finetuned": None,
        "flops": counted["flops"],
        "params": counted["params"],
        "latency_ms": measure_latency(dense, shape),
    }
    output_model, output_arch = None, None
    steps = len(policies)
    for i, (name, counts) in enumerate(policies.items()):
        check_stop(reporter)
        outcome: Outcome = env.evaluate(counts, keep_model=True)
        model = outcome.model
        assert model is not None
        arch = g.pruned_arch(state.dense.arch, model)
        counted = counting.count(model, shape)
        row = {
            "keep_ratios": outcome.keep_ratios,
            "channels": counts,
            "val_accuracy": outcome.accuracy,
            "selection_accuracy": trainer.evaluate(model, data.x_sel, data.y_sel),
            "test_accuracy": trainer.evaluate(model, data.x_test, data.y_test),
            "flops": counted["flops"],
            "params": counted["params"],
            "flops_ratio": counted["flops"] / rows["original"]["flops"],
            "params_ratio": counted["params"] / rows["original"]["params"],
            "cost_ratio": outcome.cost_ratio,
            "latency_ms": measure_latency(model, shape),
            "arch": arch,
        }
        if name == "amc":
            models.save_model(model, arch, workdir / "amc_pruned.pt")
            reporter.artifact("amc_pruned.pt", workdir / "amc_pruned.pt", "model")
        reporter.progress(SEARCH_END + (1 - SEARCH_END) * (i + 0.5) / steps, f"fine-tune the {name} model")
        if settings.fine_tune_epochs > 0:
            trainer.set_seed(settings.seed + 1 + i)
            trainer.train(
                model,
                data.x_train,
                data.y_train,
                epochs=settings.fine_tune_epochs,
                lr=settings.fine_tune_lr,
                batch_size=settings.batch_size,
                seed=settings.seed + 1 + i,
                x_val=data.x_val,
                y_val=data.y_val,
                reporter=reporter,
                metric_prefix=f"finetune_{name}/",
            )
        model.eval()
        row["val_accuracy_finetuned"] = trainer.evaluate(model, data.x_val, data.y_val)
        row["test_accuracy_finetuned"] = trainer.evaluate(model, data.x_test, data.y_test)
        file = f"{name}_finetuned.pt"
        models.save_model(model, arch, workdir / file)
        reporter.artifact(file, workdir / file, "model")
        if name == "amc":
            output_model, output_arch = file, arch
        rows[name] = row
    agent_file = workdir / "agent.pt"
    torch.save(
        {
            "actor": agent.actor.state_dict(),
            "critic": agent.critic.state_dict(),
            "settings": json.dumps(asdict(agent.settings)),
        },
        agent_file,
    )
    reporter.artifact("agent.pt", agent_file, "model")
    plots = write_figures(state, rows, graph, workdir, reporter)
    target = settings.target_ratio
    amc = rows["amc"]
    result = {
        "dataset": data.splits.info.name,
        "model": state.dense.source,
        "arch": state.dense.arch,
        "mode": settings.mode,
        "reward": settings.reward,
        "target_ratio": target,
        "target_reachable": env.reachable,
        "layers": [
            {
                "name": u.name,
                "producer": u.producer,
                "consumer": u.consumer,
                "followers": list(u.followers),
                "channels": u.channels,
                "producers": list(u.producers or (u.producer,)),
                "consumers": list(u.consumers or (u.consumer,)),
            }
            for u in graph.units
        ],
        "table": [{"model": name, **row} for name, row in rows.items()],
        "best_episode": state.best["episode"] if state.best else None,
        "best_reward": state.best["reward"] if state.best else None,
        "selection": selection,
        "channel_round": settings.rounding,
        "episodes": state.episode,
        "amc_cost_error": amc["cost_ratio"] / target - 1 if settings.reward == "error" else None,
        "amc_vs_uniform_val_accuracy": amc["val_accuracy"] - rows["uniform"]["val_accuracy"],
        "latency_speedup": rows["original"]["latency_ms"] / amc["latency_ms"],
        **models.output_entry(output_model, output_arch),
        "plots": plots,
        "settings": asdict(settings),
        **shown(settings, rows, graph),
    }
    path = workdir / "summary.json"
    path.write_text(json.dumps(json_safe(result), indent=2))
    reporter.artifact("summary.json", path, "data")
    return result


def shown(settings: AdcConfig, rows: dict[str, dict[str, Any]], graph: g.Graph) -> dict[str, Any]:
    """Headlines (AMC vs uniform at the same budget: He et al. 2018, Table 1's comparison), the original /
    uniform / AMC table and the keep ratio per layer."""
    from search_spaces.kit.results import headline, is_number, summary, table

    amc, uniform, original = rows["amc"], rows["uniform"], rows["original"]
    budget = (
        f"{settings.target_ratio:.0%} {settings.mode}" if settings.reward == "error" else f"AMC's own {settings.mode}"
    )

    def gap(key: str) -> float | None:
        a, u = amc.get(key), uniform.get(key)
        return 100 * (a - u) if is_number(a) and is_number(u) else None

    # test accuracy: the agent learnt on the validation half and the policy was chosen on the selection half
    searched, tuned = gap("test_accuracy"), gap("test_accuracy_finetuned")
    columns = [
        "model",
        "val accuracy",
        "selection accuracy",
        "test accuracy",
        "val accuracy fine-tuned",
        "test accuracy fine-tuned",
        "FLOPs",
        "params",
        "FLOPs ratio",
        "params ratio",
        "latency ms",
    ]
    keys = [
        "val_accuracy",
        "selection_accuracy",
        "test_accuracy",
        "val_accuracy_finetuned",
        "test_accuracy_finetuned",
        "flops",
        "params",
    ]
    table_rows = [
        [
            name,
            *(row.get(k) for k in keys),
            row.get("flops_ratio", 1.0),
            row.get("params_ratio", 1.0),
            row["latency_ms"],
        ]
        for name, row in rows.items()
    ]
    layers = [
        [u.name, u.channels, a, b]
        for u, a, b in zip(graph.units, amc["keep_ratios"], uniform["keep_ratios"], strict=True)
    ]
    return {
        "summary": summary(
            headline(f"AMC vs uniform, {budget}, test accuracy before fine-tuning", searched, "points")
            if searched is not None
            else None,
            headline(f"AMC vs uniform, {budget}, test accuracy fine-tuned", tuned, "points")
            if tuned is not None
            else None,
            headline("AMC FLOPs / original", 100 * amc["flops_ratio"], "%", "lower"),
            headline("AMC test accuracy", 100 * amc["test_accuracy"], "%"),
            headline("Latency, original / AMC", original["latency_ms"] / amc["latency_ms"], "×"),
        ),
        "tables": [
            table("Original, uniform and AMC", columns, table_rows),
            table("Keep ratio per layer", ["layer", "channels", "AMC keep", "uniform keep"], layers),
        ],
    }


def write_figures(
    state: SearchState, rows: dict[str, dict[str, Any]], graph: g.Graph, workdir: Path, reporter: Reporter
) -> list[str]:
    """Figure artifacts (plotly JSON): keep ratio per layer (AMC vs uniform) and the episode rewards; their names."""
    import plotly.graph_objects as go

    from search_spaces.kit.results import write_figure

    layers = [u.name for u in graph.units]
    policy = go.Figure()
    for name, colour in (("amc", "#d62728"), ("uniform", "#1f77b4")):
        row = rows[name]
        policy.add_trace(
            go.Bar(
                x=layers,
                y=row["keep_ratios"],
                name=f"{name} (val acc {row['val_accuracy']:.4f})",
                marker_color=colour,
                text=[str(c) for c in row["channels"]],
                hovertemplate="%{x}<br>keep %{y:.3f} (%{text} channels)",
            )
        )
    policy.update_layout(
        title="Keep ratio per layer: AMC policy vs uniform at the same budget",
        barmode="group",
        xaxis_title="layer (output channels cut)",
        yaxis_title="keep ratio",
        yaxis_range=[0, 1.05],
    )
    history = state.history or []
    rewards = go.Figure()
    rewards.add_trace(
        go.Scatter(
            x=[r["episode"] for r in history],
            y=[r["reward"] for r in history],
            mode="markers",
            name="reward",
            marker={"color": ["#999999" if r["warmup"] else "#1f77b4" for r in history]},
        )
    )
    rewards.add_trace(
        go.Scatter(
            x=[r["episode"] for r in history],
            y=[r["best_reward"] for r in history],
            mode="lines",
            name="best reward",
            line={"color": "#d62728"},
        )
    )
    rewards.update_layout(
        title="Episode reward (grey: warm-up, random actions)", xaxis_title="episode", yaxis_title="reward"
    )
    return [
        write_figure(reporter, workdir, name, fig)
        for name, fig in (("keep_ratios.json", policy), ("episode_rewards.json", rewards))
    ]
