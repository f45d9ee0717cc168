"""The tree-structured meta-controller and its REINFORCE trainer (paper §4; reference ``meta_controller``).

**Encoder.** Every branch of the cell is a vertex whose token is its edge's primitive and its child node's type
(embedding size 10 each); a virtual root vertex stands for the cell. A bottom-up tree-LSTM pass (hidden size
100) gives each vertex a state from its own token and the mean of its children's states; a top-down pass then
gives each vertex a state from its bottom-up state and its parent's top-down state. A vertex is described by
both (200 numbers).

**Actors** (MLPs with one hidden layer of 500 units = 2.5 × 200, as in the reference): merge scheme of a leaf
node (none / add 2 / add 3 / concat 2), whether to insert a node on an edge, and which primitive replaces an
identity edge.

**Episode.** As the reference's ``sample_cell``: starting from the start cell's root (a leaf node), depth
first: choose the root's merge scheme; for every branch of a node just set, choose a primitive for an identity
edge and whether to insert a node (while depth allows); an inserted node gets its merge scheme chosen next.

**Training.** REINFORCE with reward tan(acc·π/2) minus a moving-average baseline, an entropy bonus (1e-2, per
decision) and Adam (lr 6e-3), as the reference's ``ArchManager.update_meta_controller``: the baseline starts at
the base network's reward and moves 95% of the way to each update's mean reward before the advantages are taken;
an update whose rewards are all equal is skipped (no signal, only the entropy term would move the policy); the
gradient's norm is clipped at 40. An episode is kept as its decisions, and log-probabilities are recomputed by
replaying them when the controller is updated (the controller has not changed in between).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from search_spaces.kit import tree_cells as T

EMBED, HIDDEN, ACTOR_UNITS = 10, 100, 500
EDGE_TOKENS = ("root", *T.PRIMITIVES)
ACTIONS = ("merge", "insert", "edge")
ACC_CAP = 0.995  # tan(π/2) is infinite: a perfect validation score is capped before the reward
MAX_GRAD_NORM = 40.0  # the reference's clip of the controller's gradient (RLTrainer.update_controller)


def reward(acc: float) -> float:
    """The paper's reward tan(acc·π/2), which stretches the differences near 100% accuracy."""
    return math.tan(min(max(acc, 0.0), ACC_CAP) * math.pi / 2)


@dataclass
class Episode:
    """One sampled cell: its decisions ``(action, vertex, choice)``, the ops applied and the final tree."""

    decisions: list[tuple[str, tuple[int, ...], int]] = field(default_factory=list)
    ops: list[T.Op] = field(default_factory=list)
    tree: T.Tree | None = None

    def to_json(self) -> dict[str, Any]:
        return {"decisions": [[a, list(v), c] for a, v, c in self.decisions], "ops": self.ops, "tree": self.tree}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Episode:
        return cls([(a, tuple(v), int(c)) for a, v, c in data["decisions"]], data["ops"], data["tree"])


# Chooser(action, tree, vertex, mask) -> choice index. The controller samples, a replay forces a choice.
Chooser = Callable[[str, T.Tree, tuple[int, ...], list[bool]], int]


def run_episode(start: T.Tree, choose: Chooser, *, max_depth: int, primitives: tuple[str, ...]) -> Episode:
    """Grow ``start`` (whose root is a leaf node) by the decisions ``choose`` makes; see the module docstring.

    A vertex is named by the branch path to its node plus the branch index, e.g. ``(0, 1)`` = branch 1 of
    the node under branch 0 of the root.
    """
    ep = Episode()
    tree = start
    stack: list[tuple[str, tuple[int, ...]]] = [("merge", ())]
    while stack:
        action, key = stack.pop()
        if action == "merge":
            node = T.get_node(tree, list(key))
            mask = [True] * len(T.MERGE_CHOICES)
            if node["branches"][0]["op"] == "gconv3x3":
                mask[3] = False
            c = _decide(ep, choose, "merge", tree, (*key, 0), mask)
            merge, n = T.MERGE_CHOICES[c]
            if merge != "none":
                tree = _do(ep, tree, {"type": "set_merge", "path": list(key), "merge": merge, "branches": n})
            node = T.get_node(tree, list(key))
            level = len(key) + 1  # the depth of this node; an inserted child would sit one deeper
            for i in reversed(range(len(node["branches"]))):
                if level + 1 <= max_depth:
                    stack.append(("insert", (*key, i)))
            for i in reversed(range(len(node["branches"]))):
                if node["branches"][i]["op"] == "identity":
                    stack.append(("edge", (*key, i)))
        elif action == "insert":
            if _decide(ep, choose, "insert", tree, key, [True, True]) == 1:
                tree = _do(ep, tree, {"type": "insert_node", "path": list(key[:-1]), "branch": key[-1]})
                stack.append(("merge", key))
        else:
            mask = [p in primitives for p in T.PRIMITIVES]
            c = _decide(ep, choose, "edge", tree, key, mask)
            if T.PRIMITIVES[c] != "identity":
                tree = _do(
                    ep,
                    tree,
                    {"type": "replace_identity", "path": list(key[:-1]), "branch": key[-1], "op": T.PRIMITIVES[c]},
                )
    ep.tree = tree
    return ep


