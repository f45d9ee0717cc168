"""One ``adc_prune`` job: the model to prune, the DDPG episodes, checkpoints, fine-tuning and the result.

Order of work: (1) the dense model: a resumed job's checkpoint, the input model, or the kit's reference
model trained here (a reported pretrain stage); (2) calibration statistics for the least-squares refit;
(3) ``episodes`` episodes, each one trial and one checkpoint (agent, replay buffer, RNG, history);
(4) the best policy and the uniform policy at the same budget are built, fine-tuned and measured, and
the result table, models, agent and charts are stored. Rewards use one half of the validation split (a
stratified part held out of the training data); the policy kept at the end is chosen among the best episodes on
the other half, the selection split (:func:`.summary.select_policy`), so the winner of hundreds of noisy episodes is not
also judged on the images it won on; the test split is touched only for the final table.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from search_spaces.adc import graph as g
from search_spaces.adc.ddpg import DDPG, AgentSettings
from search_spaces.adc.env import STATE_DIM, EnvSettings, PruningEnv, describe
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
    the other half, on which the final policy is chosen (:func:`.summary.select_policy`)."""

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
    from search_spaces.adc.summary import summarise  # it imports this module's types
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
    if env.constrained and not env.reachable:
        raise ConfigError({"target_ratio": [unreachable_message(settings, env.floor_ratio)]})
    agent = DDPG(STATE_DIM, env.n_units, settings.agent_settings(), seed=settings.seed)
    if agent_state is not None:
        agent.load_state_dict(agent_state)
    _search(settings, state, env, agent, reporter, graph)
    check_stop(reporter)
    result = summarise(settings, inputs, state, env, agent, data, reporter, graph)
    result["seconds"] = time.time() - started
    reporter.progress(1.0, "done")
    return json_safe(result)


def unreachable_message(settings: AdcConfig, floor: float) -> str:
    """Why a resource-constrained target cannot be held: with every layer at its minimum the model still
    keeps ``floor`` of the resource (in the latency mode the per-layer overheads and the unpruned layers
    do not shrink with the channels)."""
    what = {"flops": "FLOPs", "params": "parameters", "latency": "measured latency"}[settings.mode]
    return (
        f"{settings.target_ratio:g} cannot be met: with every layer at min_keep ({settings.min_keep:g}, channel "
        f"counts rounded to {settings.rounding}) this model keeps {floor:.3f} of its {what}; raise target_ratio "
        f"to at least {floor:.3f}, or lower min_keep or channel_round"
    )


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
