"""DGC's worker-side algorithm without processes: threshold sampling, residuals, masking, warm-up, wire
format, and the density-1 limit that must equal plain momentum SGD (Lin et al. 2018, §3)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.dgc import compressor as C
from search_spaces.dgc.compressor import DGCCompressor, DGCSettings

SHAPES = [(64, 32, 3, 3), (64,), (128, 64), (10,), (5000,)]


def _grads(shapes: list[tuple[int, ...]], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for shape in shapes]


def _settings(**overrides: object) -> DGCSettings:
    base = {"sparsity": 0.99, "warmup": (), "local_clipping": False}
    return DGCSettings(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize("density", [0.001, 0.01, 0.25])
@pytest.mark.parametrize("dist", ["normal", "heavy"])
def test_sampled_threshold_selects_about_k_per_tensor(density: float, dist: str) -> None:
    numels = [200_000, 18_432, 4_608, 640, 64, 10]
    plan = C.make_plan(numels, density)
    g = torch.Generator().manual_seed(1)
    for trial in range(5):
        x = torch.randn(plan.total, generator=g)
        if dist == "heavy":  # gradients are heavy-tailed
            x = x * torch.rand(plan.total, generator=g).pow(-0.7)
        importance = x.abs()
        indices, _ = C.select_top_k(importance, plan, generator=g)
        counts = torch.bincount(plan.segment_of[indices], minlength=len(numels))
        for s, (count, k) in enumerate(zip(counts.tolist(), plan.k.tolist(), strict=True)):
            assert 0.8 * k <= count <= 1.3 * k, (trial, s, count, k)
            # Within a tensor everything sent outranks everything kept.
            start, numel, _ = plan.spans[s]
            chosen = torch.zeros(numel, dtype=torch.bool)
            chosen[indices[(indices >= start) & (indices < start + numel)] - start] = True
            part = importance[start : start + numel]
            if 0 < count < numel:
                assert part[chosen].min() >= part[~chosen].max()


def test_sample_alone_lands_near_k_on_a_large_tensor() -> None:
    """The strided 1% sample's threshold, before any adaptation, already selects about k entries."""
    plan = C.make_plan([1_000_000], 0.001)
    assert int(plan.strides[0]) > 1 and plan.k.item() == 1000
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1_000_000, generator=g).abs()
    counts = [int((x >= C.sample_threshold(x, plan, g)[0]).sum()) for _ in range(20)]
    assert 700 <= sorted(counts)[len(counts) // 2] <= 1400


def test_ties_at_zero_fall_back_to_an_exact_top_k() -> None:
    plan = C.make_plan([5000, 300], 0.01)
    importance = torch.zeros(plan.total)
    importance[:3] = 1.0  # fewer non-zeros than k = 50: the threshold can never select k
    indices, fallbacks = C.select_top_k(importance, plan)
    counts = torch.bincount(plan.segment_of[indices], minlength=2)
    assert counts.tolist() == plan.k.tolist() and fallbacks == 2
    assert {0, 1, 2} <= set(indices.tolist())


@pytest.mark.parametrize("momentum_correction", [True, False])
@pytest.mark.parametrize("factor_masking", [True, False])
def test_residuals_conserve_the_gradient_mass(momentum_correction: bool, factor_masking: bool) -> None:
    """Sent + still accumulated == everything accumulated: nothing is lost, only delayed (§3.1)."""
    comp = DGCCompressor(
        SHAPES,
        _settings(momentum_correction=momentum_correction, factor_masking=factor_masking, sparsity=0.999),
        world_size=1,
    )
    sent = torch.zeros(comp.total)
    added = torch.zeros(comp.total)
    for step in range(12):
        grads = _grads(SHAPES, step)
        flat = torch.cat([g.reshape(-1) for g in grads])
        # What this step adds to v: u_t = m·u_{t−1} + ∇ under momentum correction, else ∇ itself.
        added += comp.settings.momentum * comp.u + flat if comp.u is not None else flat
        piece = comp.compress(grads)
        assert piece.values.numel() < comp.total * 0.0015
        sent.index_add_(0, piece.indices.long(), piece.values)
    torch.testing.assert_close(sent + comp.v, added, rtol=1e-5, atol=1e-5)
    assert sent.count_nonzero() > 0 and comp.v.count_nonzero() > 0


def test_factor_masking_zeroes_exactly_the_sent_positions() -> None:
    masked = DGCCompressor(SHAPES, _settings(factor_masking=True), world_size=1)
    for step in range(3):
        masked.compress(_grads(SHAPES, step))
    plain = DGCCompressor(SHAPES, _settings(factor_masking=False), world_size=1)
    plain.load_state_dict(copy.deepcopy(masked.state_dict()))
    grads = _grads(SHAPES, 99)
    a, b = masked.compress(grads), plain.compress(grads)
    assert torch.equal(a.indices, b.indices)
    sent = a.indices.long()
    kept = torch.ones(masked.total, dtype=torch.bool)
    kept[sent] = False
    assert masked.u is not None and plain.u is not None
    assert torch.all(masked.u[sent] == 0) and torch.all(plain.u[sent] != 0)
    assert torch.equal(masked.u[kept], plain.u[kept])
    assert torch.all(masked.v[sent] == 0) and torch.all(plain.v[sent] == 0)
    assert torch.equal(masked.v, plain.v)


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize(
    ("weight_decay", "dense_vectors", "local_weight_decay"),
    [(0.0, False, False), (1e-3, True, False), (1e-2, False, True), (1e-2, True, True)],
)
def test_density_one_with_momentum_correction_is_momentum_sgd(
    weight_decay: float, dense_vectors: bool, local_weight_decay: bool
) -> None:
    """One worker, sparsity 0, momentum correction on, masking off: the update is u_t = m·u_{t−1} + ∇,
    w ← w − η·u_t, i.e. ``torch.optim.SGD(momentum=m)`` step for step. Weight decay applied locally after
    the exchange with its own momentum (the reference's DGCSGD) is the same step, by linearity."""
    reference, dgc = _tiny_model(), _tiny_model()
    lr, momentum = 0.1, 0.9
    opt = torch.optim.SGD(reference.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    params = list(dgc.parameters())
    comp = DGCCompressor(
        [p.shape for p in params],
        _settings(
            sparsity=0.0,
            momentum=momentum,
            factor_masking=False,
            weight_decay=weight_decay,
            dense_vectors=dense_vectors,
            local_weight_decay=local_weight_decay,
        ),
        world_size=1,
    )
    g = torch.Generator().manual_seed(3)
    for _ in range(6):
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        opt.step()
        dgc.zero_grad()
        F.cross_entropy(dgc(x), y).backward()
        piece = comp.compress([p.grad for p in params], params)
        assert piece.entries == comp.total
        comp.apply_update(params, comp.direction(comp.aggregate([piece]), params), lr)
        for p, q in zip(reference.parameters(), dgc.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_local_weight_decay_is_never_sent() -> None:
    """With zero gradients only the decay moves the weights: sent inside the pieces unless applied locally."""
    params = [torch.full(shape, 0.5) for shape in SHAPES]
    zeros = [torch.zeros(shape) for shape in SHAPES]
    sent = DGCCompressor(SHAPES, _settings(weight_decay=0.1), world_size=1).compress(zeros, params)
    assert float(sent.values.abs().sum()) > 0
    local = DGCCompressor(SHAPES, _settings(weight_decay=0.1, local_weight_decay=True), world_size=1)
    piece = local.compress(zeros, params)
    assert float(piece.values.abs().sum()) == 0.0
    direction = local.direction(local.aggregate([piece]), params)
    torch.testing.assert_close(direction, torch.full((local.total,), 0.05))  # λ·w, every worker alike


@pytest.mark.parametrize("exact_k", [False, True])
def test_exact_k_sends_no_tensor_more_than_k(exact_k: bool) -> None:
    """The reference code truncates every selection to k; the default keeps up to 1.3·k (the adapt bound)."""
    comp = DGCCompressor(SHAPES, _settings(sparsity=0.99, exact_k=exact_k), world_size=1, seed=1)
    k, ends = comp.plan.k, torch.cumsum(comp.plan.numels, 0)
    worst = 0.0
    for step in range(20):
        piece = comp.compress(_grads(SHAPES, step))
        counts = torch.diff(torch.searchsorted(piece.indices.long(), ends), prepend=torch.zeros(1, dtype=torch.long))
        worst = max(worst, float((counts / k).max()))
        assert bool((counts <= (k if exact_k else torch.ceil(k * 1.3))).all())
        assert piece.nbytes <= comp.max_piece_bytes()  # the fixed-size exchange carries any piece
    assert worst <= (1.0 if exact_k else 1.3 + 1e-9)


def test_without_momentum_correction_momentum_follows_the_exchange() -> None:
    """At density 1 the ablation is momentum SGD too: U ← m·U + Σ sparse(v) after the exchange."""
    comp = DGCCompressor([(4,)], _settings(sparsity=0.0, momentum_correction=False), world_size=2)
    grads = [[torch.tensor([1.0, 2.0, 3.0, 4.0])], [torch.tensor([3.0, 2.0, 1.0, 0.0])]]
    other = copy.deepcopy(comp)
    direction = comp.direction(comp.aggregate([comp.compress(grads[0]), other.compress(grads[1])]))
    torch.testing.assert_close(direction, torch.tensor([2.0, 2.0, 2.0, 2.0]))  # the average gradient
    direction = comp.direction(comp.aggregate([comp.compress(grads[0]), other.compress(grads[1])]))
    torch.testing.assert_close(direction, torch.tensor([3.8, 3.8, 3.8, 3.8]))  # 0.9·2 + 2


def test_local_clipping_scales_the_threshold_by_inverse_sqrt_n() -> None:
    share = torch.full((100,), 1.0)  # norm 10
    norm = C.local_gradient_clipping(share, clip_norm=8.0, world_size=4)
    assert float(norm) == pytest.approx(10.0)
    assert float(share.norm()) == pytest.approx(8.0 / 2, rel=1e-5)
    small = torch.full((100,), 0.01)
    C.local_gradient_clipping(small, clip_norm=8.0, world_size=4)
    assert torch.equal(small, torch.full((100,), 0.01))


def test_warmup_schedule_is_the_explicit_list_then_the_final_sparsity() -> None:
    settings = DGCSettings()
    assert [settings.sparsity_at(e) for e in range(7)] == [0.75, 0.9375, 0.984375, 0.996, 0.999, 0.999, 0.999]
    assert [DGCSettings(sparsity=0.9).sparsity_at(e) for e in range(3)] == [0.75, 0.9, 0.9]  # capped at the final
    assert DGCSettings(warmup=()).sparsity_at(0) == 0.999
    comp = DGCCompressor(SHAPES, DGCSettings(), world_size=1)
    densities = []
    for epoch in range(6):
        comp.set_epoch(epoch)
        densities.append(comp.compress(_grads(SHAPES, epoch)).indices.numel() / comp.total)
    assert densities == sorted(densities, reverse=True) and densities[0] > 0.2 and densities[-1] < 0.002


@pytest.mark.parametrize("value_dtype", ["fp32", "fp16"])
def test_wire_format_counts_values_and_int32_indices(value_dtype: str) -> None:
    comp = DGCCompressor(SHAPES, _settings(value_dtype=value_dtype, sparsity=0.999), world_size=1)
    piece = comp.compress(_grads(SHAPES, 0))
    count = piece.indices.numel()
    payload = C.encode(piece)
    assert payload.dtype == torch.uint8
    assert payload.numel() == piece.nbytes == count * ((4 if value_dtype == "fp32" else 2) + 4)
    back = C.decode(payload, value_dtype)
    assert torch.equal(back.indices, piece.indices) and torch.equal(back.values, piece.values)
    odd = C.SparseGradient(torch.ones(3, dtype=torch.float16), torch.tensor([5, 7, 9], dtype=torch.int32))
    assert torch.equal(C.decode(C.encode(odd), "fp16").indices, odd.indices)
    assert comp.stats.nbytes == piece.nbytes and comp.stats.entries == count


def test_state_dict_resumes_identically() -> None:
    a = DGCCompressor(SHAPES, DGCSettings(), world_size=2, seed=5)
    for step in range(3):
        a.set_epoch(step)
        a.compress(_grads(SHAPES, step))
    b = DGCCompressor(SHAPES, DGCSettings(), world_size=2, seed=123)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for step in range(3, 6):
        pa, pb = a.compress(_grads(SHAPES, step)), b.compress(_grads(SHAPES, step))
        assert torch.equal(pa.indices, pb.indices) and torch.equal(pa.values, pb.values)


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        DGCSettings(sparsity=1.0)
    with pytest.raises(ValueError):
        DGCSettings(value_dtype="int8")
    with pytest.raises(ValueError):
        DGCSettings(adapt_bounds=(1.2, 1.3))


def test_dense_vectors_send_one_dimensional_tensors_whole_and_keep_their_momentum() -> None:
    """The reference code's choice: only tensors of two or more dimensions are sparsified."""
    comp = DGCCompressor(SHAPES, _settings(sparsity=0.999, dense_vectors=True), world_size=1)
    assert comp.dense_total == 64 + 10 + 5000 and comp.sparse_total == 64 * 32 * 9 + 128 * 64
    for step in range(3):
        piece = comp.compress(_grads(SHAPES, step))
    assert piece.dense is not None and piece.dense.numel() == comp.dense_total
    assert int(piece.indices.max()) < comp.sparse_total
    assert piece.nbytes <= comp.max_piece_bytes()
    assert torch.all(comp.v[comp.sparse_total :] == 0)  # sent
    assert comp.u is not None and torch.all(comp.u[comp.sparse_total :] != 0)  # never masked
    payload = C.encode(piece)
    assert payload.numel() == piece.nbytes == piece.indices.numel() * 8 + comp.dense_total * 4
    back = C.decode(payload, "fp32", comp.dense_total)
    assert back.dense is not None and torch.equal(back.dense, piece.dense)
    # The sum lands where each tensor lives.
    aggregated = comp.aggregate([piece])
    torch.testing.assert_close(aggregated[comp.sparse_total :], piece.dense)