def _decide(ep: Episode, choose: Chooser, action: str, tree: T.Tree, key: tuple[int, ...], mask: list[bool]) -> int:
    c = choose(action, tree, key, mask)
    ep.decisions.append((action, key, c))
    return c


def _do(ep: Episode, tree: T.Tree, op: T.Op) -> T.Tree:
    ep.ops.append(op)
    return T.apply(tree, op)


def random_chooser(rng: torch.Generator) -> Chooser:
    """Uniform choices among the allowed ones: random sampling of the same tree space."""

    def choose(action: str, tree: T.Tree, key: tuple[int, ...], mask: list[bool]) -> int:
        allowed = [i for i, ok in enumerate(mask) if ok]
        return allowed[int(torch.randint(len(allowed), (1,), generator=rng))]

    return choose


class TreeEncoder(nn.Module):
    """Bidirectional tree-LSTM: bottom-up then top-down (paper §4.1, Figure 4)."""

    def __init__(self, embed: int = EMBED, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.edge_embed = nn.Embedding(len(EDGE_TOKENS), embed)
        self.node_embed = nn.Embedding(len(T.NODE_TYPES), embed)
        self.up = nn.LSTMCell(2 * embed, hidden)
        self.down = nn.LSTMCell(hidden, hidden)
        self.hidden = hidden
        nn.init.uniform_(self.edge_embed.weight, -0.1, 0.1)
        nn.init.uniform_(self.node_embed.weight, -0.1, 0.1)

    def forward(self, tree: T.Tree) -> dict[tuple[int, ...], torch.Tensor]:
        """Vertex name → its 2·hidden state; ``()`` is the virtual root."""
        up: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        parents: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._up((), "root", tree, up, parents)
        zero = torch.zeros(1, self.hidden)
        down: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        for key in sorted(up, key=len):  # parents before children
            state = down[parents[key]] if key else (zero, zero)
            down[key] = self.down(up[key][0], state)
        return {k: torch.cat([up[k][0], down[k][0]], dim=1)[0] for k in up}

    def _up(self, key: tuple[int, ...], op: str, child: T.Tree | None, up: dict, parents: dict) -> None:
        kids = []
        if child is not None:
            for i, b in enumerate(child["branches"]):
                kid = (*key, i)
                parents[kid] = key
                self._up(kid, b["op"], b["child"], up, parents)
                kids.append(up[kid])
        if kids:
            state = (torch.stack([h for h, _ in kids]).mean(0), torch.stack([c for _, c in kids]).mean(0))
        else:
            state = (torch.zeros(1, self.hidden), torch.zeros(1, self.hidden))
        token = torch.cat(
            [
                self.edge_embed.weight[EDGE_TOKENS.index(op)],
                self.node_embed.weight[T.NODE_TYPES.index(T.node_type(child))],
            ]
        ).unsqueeze(0)
        up[key] = self.up(token, state)


def _actor(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, ACTOR_UNITS), nn.ReLU(), nn.Linear(ACTOR_UNITS, outputs))


