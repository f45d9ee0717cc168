"""The tree-LSTM meta-controller: encoder shapes, episodes and a REINFORCE step on a toy reward."""

from __future__ import annotations

import math

import pytest
import torch

from search_spaces.kit import tree_cells as T
from search_spaces.nas import controller as C

torch.set_num_threads(1)

TREES = {
    1: T.leaf("sep3x3"),
    2: T.apply_all(
        T.leaf("sep3x3"),
        [
            {"type": "set_merge", "path": [], "merge": "add", "branches": 3},
            {"type": "insert_node", "path": [], "branch": 1},
        ],
    ),
    3: T.apply_all(
        T.leaf("conv1x1"),
        [
            {"type": "set_merge", "path": [], "merge": "concat", "branches": 2},
            {"type": "insert_node", "path": [], "branch": 0},
            {"type": "set_merge", "path": [0], "merge": "add", "branches": 2},
            {"type": "insert_node", "path": [0], "branch": 1},
        ],
    ),
}


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_encoder_gives_every_vertex_a_bidirectional_state(depth: int) -> None:
    tree = TREES[depth]
    assert T.depth(tree) == depth
    states = C.TreeEncoder()(tree)
    branches = sum(1 for _ in _vertices(tree, ()))
    assert len(states) == branches + 1 and () in states
    assert all(s.shape == (2 * C.HIDDEN,) and torch.isfinite(s).all() for s in states.values())


def _vertices(node: T.Tree, path: tuple[int, ...]):
    for i, b in enumerate(node["branches"]):
        yield (*path, i)
        if b["child"] is not None:
            yield from _vertices(b["child"], (*path, i))


def test_top_down_pass_reaches_the_leaves() -> None:
    """A leaf's state must depend on its siblings' edges (only the top-down pass carries that)."""
    enc = C.TreeEncoder()
    a = TREES[2]
    b = {**a, "branches": [a["branches"][0], a["branches"][1], {"op": "sep7x7", "child": None}]}
    assert not torch.allclose(enc(a)[(0,)], enc(b)[(0,)])


def test_episodes_respect_depth_and_primitives_and_replay() -> None:
    ctrl = C.Controller()
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):
        ep = ctrl.sample(T.leaf("sep3x3"), rng=rng, max_depth=2, primitives=("identity", "conv1x1"))
        assert T.depth(ep.tree) <= 2
        assert T.apply_all(T.leaf("sep3x3"), ep.ops) == ep.tree
        assert {b["op"] for b in _edges(ep.tree)} <= {"sep3x3", "identity", "conv1x1"}
        log_prob, entropy = ctrl.replay(T.leaf("sep3x3"), ep, max_depth=2, primitives=("identity", "conv1x1"))
        assert log_prob.item() <= 0 and entropy.item() >= 0
        assert C.Episode.from_json(ep.to_json()).decisions == ep.decisions


def _edges(node: T.Tree):
    for b in node["branches"]:
        yield b
        if b["child"] is not None:
            yield from _edges(b["child"])


def test_same_generator_seed_gives_the_same_episode() -> None:
    ctrl = C.Controller()
    eps = [
        ctrl.sample(TREES[1], rng=torch.Generator().manual_seed(5), max_depth=3, primitives=T.PRIMITIVES)
        for _ in range(2)
    ]
    assert eps[0].decisions == eps[1].decisions


def test_reinforce_moves_probability_towards_the_rewarded_action() -> None:
    torch.manual_seed(0)
    ctrl = C.Controller()
    rl = C.Reinforce(ctrl, lr=6e-3, entropy=1e-2)
    start = T.leaf("sep3x3")
    add2 = T.MERGE_CHOICES.index(("add", 2))

    def p_add2() -> float:
        with torch.no_grad():
            return ctrl.distribution("merge", start, (0,), [True] * 4).probs[add2].item()

    before = p_add2()
    rng = torch.Generator().manual_seed(1)
    for _ in range(15):
        eps = [ctrl.sample(start, rng=rng, max_depth=1, primitives=T.PRIMITIVES) for _ in range(6)]
        rewards = [1.0 if ep.decisions[0][2] == add2 else 0.0 for ep in eps]
        rl.update(start, eps, rewards, max_depth=1, primitives=T.PRIMITIVES)
    assert p_add2() > before + 0.2


def _episodes(n: int, seed: int = 1) -> tuple[C.Controller, T.Tree, list[C.Episode]]:
    torch.manual_seed(0)
    ctrl, start = C.Controller(), T.leaf("sep3x3")
    rng = torch.Generator().manual_seed(seed)
    return ctrl, start, [ctrl.sample(start, rng=rng, max_depth=2, primitives=T.PRIMITIVES) for _ in range(n)]


def test_baseline_starts_at_the_base_reward_and_moves_most_of_the_way_to_each_batch_mean() -> None:
    """The reference (ArchManager.update_baseline): b ← b + 0.95·(mean R − b), starting at the base network's reward."""
    ctrl, start, eps = _episodes(4)
    rl = C.Reinforce(ctrl, baseline=2.0)
    stats = rl.update(start, eps, [3.0, 5.0, 4.0, 4.0], max_depth=2, primitives=T.PRIMITIVES)
    assert stats["baseline"] == pytest.approx(2.0 + 0.95 * (4.0 - 2.0))
    assert not stats["skipped"]
    stats = rl.update(start, eps, [1.0, 2.0, 0.0, 1.0], max_depth=2, primitives=T.PRIMITIVES)
    assert stats["baseline"] == pytest.approx(3.9 + 0.95 * (1.0 - 3.9))


def test_an_update_whose_rewards_are_all_equal_is_skipped() -> None:
    ctrl, start, eps = _episodes(3)
    rl = C.Reinforce(ctrl, baseline=1.0)
    before = {k: v.clone() for k, v in ctrl.state_dict().items()}
    stats = rl.update(start, eps, [2.5, 2.5, 2.5], max_depth=2, primitives=T.PRIMITIVES)
    assert stats["skipped"] and stats["baseline"] == pytest.approx(1.0 + 0.95 * 1.5)
    assert all(torch.equal(before[k], v) for k, v in ctrl.state_dict().items())


def test_the_gradient_norm_is_clipped_at_40(monkeypatch: pytest.MonkeyPatch) -> None:
    ctrl, start, eps = _episodes(4)
    rl = C.Reinforce(ctrl, baseline=0.0)
    seen: list[float] = []
    clip = torch.nn.utils.clip_grad_norm_

    def record(params, max_norm, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        params = list(params)
        norm = clip(params, max_norm, *args, **kwargs)
        seen.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", record)
    stats = rl.update(start, eps, [1e4, -1e4, 1e4, -1e4], max_depth=2, primitives=T.PRIMITIVES)
    assert stats["grad_norm"] > 40 and seen[0] == pytest.approx(40.0, rel=1e-4)


def test_reward_is_tan_of_scaled_accuracy() -> None:
    assert C.reward(0.5) == pytest.approx(1.0)
    assert C.reward(0.9) == pytest.approx(math.tan(0.45 * math.pi))
    assert math.isfinite(C.reward(1.0))
