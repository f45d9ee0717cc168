"""The DDPG agent of AMC (Lillicrap et al. 2016, as set up in He et al. 2018, §3.4 and mit-han-lab/amc).

Reference settings: actor and critic are MLPs with two hidden layers of 300 units; Adam with learning
rates 1e-4 (actor) and 1e-3 (critic); soft target updates τ = 0.01; discount 1; minibatch 64; a replay
buffer of 100 × (number of layers) transitions; warm-up episodes of uniformly random actions; then the
actor's action plus truncated-normal noise σ₀ = 0.5, decayed ×0.95 per episode after the warm-up. Every
transition of an episode carries the episode's final reward, and rewards are centred by a moving average
(α = 0.5) of the batch means before the critic's update.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AgentSettings:
    hidden: int = 300
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    tau: float = 0.01
    discount: float = 1.0
    batch_size: int = 64
    replay_factor: int = 100
    warmup_episodes: int = 100
    noise_sigma: float = 0.5
    noise_decay: float = 0.95
    moving_alpha: float = 0.5
    low: float = 0.2
    high: float = 1.0


class Actor(nn.Module):
    def __init__(self, state_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
            nn.Sigmoid(),
        )

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)


class Critic(nn.Module):
    """Q(s, a): the state and the action enter the first hidden layer through their own weights (as in AMC)."""

    def __init__(self, state_dim: int, hidden: int) -> None:
        super().__init__()
        self.fc_state = nn.Linear(state_dim, hidden)
        self.fc_action = nn.Linear(1, hidden)
        self.net = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc_state(state) + self.fc_action(action))


class ReplayBuffer:
    """A ring buffer of (state, action, reward, next state, terminal) transitions."""

    def __init__(self, capacity: int, state_dim: int) -> None:
        self.capacity = capacity
        self.states = np.zeros((capacity, state_dim), dtype=np.float32)
        self.next_states = np.zeros((capacity, state_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, 1), dtype=np.float32)
        self.rewards = np.zeros((capacity, 1), dtype=np.float32)
        self.terminal = np.zeros((capacity, 1), dtype=np.float32)
        self.size = 0
        self.pointer = 0

    def add(self, state: np.ndarray, action: float, reward: float, next_state: np.ndarray, terminal: bool) -> None:
        i = self.pointer
        self.states[i], self.actions[i, 0], self.rewards[i, 0] = state, action, reward
        self.next_states[i], self.terminal[i, 0] = next_state, float(terminal)
        self.pointer = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, self.size, size=batch)
        return tuple(
            torch.from_numpy(a[idx]) for a in (self.states, self.actions, self.rewards, self.next_states, self.terminal)
        )

    def state_dict(self) -> dict[str, Any]:
        arrays = {
            k: torch.from_numpy(getattr(self, k).copy())
            for k in ("states", "next_states", "actions", "rewards", "terminal")
        }
        return {**arrays, "size": self.size, "pointer": self.pointer}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("states", "next_states", "actions", "rewards", "terminal"):
            getattr(self, key)[...] = state[key].numpy()
        self.size, self.pointer = int(state["size"]), int(state["pointer"])


def truncated_normal(rng: np.random.Generator, mean: float, sigma: float, low: float, high: float) -> float:
    """One draw of N(mean, σ²) truncated to [low, high] (inverse-CDF sampling, as scipy's truncnorm)."""
    from scipy.stats import truncnorm

    if sigma <= 0:
        return float(np.clip(mean, low, high))
    a, b = (low - mean) / sigma, (high - mean) / sigma
    return float(truncnorm.rvs(a, b, loc=mean, scale=sigma, random_state=rng))


class DDPG:
    """The agent: :meth:`act` per layer, :meth:`remember` an episode, :meth:`update` after each step."""

    def __init__(self, state_dim: int, n_layers: int, settings: AgentSettings, seed: int) -> None:
        self.settings = settings
        generator_state = torch.get_rng_state()
        torch.manual_seed(seed)
        self.actor, self.critic = Actor(state_dim, settings.hidden), Critic(state_dim, settings.hidden)
        torch.set_rng_state(generator_state)
        self.actor_target, self.critic_target = Actor(state_dim, settings.hidden), Critic(state_dim, settings.hidden)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=settings.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=settings.critic_lr)
        self.buffer = ReplayBuffer(settings.replay_factor * n_layers, state_dim)
        self.rng = np.random.default_rng(seed)
        self.moving_average: float | None = None
        self.updates = 0

    def sigma(self, episode: int) -> float:
        """Exploration noise of ``episode`` (0-based): σ₀ · decay^(episode − warm-up), 0 during warm-up."""
        s = self.settings
        if episode < s.warmup_episodes:
            return 0.0
        return s.noise_sigma * s.noise_decay ** (episode - s.warmup_episodes)

    def act(self, state: np.ndarray, episode: int, *, explore: bool = True) -> float:
        """Keep ratio for one layer: uniform in [low, high] during warm-up, else μ(s) plus truncated noise."""
        s = self.settings
        if explore and episode < s.warmup_episodes:
            return float(self.rng.uniform(s.low, s.high))
        with torch.no_grad():
            mean = float(self.actor(torch.from_numpy(np.asarray(state, dtype=np.float32))[None])[0, 0])
        if not explore:
            return float(np.clip(mean, s.low, s.high))
        return truncated_normal(self.rng, mean, self.sigma(episode), s.low, s.high)

    def remember(self, transitions: list[tuple[np.ndarray, float, np.ndarray, bool]], reward: float) -> None:
        """Store an episode's transitions, each with the episode's final reward."""
        for state, action, next_state, terminal in transitions:
            self.buffer.add(state, action, reward, next_state, terminal)

    def update(self) -> tuple[float, float]:
        """One critic and one actor step on a sampled minibatch, then the soft target update.
        Returns (critic loss, actor loss)."""
        s = self.settings
        states, actions, rewards, next_states, terminal = self.buffer.sample(s.batch_size, self.rng)
        batch_mean = float(rewards.mean())
        if self.moving_average is None:
            self.moving_average = batch_mean
        else:
            self.moving_average += s.moving_alpha * (batch_mean - self.moving_average)
        rewards = rewards - self.moving_average
        with torch.no_grad():
            next_q = self.critic_target(next_states, self.actor_target(next_states))
            target = rewards + s.discount * (1.0 - terminal) * next_q
        critic_loss = F.mse_loss(self.critic(states, actions), target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        actor_loss = -self.critic(states, self.actor(states)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        for target_net, net in ((self.actor_target, self.actor), (self.critic_target, self.critic)):
            with torch.no_grad():
                for tp, p in zip(target_net.parameters(), net.parameters(), strict=True):
                    tp.mul_(1.0 - s.tau).add_(p, alpha=s.tau)
        self.updates += 1
        return critic_loss.item(), actor_loss.item()

    # --- checkpoints ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to go on exactly: networks, optimisers, replay buffer, baseline, RNG."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "buffer": self.buffer.state_dict(),
            "rng": json.dumps(self.rng.bit_generator.state),
            "moving_average": self.moving_average,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt"):
            getattr(self, key).load_state_dict(state[key])
        self.buffer.load_state_dict(state["buffer"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        ma = state["moving_average"]
        self.moving_average = None if ma is None else float(ma)
        self.updates = int(state["updates"])