class Controller(nn.Module):
    """Encoder + the three actor heads; :meth:`distribution` gives the policy at one decision."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = TreeEncoder()
        width = 2 * HIDDEN
        self.actors = nn.ModuleDict(
            {
                "merge": _actor(width, len(T.MERGE_CHOICES)),
                "insert": _actor(width, 2),
                "edge": _actor(width, len(T.PRIMITIVES)),
            }
        )

    def distribution(
        self, action: str, tree: T.Tree, key: tuple[int, ...], mask: list[bool]
    ) -> torch.distributions.Categorical:
        state = self.encoder(tree)[key]
        logits = self.actors[action](state)
        logits = logits.masked_fill(~torch.tensor(mask), float("-inf"))
        return torch.distributions.Categorical(logits=logits)

    def sample(self, start: T.Tree, *, rng: torch.Generator, max_depth: int, primitives: tuple[str, ...]) -> Episode:
        """One episode with choices drawn from the policy (no gradients kept)."""

        def choose(action: str, tree: T.Tree, key: tuple[int, ...], mask: list[bool]) -> int:
            with torch.no_grad():
                probs = self.distribution(action, tree, key, mask).probs
            return int(torch.multinomial(probs, 1, generator=rng))

        return run_episode(start, choose, max_depth=max_depth, primitives=primitives)

    def replay(
        self, start: T.Tree, episode: Episode, *, max_depth: int, primitives: tuple[str, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of log-probabilities and of entropies of ``episode``'s decisions under the current policy."""
        forced = iter(episode.decisions)
        log_probs: list[torch.Tensor] = []
        entropies: list[torch.Tensor] = []

        def choose(action: str, tree: T.Tree, key: tuple[int, ...], mask: list[bool]) -> int:
            want_action, want_key, choice = next(forced)
            if (want_action, want_key) != (action, key):
                raise RuntimeError("the replayed episode diverged from the recorded one")
            dist = self.distribution(action, tree, key, mask)
            log_probs.append(dist.log_prob(torch.tensor(choice)))
            entropies.append(dist.entropy())
            return choice

        run_episode(start, choose, max_depth=max_depth, primitives=primitives)
        return torch.stack(log_probs).sum(), torch.stack(entropies).sum()


class Reinforce:
    """REINFORCE with a moving-average baseline and an entropy bonus (reference ``ReinforceTrainer`` and
    ``ArchManager``). ``baseline`` is the starting baseline: the base network's reward (``None``: the first update's
    mean reward)."""

    def __init__(
        self,
        controller: Controller,
        *,
        lr: float = 6e-3,
        entropy: float = 1e-2,
        baseline_decay: float = 0.95,
        baseline: float | None = None,
    ) -> None:
        self.controller = controller
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=lr)
        self.entropy, self.decay = entropy, baseline_decay
        self.baseline: float | None = baseline

    def update(
        self,
        start: T.Tree,
        episodes: list[Episode],
        rewards: list[float],
        *,
        max_depth: int,
        primitives: tuple[str, ...],
    ) -> dict[str, float | bool]:
        """One gradient step on ``episodes`` and their ``rewards``; returns the loss, the new baseline, the
        gradient norm before clipping and whether the step was skipped.

        The reference's rule: b ← b + decay·(mean(R) − b), then every advantage is R − b with the new b; the loss
        is the batch mean of −(R − b)·log π(episode) − entropy_weight·H(episode); the gradient's norm is clipped at
        :data:`MAX_GRAD_NORM`. All rewards equal (e.g. every network the same cell): no step at all.
        """
        mean = sum(rewards) / max(len(rewards), 1)
        baseline = mean if self.baseline is None else self.baseline
        self.baseline = baseline + self.decay * (mean - baseline)
        if not rewards or max(rewards) == min(rewards):
            return {"loss": 0.0, "baseline": self.baseline, "grad_norm": 0.0, "skipped": True}
        self.optimizer.zero_grad()
        total = torch.zeros(())
        for ep, r in zip(episodes, rewards, strict=True):
            log_prob, entropy = self.controller.replay(start, ep, max_depth=max_depth, primitives=primitives)
            total = total - (r - self.baseline) * log_prob - self.entropy * entropy
        loss = total / len(episodes)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.controller.parameters(), MAX_GRAD_NORM)
        self.optimizer.step()
        return {"loss": float(loss.detach()), "baseline": self.baseline, "grad_norm": float(norm), "skipped": False}

    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
