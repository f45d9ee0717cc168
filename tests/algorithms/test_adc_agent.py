"""AMC's environment (action wall, budget fill, state) and its DDPG agent, on hand-made layer lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from search_spaces.adc import graph as g
from search_spaces.adc.ddpg import DDPG, AgentSettings
from search_spaces.adc.env import STATE_DIM, EnvSettings, PruningEnv
from search_spaces.adc.latency import LatencyTable

# A latency model as the latency mode measures it (ms per batch: α·MACs + β per layer, plus an overhead).
_TABLE = LatencyTable(
    {"c1": (2e-6, 0.001), "c2": (1e-6, 0.002), "dw": (4e-6, 0.001), "c3": (1.5e-6, 0.001), "fc": (3e-6, 0.0005)}, 0.002
)
LATENCY = LatencyTable.from_json(_TABLE.to_json()).resource()


def _conv(
    name: str, c_in: int, c_out: int, hw: int, in_unit: int | None, out_unit: int | None, kind: str = g.CONV
) -> g.Layer:
    return g.Layer(
        name,
        kind,
        c_in,
        c_out,
        3,
        1,
        c_in if kind == g.DEPTHWISE else 1,
        (hw, hw),
        (hw, hw),
        False,
        f"{name}_bn",
        in_unit,
        out_unit,
    )


def _hand_made() -> g.Graph:
    """conv 3→16 | conv 16→32 | depthwise 32 | conv 32→24 | linear 24→10, four units (one with a follower)."""
    layers = (
        _conv("c1", 3, 16, 16, None, 0),
        _conv("c2", 16, 32, 8, 0, 1),
        _conv("dw", 32, 32, 8, 1, 1, g.DEPTHWISE),
        _conv("c3", 32, 24, 4, 1, 2),
        g.Layer("fc", g.LINEAR, 24, 10, 1, 1, 1, (1, 1), (1, 1), True, None, 2, None),
    )
    units = (g.Unit(0, "c1", (), "c2", 16), g.Unit(1, "c2", ("dw",), "c3", 32), g.Unit(2, "c3", (), "fc", 24))
    return g.Graph("hand", (3, 16, 16), layers, units)


def _env(
    target: float, *, resource: g.Resource = g.FLOPS, round_to: int = 1, fill: bool = True, reward: str = "error"
) -> PruningEnv:
    settings = EnvSettings(
        target_ratio=target,
        min_keep=0.2,
        channel_round=round_to,
        reward=reward,
        reconstruct=False,
        recalibrate_bn=False,
        fill_budget=fill,
    )
    return PruningEnv(
        nn.Identity(),
        _hand_made(),
        resource,
        settings,
        stats=None,
        bn_batches=[],
        x_val=torch.zeros(1),
        y_val=torch.zeros(1),
    )


@pytest.mark.parametrize("resource", [g.FLOPS, g.PARAMS, LATENCY], ids=["flops", "params", "latency"])
@pytest.mark.parametrize("round_to", [1, 4])
@pytest.mark.parametrize("target", [0.2, 0.35, 0.5, 0.8])
def test_action_wall_keeps_the_target_reachable(resource: g.Resource, round_to: int, target: float) -> None:
    env = _env(target, resource=resource, round_to=round_to)
    assert env.reachable
    rng = np.random.default_rng(0)
    for _ in range(50):
        state = env.reset()
        while state is not None:
            assert state.shape == (STATE_DIM,) and np.all((state >= 0) & (state <= 1))
            state, applied = env.step(float(rng.uniform(0.2, 1.0)))
            t = len(env.counts)
            # Whatever was chosen so far, every later unit at its minimum still meets the budget.
            rest = env.counts + env.lowest[t:]
            assert env.graph.total(rest, resource) <= env.budget * (1 + 1e-9)
            assert 0 < applied <= 1
            assert all(n % round_to == 0 or n == c for n, c in zip(env.counts, env.channels, strict=False))
        assert env.graph.total(env.counts, resource) <= env.budget * (1 + 1e-9)


def test_greedy_actions_hit_the_wall_and_fill_ends_at_the_target() -> None:
    env = _env(0.5)
    env.reset()
    for _ in env.channels:
        env.step(1.0)  # the agent asks for everything; the wall must say no somewhere
    assert env.graph.total(env.counts, g.FLOPS) <= env.budget
    assert env.counts != env.channels
    env.reset()
    for _ in env.channels:
        env.step(0.2)  # pruned far below the budget...
    low = list(env.counts)
    filled = env.fill(low)
    total = env.graph.total(filled, g.FLOPS)
    assert total <= env.budget < env.graph.total(low, g.FLOPS) + env.budget  # ...and filled up again
    assert total > env.graph.total(low, g.FLOPS)
    for u, (n, c) in enumerate(zip(filled, env.channels, strict=True)):  # no single channel more fits
        if n < c:
            assert env.graph.total(filled[:u] + [n + 1] + filled[u + 1 :], g.FLOPS) > env.budget
    uniform = env.uniform_counts()
    assert env.graph.total(uniform, g.FLOPS) <= env.budget
    assert abs(env.graph.total(uniform, g.FLOPS) / env.budget - 1) < 0.05


def test_accuracy_guaranteed_mode_has_no_wall_and_log_rewards() -> None:
    env = _env(0.2, reward="error_log_flops")
    env.reset()
    for _ in env.channels:
        env.step(1.0)
    assert env.counts == env.channels
    assert env.reward(0.9, 1000, 10) == pytest.approx(-0.1 * np.log(1000))
    assert _env(0.5).reward(0.9, 1000, 10) == pytest.approx(-0.1)


def test_ddpg_update_runs_learns_and_noise_decays() -> None:
    torch.set_num_threads(1)
    settings = AgentSettings(warmup_episodes=3, batch_size=16, replay_factor=10)
    agent = DDPG(STATE_DIM, 4, settings, seed=0)
    assert agent.buffer.capacity == 40
    rng = np.random.default_rng(1)
    for episode in range(3):
        transitions = []
        for t in range(4):
            s = rng.random(STATE_DIM).astype(np.float32)
            a = agent.act(s, episode)
            assert settings.low <= a <= settings.high
            transitions.append((s, a, rng.random(STATE_DIM).astype(np.float32), t == 3))
        agent.remember(transitions, reward=-float(rng.random()))
    before = [p.detach().clone() for p in agent.actor.parameters()]
    target_before = [p.detach().clone() for p in agent.critic_target.parameters()]
    losses = [agent.update() for _ in range(5)]
    assert all(np.isfinite(c) and np.isfinite(a) for c, a in losses)
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.actor.parameters(), strict=True))
    assert any(not torch.equal(b, p) for b, p in zip(target_before, agent.critic_target.parameters(), strict=True))
    assert agent.moving_average is not None
    sigmas = [agent.sigma(e) for e in range(3, 10)]
    assert sigmas[0] == pytest.approx(0.5) and agent.sigma(2) == 0.0
    assert all(b == pytest.approx(a * 0.95) for a, b in zip(sigmas, sigmas[1:], strict=False))
    s = rng.random(STATE_DIM).astype(np.float32)
    assert settings.low <= agent.act(s, 5) <= settings.high


def test_ddpg_checkpoint_round_trip_continues_identically() -> None:
    import io

    settings = AgentSettings(warmup_episodes=0, batch_size=8, replay_factor=5)
    agent = DDPG(STATE_DIM, 3, settings, seed=2)
    rng = np.random.default_rng(3)
    agent.remember(
        [
            (rng.random(STATE_DIM).astype(np.float32), 0.5, rng.random(STATE_DIM).astype(np.float32), False)
            for _ in range(6)
        ],
        reward=-0.3,
    )
    agent.update()
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    clone = DDPG(STATE_DIM, 3, settings, seed=99)
    clone.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    s = rng.random(STATE_DIM).astype(np.float32)
    assert agent.act(s, 4) == clone.act(s, 4)
    assert agent.update() == clone.update()
