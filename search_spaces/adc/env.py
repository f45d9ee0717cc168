"""The AMC environment: walk the units layer by layer, clamp each action with the action wall, prune,
reconstruct, and score the pruned network (He et al. 2018, §3.1–3.3).

State of unit t (11 numbers, each in [0, 1]): index t, layer type, consumer's input channels, output
channels, stride, kernel size, input feature-map size, FLOPs of the layers the unit sizes, FLOPs already
removed, FLOPs in the later units' layers, and the previous action. The static ones are min-max scaled
over the units (as the reference code does); the FLOPs ones are fractions of the model's total.

Resource-constrained mode (reward ``error``): the action wall lets unit t keep at most as many channels
as still allow the budget to be met with every later unit at its minimum, so the episode always ends at
or under the budget; with ``fill_budget`` the finished policy is then scaled up (all keep counts by one
factor, the shape the agent chose kept) to the largest one still within budget, so it ends *at* the
target rather than below it. Accuracy-guaranteed mode (``error_log_flops``/``error_log_params``) has no
wall: the reward −error·log(FLOPs) or −error·log(#params) trades the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from search_spaces.adc import graph as g
from search_spaces.adc.reconstruct import ConsumerStats, recalibrate_bn, reconstruct

STATE_DIM = 11
REWARDS = ("error", "error_log_flops", "error_log_params")
_TYPE = {g.CONV: 0.0, g.DEPTHWISE: 0.5, g.LINEAR: 1.0}


@dataclass
class EnvSettings:
    """The environment's knobs (see the job kind's schema for each)."""

    target_ratio: float = 0.5
    min_keep: float = 0.2
    channel_round: int = 1
    reward: str = "error"
    reconstruct: bool = True
    recalibrate_bn: bool = True
    fill_budget: bool = True


@dataclass
class Outcome:
    """One evaluated policy."""

    counts: list[int]
    keep_ratios: list[float]
    cost: float
    cost_ratio: float
    flops: int
    params: int
    accuracy: float
    reward: float
    model: nn.Module | None = field(default=None, repr=False)


class PruningEnv:
    """One episode is one pass over the units; :meth:`step` takes the agent's keep ratio for the current
    unit and returns the next state; :meth:`finish` prunes, reconstructs and scores the whole policy."""

    def __init__(
        self,
        model: nn.Module,
        graph: g.Graph,
        resource: g.Resource,
        settings: EnvSettings,
        *,
        stats: Sequence[ConsumerStats] | None,
        bn_batches: Sequence[torch.Tensor],
        x_val: torch.Tensor,
        y_val: torch.Tensor,
    ) -> None:
        if not graph.units:
            raise ValueError(f"this {graph.family} model has no prunable channels")
        if settings.reward not in REWARDS:
            raise ValueError(f"unknown reward {settings.reward!r}")
        self.model, self.graph, self.resource, self.settings = model.eval(), graph, resource, settings
        self.stats, self.bn_batches, self.x_val, self.y_val = stats, list(bn_batches), x_val, y_val
        self.channels = graph.full_counts
        self.lowest = [g.min_count(c, settings.min_keep, settings.channel_round) for c in self.channels]
        self.full_cost = graph.total(self.channels, resource)
        self.budget = settings.target_ratio * self.full_cost
        self.constrained = settings.reward == "error"
        self.full_flops = graph.total(self.channels, g.FLOPS)
        self.static = self._static_features()
        self.counts: list[int] = []

    @property
    def n_units(self) -> int:
        return len(self.channels)

    @property
    def floor_ratio(self) -> float:
        """The share of the original cost left with every unit at its minimum (min_keep, rounded): the
        smallest target the action wall can hold."""
        return self.graph.total(self.lowest, self.resource) / self.full_cost

    @property
    def reachable(self) -> bool:
        """Whether the budget can be met at all with every unit at its minimum."""
        return self.graph.total(self.lowest, self.resource) <= self.budget * (1 + 1e-9)

    # --- the walk ---------------------------------------------------------------------------------

    def reset(self) -> np.ndarray:
        self.counts = []
        return self.state(0, 1.0)

    def state(self, t: int, previous: float) -> np.ndarray:
        """The observation of unit ``t`` (counts decided so far are in ``self.counts``)."""
        now = self.counts + self.channels[len(self.counts) :]
        removed = (self.full_flops - self.graph.total(now, g.FLOPS)) / self.full_flops
        later = {layer.name: layer for u in range(t + 1, self.n_units) for layer in self.graph.unit_layers(u)}
        rest = sum(g.FLOPS.per_layer(layer, *self.graph.dims(layer, now)) for layer in later.values())
        return np.concatenate([self.static[t], [removed, rest / self.full_flops, previous]]).astype(np.float32)

    def step(self, action: float) -> tuple[np.ndarray | None, float]:
        """Apply keep ratio ``action`` to the current unit; returns (next state or ``None`` at the end, the
        keep ratio the wall and the rounding let through)."""
        t = len(self.counts)
        c = self.channels[t]
        n = g.allowed_round(float(action) * c, c, self.lowest[t], self.settings.channel_round)
        if self.constrained:
            n = min(n, self.action_wall(t))
        self.counts.append(n)
        applied = n / c
        if t + 1 == self.n_units:
            return None, applied
        return self.state(t + 1, applied), applied

    def action_wall(self, t: int) -> int:
        """Most channels unit ``t`` may keep so that the budget is still met if every later unit keeps its
        minimum (AMC's action wall). The cost is linear in one unit's count, so two evaluations solve it; where
        a layer both reads and writes the unit (a residual width in a pathlevel network) it is quadratic and
        convex, the secant through the two ends lies above it, and the wall is then raised step by step."""
        c, low = self.channels[t], self.lowest[t]
        base = self.counts[:t] + [low] + self.lowest[t + 1 :]
        top = self.counts[:t] + [c] + self.lowest[t + 1 :]
        cost_low, cost_top = self.graph.total(base, self.resource), self.graph.total(top, self.resource)
        if cost_top <= self.budget:
            return c
        slope = (cost_top - cost_low) / max(c - low, 1)
        limit = low + (self.budget - cost_low) / slope if slope > 0 else c
        n = g.allowed_floor(limit, c, low, self.settings.channel_round)
        while n < c:
            step = min(c, n + self.settings.channel_round)
            if self.graph.total(self.counts[:t] + [step] + self.lowest[t + 1 :], self.resource) > self.budget:
                break
            n = step
        return n

    # --- scoring ----------------------------------------------------------------------------------

    def fill(self, counts: Sequence[int]) -> list[int]:
        """Scale all counts up by one factor (rounded down, capped at full width) as far as the budget allows."""
        counts = list(counts)
        if self.graph.total(counts, self.resource) > self.budget:
            return counts

        def scaled(s: float) -> list[int]:
            return [
                max(n, g.allowed_floor(n * s, c, low, self.settings.channel_round))
                for n, c, low in zip(counts, self.channels, self.lowest, strict=True)
            ]

        lo, hi = 1.0, max(c / n for c, n in zip(self.channels, counts, strict=True))
        if self.graph.total(scaled(hi), self.resource) <= self.budget:
            return scaled(hi)
        for _ in range(40):
            mid = (lo + hi) / 2
            if self.graph.total(scaled(mid), self.resource) <= self.budget:
                lo = mid
            else:
                hi = mid
        return self.top_up(scaled(lo), [n * hi for n in counts])

    def top_up(self, counts: Sequence[int], ideal: Sequence[float], budget: float | None = None) -> list[int]:
        """Add channels one rounding step at a time, always to the unit furthest below its ``ideal`` count,
        while the budget allows: rounding leaves up to one channel's cost per unit unused otherwise."""
        counts, step = list(counts), self.settings.channel_round
        budget = self.budget if budget is None else budget
        while True:
            best, best_gap = None, None
            for u, (n, c) in enumerate(zip(counts, self.channels, strict=True)):
                if n >= c:
                    continue
                trial = counts[:u] + [min(c, n + step)] + counts[u + 1 :]
                if self.graph.total(trial, self.resource) > budget:
                    continue
                gap = n / max(ideal[u], 1e-9)
                if best_gap is None or gap < best_gap:
                    best, best_gap = u, gap
            if best is None:
                return counts
            counts[best] = min(self.channels[best], counts[best] + step)

    def finish(self, *, keep_model: bool = False) -> Outcome:
        """Score the episode's policy (filled up to the budget in resource-constrained mode)."""
        counts = self.counts
        if self.constrained and self.settings.fill_budget:
            counts = self.fill(counts)
        return self.evaluate(counts, keep_model=keep_model)

    def uniform_counts(self, budget: float | None = None) -> list[int]:
        """The same keep ratio for every unit, the largest within ``budget`` (default: the target), topped up
        channel by channel: the baseline AMC must beat at equal cost."""
        budget = self.budget if budget is None else budget

        def counts(r: float) -> list[int]:
            return [
                g.allowed_floor(r * c, c, low, self.settings.channel_round)
                for c, low in zip(self.channels, self.lowest, strict=True)
            ]

        lo, hi = self.settings.min_keep, 1.0
        if self.graph.total(counts(hi), self.resource) <= budget:
            return counts(hi)
        for _ in range(40):
            mid = (lo + hi) / 2
            if self.graph.total(counts(mid), self.resource) <= budget:
                lo = mid
            else:
                hi = mid
        return self.top_up(counts(lo), [hi * c for c in self.channels], budget)

    def build(self, counts: Sequence[int]) -> nn.Module:
        """The physically pruned, reconstructed and BN-recalibrated model for ``counts``."""
        keep = g.select_channels(self.model, self.graph, counts)
        pruned = g.prune_model(self.model, self.graph, keep)
        if self.settings.reconstruct and self.stats is not None:
            reconstruct(pruned, self.model, self.graph, self.stats, keep)
        if self.settings.recalibrate_bn:
            recalibrate_bn(pruned, self.bn_batches)
        return pruned.eval()

    def evaluate(self, counts: Sequence[int], *, keep_model: bool = False) -> Outcome:
        from search_spaces.kit import trainer

        counts = list(counts)
        pruned = self.build(counts)
        accuracy = trainer.evaluate(pruned, self.x_val, self.y_val, device=self.x_val.device)
        flops = int(self.graph.total(counts, g.FLOPS))
        params = int(self.graph.total(counts, g.PARAMS))
        cost = self.graph.total(counts, self.resource)
        return Outcome(
            counts,
            [n / c for n, c in zip(counts, self.channels, strict=True)],
            cost,
            cost / self.full_cost,
            flops,
            params,
            float(accuracy),
            self.reward(float(accuracy), flops, params),
            pruned if keep_model else None,
        )

    def reward(self, accuracy: float, flops: int, params: int) -> float:
        """Resource-constrained: −error; accuracy-guaranteed: −error·log(FLOPs) or −error·log(#params)."""
        error = 1.0 - accuracy
        if self.settings.reward == "error_log_flops":
            return -error * math.log(max(flops, 2))
        if self.settings.reward == "error_log_params":
            return -error * math.log(max(params, 2))
        return -error

    # --- features ---------------------------------------------------------------------------------

    def _static_features(self) -> np.ndarray:
        rows = []
        for unit in self.graph.units:
            consumer = self.graph.layer(unit.consumer)
            kind = g.DEPTHWISE if unit.followers else consumer.kind
            flops = sum(
                g.FLOPS.per_layer(layer, layer.c_in, layer.c_out) for layer in self.graph.unit_layers(unit.index)
            )
            rows.append(
                [
                    unit.index,
                    _TYPE[kind],
                    consumer.c_in,
                    consumer.c_out,
                    consumer.stride,
                    consumer.kernel,
                    consumer.in_hw[0] * consumer.in_hw[1],
                    flops,
                ]
            )
        table = np.asarray(rows, dtype=np.float64)
        lo, hi = table.min(axis=0), table.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        scaled = (table - lo) / span
        scaled[:, 1] = table[:, 1]  # the type code is already in [0, 1]
        return scaled


def describe(outcome: Outcome) -> dict[str, Any]:
    """The JSON-safe summary of one policy."""
    return {
        "counts": outcome.counts,
        "keep_ratios": [round(r, 4) for r in outcome.keep_ratios],
        "cost_ratio": outcome.cost_ratio,
        "flops": outcome.flops,
        "params": outcome.params,
        "accuracy": outcome.accuracy,
        "reward": outcome.reward,
    }
