"""One worker's side of Deep Gradient Compression (Lin et al., ICLR 2018, §3 and Algorithm 1).

Every step a worker adds its share of the gradient to a local accumulator and sends only the entries
whose magnitude is in the top ``1 − sparsity`` fraction; the rest waits in the accumulator ("gradient
accumulation", §3.1: nothing is lost, only delayed). On top of that sparsification DGC adds:

* **momentum correction** (§3.2): accumulate the velocity, not the gradient —
  ``u_k ← m·u_k + ∇_k``, ``v_k ← v_k + u_k`` and send ``sparse(v_k)``; the update is
  ``w ← w − η·Σ_k sparse(v_k)``, which at density 1 is exactly momentum SGD on the summed gradient;
* **local gradient clipping** (§3.2): clip this node's share of the gradient before accumulating it,
  at the global threshold scaled by ``N^−1/2``;
* **momentum factor masking** (§3.3): after sending, zero ``u_k`` and ``v_k`` at the sent positions,
  so stale momentum does not keep pushing coordinates that were just updated;
* **warm-up** (§3.3): the sparsity rises over the first epochs (75%, 93.75%, 98.4375%, 99.6%, 99.9%).

The top-k threshold of each parameter tensor is estimated from a sample (§5 samples 0.1%–1% of the
gradients; the reference code takes a strided 1%, at least ``2 / density`` entries), then adapted until
the number of selected entries is within 0.8–1.3 of the target (the reference code's bounds, at most 10
tries); a selection far larger than the target is cut to its exact top-k (§5 computes the precise
threshold from the entries already selected), one still too small after the tries is replaced by the
segment's exact top-k. All tensors are handled at once on flat buffers: one threshold
per tensor and one comparison over the whole model, so the cost grows little with the number of layers.

On the wire a worker's piece is its flat int32 indices followed by the values (fp32 or fp16), one byte
buffer (:func:`encode`), so the bytes counted are exactly the bytes sent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

# The warm-up sparsities of §3.3, one per epoch, then the final sparsity.
PAPER_WARMUP: tuple[float, ...] = (0.75, 0.9375, 0.984375, 0.996, 0.999)
VALUE_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16}
INDEX_DTYPE = torch.int32
INDEX_BYTES = 4
DENSE_VALUE_BYTES = 4  # the dense baseline all-reduces fp32 gradients
# ceil() of a product like 2000 × 0.001 must not round 2.0000000000000004 up to 3.
_CEIL_SLACK = 1e-9


@dataclass(frozen=True)
class DGCSettings:
    """The knobs of DGC, each correction switchable for ablations.

    ``warmup`` lists the sparsity of the first epochs (an empty tuple turns warm-up off); an entry above
    ``sparsity`` is capped at it. ``clip_norm`` is the *global* gradient-norm threshold (0 turns clipping
    off); with ``local_clipping`` each node clips its share at ``clip_norm·N^−1/2``. ``sample_ratio``,
    ``adapt_bounds`` and ``adapt_tries`` are the reference code's threshold-sampling settings. With
    ``dense_vectors`` the 1-D tensors (biases, BatchNorm scales and shifts) are sent whole every step and
    never masked, as the reference code does (it compresses only tensors of two or more dimensions).

    Two more switches follow the reference code (``dgc/compression.py``, ``dgc/optim/sgd.py``): with
    ``exact_k`` a tensor never sends more than its k entries (the reference cuts any selection larger
    than k down to k; off, a selection of up to ``adapt_bounds[1]``·k is sent whole, up to 30% more
    bytes); with ``local_weight_decay`` the decay ``λ·w`` is not added to the gradient before compression
    but applied by every worker to its own (identical) weights after the exchange, with its own momentum
    buffer (the reference's ``DGCSGD``), so it is never sent.
    """

    sparsity: float = 0.999
    warmup: tuple[float, ...] = PAPER_WARMUP
    momentum: float = 0.9
    weight_decay: float = 0.0
    momentum_correction: bool = True
    local_clipping: bool = True
    clip_norm: float = 0.0
    factor_masking: bool = True
    value_dtype: str = "fp32"
    sample_ratio: float = 0.01
    adapt_bounds: tuple[float, float] = (0.8, 1.3)
    adapt_tries: int = 10
    dense_vectors: bool = False
    exact_k: bool = False
    local_weight_decay: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1); got {self.sparsity}")
        if any(not 0.0 <= s < 1.0 for s in self.warmup):
            raise ValueError(f"warm-up sparsities must be in [0, 1); got {list(self.warmup)}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")
        if self.value_dtype not in VALUE_DTYPES:
            raise ValueError(f"value_dtype must be one of {', '.join(VALUE_DTYPES)}; got {self.value_dtype!r}")
        low, high = self.adapt_bounds
        if not 0.0 < low <= 1.0 <= high:
            raise ValueError(f"adapt_bounds must satisfy 0 < low ≤ 1 ≤ high; got {self.adapt_bounds}")
        if not 0.0 < self.sample_ratio <= 1.0 or self.adapt_tries < 0 or self.clip_norm < 0 or self.weight_decay < 0:
            raise ValueError("sample_ratio must be in (0, 1]; adapt_tries, clip_norm and weight_decay ≥ 0")

    def sparsity_at(self, epoch: int) -> float:
        """The sparsity of ``epoch`` (see :func:`warmup_sparsity`)."""
        return warmup_sparsity(epoch, self.warmup, self.sparsity)


def warmup_sparsity(epoch: int, schedule: Sequence[float], final: float) -> float:
    """The sparsity of ``epoch`` (0-based) under the warm-up of §3.3.

    Epoch ``e < len(schedule)`` uses ``schedule[e]`` (the paper's 75%, 93.75%, 98.4375%, 99.6%, 99.9%,
    given explicitly: the reference code's fallback formula gives other values), capped at ``final`` so a
    warm-up never sends less than the final sparsity would; later epochs use ``final``.
    """
    if 0 <= epoch < len(schedule):
        return min(float(schedule[epoch]), final)
    return final


def _flat_or_zeros(grad: torch.Tensor | None, numel: int) -> torch.Tensor:
    """A gradient as a flat float vector; a missing one (the parameter was not used) as ``numel`` zeros."""
    return grad.detach().reshape(-1).float() if grad is not None else torch.zeros(numel)


def _ceil(x: float) -> int:
    return math.ceil(x - _CEIL_SLACK)


# --- threshold selection --------------------------------------------------------------------------------

# Cost, in gathered cells, of one more padded sample matrix (a handful of tensor operations): rows of
# very different sample counts go into separate matrices only when that saves more padding than this.
_GROUP_OVERHEAD_CELLS = 4096


@dataclass(frozen=True)
class SampleGroup:
    """Segments whose samples are read into one padded ``[rows, width]`` matrix.

    ``base`` holds each sample's flat position at offset 0 (int32; padding repeats the row's first
    position and is zeroed by ``valid``), ``sample_k`` the rank of the threshold within each row.
    """

    segments: torch.Tensor
    base: torch.Tensor
    valid: torch.Tensor | None
    sample_k: torch.Tensor
    top_k: int
    sampled: bool


@dataclass(frozen=True)
class SelectionPlan:
    """How to pick the top ``density`` fraction of each of S segments (parameter tensors) of a flat vector.

    ``k[s]`` entries are the target of segment ``s``; its threshold is the ``sample_k``-th largest of its
    strided sample, read from a random start in ``[0, strides[s])`` each step (see :class:`SampleGroup`).
    A segment too small to sample (``strides[s] == 1``) is read whole, so its threshold is the exact k-th
    largest value. ``segment_of`` maps each flat position to its segment; ``bounds`` are the accepted
    counts per segment as fractions of ``k`` (:func:`adapt_threshold`).
    """

    density: float
    numels: torch.Tensor
    k: torch.Tensor
    strides: torch.Tensor
    groups: tuple[SampleGroup, ...]
    segment_of: torch.Tensor
    total: int
    bounds: tuple[float, float]
    k_low: torch.Tensor
    k_high: torch.Tensor
    ends: torch.Tensor
    # Plain-int (start, numel, k) per segment for the fallback loop (no tensor indexing per segment).
    spans: tuple[tuple[int, int, int], ...]

    @property
    def dense(self) -> bool:
        return bool((self.k >= self.numels).all())


def make_plan(
    numels: Sequence[int], density: float, *, sample_ratio: float = 0.01, bounds: tuple[float, float] = (0.8, 1.3)
) -> SelectionPlan:
    """The sampling plan of the reference code for segments of sizes ``numels`` at ``density``.

    Per segment: target ``k = ⌈numel·density⌉`` (at least one entry); a sample of
    ``max(⌈numel·sample_ratio⌉, ⌈2/density⌉)`` entries at a fixed stride, so the sample's own top-k holds
    at least two values; a segment no larger than that is taken whole (its threshold is then exact).
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1]; got {density}")
    starts, ks, strides, counts, sample_ks = [], [], [], [], []
    offset = 0
    for numel in numels:
        wanted = max(_ceil(numel * sample_ratio), _ceil(2.0 / density))
        stride = 1 if numel <= wanted else numel // wanted
        count = numel // stride
        starts.append(offset)
        ks.append(min(numel, max(1, _ceil(numel * density))))
        strides.append(stride)
        counts.append(count)
        # ⌈count·density⌉ as in the reference code. With ~2 expected picks the ceiling errs towards a low
        # threshold (too many candidates), which one cheap cut to k repairs; erring high would cost
        # another pass over the whole gradient per lowering.
        sample_ks.append(min(count, max(1, _ceil(count * density))))
        offset += numel
    if offset >= 2**31:
        raise ValueError("int32 indices address at most 2^31 − 1 gradient entries")
    groups = tuple(_sample_group(members, starts, strides, counts, sample_ks) for members in _group_by_count(counts))
    numel_t = torch.tensor(list(numels), dtype=torch.long)
    start_t, k_t = torch.tensor(starts, dtype=torch.long), torch.tensor(ks, dtype=torch.long)
    return SelectionPlan(
        density=density,
        numels=numel_t,
        k=k_t,
        strides=torch.tensor(strides, dtype=torch.long),
        groups=groups,
        segment_of=torch.repeat_interleave(torch.arange(len(counts), dtype=torch.int32), numel_t),
        total=offset,
        bounds=bounds,
        k_low=k_t * bounds[0],
        k_high=k_t * bounds[1],
        ends=start_t + numel_t - 1,
        spans=tuple(zip(starts, [int(n) for n in numels], ks, strict=True)),
    )


def _group_by_count(counts: list[int]) -> list[list[int]]:
    """Segments ordered by sample count, merged into groups while one padded matrix is cheaper than two."""
    groups = [[s] for s in sorted(range(len(counts)), key=lambda s: counts[s])]

    def cost(group: list[int]) -> int:
        return len(group) * max(counts[s] for s in group) + _GROUP_OVERHEAD_CELLS

    while len(groups) > 1:
        gains = [cost(a) + cost(b) - cost(a + b) for a, b in zip(groups, groups[1:], strict=False)]
        best = max(range(len(gains)), key=gains.__getitem__)
        if gains[best] <= 0:
            break
        groups[best : best + 2] = [groups[best] + groups[best + 1]]
    return groups


def _sample_group(
    members: list[int], starts: list[int], strides: list[int], counts: list[int], sample_ks: list[int]
) -> SampleGroup:
    width = max(counts[s] for s in members)
    base = torch.empty((len(members), width), dtype=torch.int32)
    valid = torch.zeros((len(members), width))
    for row, s in enumerate(members):
        base[row] = starts[s]
        base[row, : counts[s]] += (torch.arange(counts[s]) * strides[s]).to(torch.int32)
        valid[row, : counts[s]] = 1.0
    ks = [sample_ks[s] for s in members]
    return SampleGroup(
        segments=torch.tensor(members, dtype=torch.long),
        base=base,
        valid=None if bool(valid.all()) else valid,
        sample_k=torch.tensor(ks, dtype=torch.long),
        top_k=max(ks),
        sampled=any(strides[s] > 1 for s in members),
    )


def sample_threshold(
    importance: torch.Tensor, plan: SelectionPlan, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-segment top-k thresholds estimated from a strided sample (§5 and the reference code).

    Each segment is read at its stride from a random start; the threshold is the ``sample_k``-th largest
    sampled magnitude, i.e. the value above which a ``density`` fraction of the sample lies.
    """
    offsets = (torch.rand(len(plan.strides), generator=generator) * plan.strides).long()
    offsets = torch.minimum(offsets, plan.strides - 1).to(torch.int32)
    thresholds = torch.empty(len(plan.strides), dtype=importance.dtype)
    for group in plan.groups:
        positions = group.base + offsets.index_select(0, group.segments)[:, None] if group.sampled else group.base
        samples = importance.index_select(0, positions.flatten()).view(group.base.shape)
        if group.valid is not None:
            samples.mul_(group.valid)  # magnitudes are ≥ 0, so zeroed padding never outranks a real sample
        top = torch.topk(samples, group.top_k, dim=1).values
        thresholds.index_copy_(0, group.segments, top.gather(1, (group.sample_k - 1)[:, None]).squeeze(1))
    return thresholds


def select_above(
    importance: torch.Tensor, thresholds: torch.Tensor, plan: SelectionPlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted flat indices whose magnitude reaches their segment's threshold, and where each segment's
    selection ends in them (so segment ``s`` holds ``indices[ends[s-1]:ends[s]]``)."""
    indices = torch.nonzero(importance >= thresholds.index_select(0, plan.segment_of)).flatten()
    return indices, torch.searchsorted(indices, plan.ends, right=True)


def adapt_threshold(
    importance: torch.Tensor, thresholds: torch.Tensor, plan: SelectionPlan, *, tries: int = 10, exact: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refine sampled thresholds until each segment selects between ``bounds[0]·k`` and ``bounds[1]·k``
    (``plan.bounds``; the reference uses 0.8 and 1.3).

    The reference code's rule (``compress_lower_bound``/``compress_upper_bound``,
    ``max_adaptation_iters``, ``resample``): a segment that selects fewer than ``bounds[0]·k`` entries has
    its threshold lowered by the factor ``bounds[0]`` and is counted again, at most ``tries`` times; one
    that selects more than ``bounds[1]·k`` keeps its candidates, from which :func:`exact_top_k` later
    takes the k largest (the candidates hold the true top-k, so that is exact and cheap). A threshold of
    zero would select every exact zero, so thresholds stay above the smallest positive float. With
    ``exact`` every segment selecting more than k is flagged too many (the reference's truncation to k).

    Returns the selected indices and segment ends (:func:`select_above`), the segments selecting too
    many (to be cut to k) and those still selecting too few (to be replaced by an exact top-k).
    """
    thresholds = thresholds.clamp_min(torch.finfo(importance.dtype).tiny)
    for attempt in range(max(tries, 1)):
        indices, ends = select_above(importance, thresholds, plan)
        counts = torch.diff(ends, prepend=ends.new_zeros(1))
        too_few = counts < plan.k_low
        if attempt == tries - 1 or not bool(too_few.any()):
            break
        thresholds = torch.where(too_few, thresholds * plan.bounds[0], thresholds)
    return indices, ends, counts > (plan.k if exact else plan.k_high), too_few


def exact_top_k(
    importance: torch.Tensor,
    indices: torch.Tensor,
    ends: torch.Tensor,
    plan: SelectionPlan,
    *,
    too_many: torch.Tensor,
    too_few: torch.Tensor,
) -> torch.Tensor:
    """Replace the selection of the segments flagged ``too_many`` or ``too_few`` by their exact top-k.

    A segment with too many candidates keeps the k largest of them (the reference code's ``resample``:
    a selection larger than k holds the true top-k, so this is exact and cheap); one with too few takes
    the top-k of the whole segment. ``indices``/``ends`` are :func:`select_above`'s; returns sorted indices.
    """
    cut, refill, bounds = too_many.tolist(), too_few.tolist(), ends.tolist()
    pieces, done = [], 0
    for s, (many, few) in enumerate(zip(cut, refill, strict=True)):
        if not (many or few):
            continue
        first = bounds[s - 1] if s else 0
        start, numel, k = plan.spans[s]
        if many:
            candidates = indices[first : bounds[s]]
            chosen = candidates[torch.topk(importance.index_select(0, candidates), k, sorted=False).indices]
        else:
            chosen = torch.topk(importance[start : start + numel], k, sorted=False).indices + start
        pieces += [indices[done:first], torch.sort(chosen).values]
        done = bounds[s]
    pieces.append(indices[done:])
    return torch.cat(pieces)


def select_top_k(
    importance: torch.Tensor,
    plan: SelectionPlan,
    *,
    generator: torch.Generator | None = None,
    tries: int = 10,
    exact: bool = False,
) -> tuple[torch.Tensor, int]:
    """Flat indices of the entries to send: sampled threshold, adapted, exact top-k where that failed.

    With ``exact`` no segment sends more than its k entries: a larger selection is cut to its k largest
    (the reference code keeps its first k by position; both send k, this keeps the larger values).

    Returns the sorted int64 indices and the number of segments that needed an exact top-k (cut down from
    too many candidates or, after ``tries`` lowered thresholds, still too few).
    """
    if plan.dense:
        return torch.arange(plan.total), 0
    thresholds = sample_threshold(importance, plan, generator)
    indices, ends, too_many, too_few = adapt_threshold(importance, thresholds, plan, tries=tries, exact=exact)
    fallbacks = int(too_many.sum()) + int(too_few.sum())
    if fallbacks:
        indices = exact_top_k(importance, indices, ends, plan, too_many=too_many, too_few=too_few)
    return indices, fallbacks


# --- the DGC corrections ------------------------------------------------------------------------------


def local_gradient_clipping(share: torch.Tensor, clip_norm: float, world_size: int) -> torch.Tensor:
    """Clip this node's share of the gradient in place at ``clip_norm·N^−1/2`` (§3.2).

    Gradient clipping normally rescales the aggregated gradient when its L2 norm exceeds a threshold
    (Pascanu et al. 2013). DGC accumulates locally, so each node clips its share ``G_k = ∇_k / N``
    (Algorithm 1) before adding it to its accumulator, at the node's fraction of the global threshold if
    all N nodes had identical gradient distributions. Returns the norm before clipping.
    """
    norm = torch.linalg.vector_norm(share)
    limit = clip_norm / math.sqrt(world_size)
    share.mul_(torch.clamp(limit / (norm + 1e-6), max=1.0))
    return norm


def momentum_correction(u: torch.Tensor, v: torch.Tensor, gradient: torch.Tensor, momentum: float) -> None:
    """Accumulate velocity instead of gradient (§3.2): ``u ← m·u + ∇``, ``v ← v + u`` (in place)."""
    u.mul_(momentum).add_(gradient)
    v.add_(u)


def gradient_accumulation(v: torch.Tensor, gradient: torch.Tensor) -> None:
    """Plain local accumulation without momentum correction (§3.1): ``v ← v + ∇``."""
    v.add_(gradient)


def momentum_factor_masking(
    u: torch.Tensor | None, v: torch.Tensor, indices: torch.Tensor, *, mask_momentum: bool = True
) -> None:
    """Clear the sent positions (§3.3): ``v`` always (its content has left), ``u`` too when masking.

    ``mask = |v| > thr; v ← v ⊙ ¬mask; u ← u ⊙ ¬mask``: momentum factor masking stops the stale
    momentum of a coordinate that was just updated from carrying on into the next accumulation.
    """
    v[indices] = 0.0
    if mask_momentum and u is not None:
        u[indices] = 0.0


# --- the wire format ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparseGradient:
    """One worker's piece of a step: ``values`` (wire dtype) at flat ``indices`` (int32), and the
    ``dense`` tail (the tensors sent whole, see ``DGCSettings.dense_vectors``) without indices."""

    values: torch.Tensor
    indices: torch.Tensor
    dense: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        dense = 0 if self.dense is None else self.dense.numel() * self.dense.element_size()
        return self.values.numel() * self.values.element_size() + self.indices.numel() * INDEX_BYTES + dense

    @property
    def entries(self) -> int:
        return self.indices.numel() + (0 if self.dense is None else self.dense.numel())


def encode(piece: SparseGradient) -> torch.Tensor:
    """The bytes sent: the int32 indices, the values, the dense tail, as one uint8 tensor of ``piece.nbytes``.

    Indices go first so every part stays aligned for :func:`decode`'s zero-copy views (after an odd
    number of fp16 values, int32 indices would sit at an offset that is not a multiple of 4).
    """
    parts = [piece.indices.to(INDEX_DTYPE).contiguous().view(torch.uint8), piece.values.contiguous().view(torch.uint8)]
    if piece.dense is not None:
        parts.append(piece.dense.contiguous().view(torch.uint8))
    return torch.cat(parts)


def decode(buffer: torch.Tensor, value_dtype: str, dense_numel: int = 0) -> SparseGradient:
    """Read back :func:`encode`'s bytes; the entry count follows from the length."""
    dtype = VALUE_DTYPES[value_dtype]
    value_bytes = torch.empty((), dtype=dtype).element_size()
    sparse_bytes = buffer.numel() - dense_numel * value_bytes
    count = sparse_bytes // (value_bytes + INDEX_BYTES)
    if sparse_bytes < 0 or count * (value_bytes + INDEX_BYTES) != sparse_bytes:
        raise ValueError(
            f"a piece of {buffer.numel()} bytes is not a whole number of {value_dtype} entries "
            f"plus {dense_numel} dense values"
        )
    split = count * INDEX_BYTES
    dense = buffer[sparse_bytes:].view(dtype) if dense_numel else None
    return SparseGradient(buffer[split:sparse_bytes].view(dtype), buffer[:split].view(INDEX_DTYPE), dense)


# --- one worker's compressor --------------------------------------------------------------------------


@dataclass
class StepStats:
    """What one worker sent so far: entries, bytes, steps, selection seconds and exact-top-k fallbacks."""

    entries: int = 0
    nbytes: int = 0
    steps: int = 0
    select_seconds: float = 0.0
    fallbacks: int = 0


class DGCCompressor:
    """One worker's DGC state — momentum ``u`` and accumulator ``v`` of every parameter — and its step.

    The parameters are handled as one flat vector: the sparsified tensors in the order given, then those
    sent dense (``settings.dense_vectors``), whose flat part is ``[sparse_total, total)``. A step takes
    this worker's gradients and returns the :class:`SparseGradient` to send. After the exchange,
    :meth:`aggregate` sums every worker's piece, :meth:`direction` turns the sum into the update direction
    and :meth:`apply_update` does ``w ← w − η·direction``. ``world_size`` is N, the number of workers:
    each worker contributes its share ``∇_k / N`` (Algorithm 1), so the pieces sum to the averaged gradient.
    """

    def __init__(
        self, shapes: Sequence[torch.Size | Sequence[int]], settings: DGCSettings, *, world_size: int = 1, seed: int = 0
    ) -> None:
        self.settings = settings
        self.world_size = int(world_size)
        dense = [settings.dense_vectors and len(shape) <= 1 for shape in shapes]
        # Flat layout: sparsified tensors first, then the dense tail; ``order[j]`` is the j-th tensor laid out.
        self.order = [i for i, d in enumerate(dense) if not d] + [i for i, d in enumerate(dense) if d]
        all_numels = [math.prod(shape) for shape in shapes]
        self.numels = [all_numels[i] for i in self.order]
        self.total = sum(self.numels)
        self.sparse_numels = [all_numels[i] for i, d in enumerate(dense) if not d]
        self.sparse_total = sum(self.sparse_numels)
        self.dense_total = self.total - self.sparse_total
        if self.total >= 2**31:
            raise ValueError("int32 indices address at most 2^31 − 1 gradient entries")
        self.u = torch.zeros(self.total) if settings.momentum_correction else None
        self.v = torch.zeros(self.total)
        # Without momentum correction, momentum is applied after the exchange to the summed sparse
        # gradient (the "vanilla momentum" of §3.2), identically on every worker.
        self.global_momentum = None if settings.momentum_correction else torch.zeros(self.total)
        # Local weight decay keeps its own momentum, as torch.optim.SGD would for the decay term alone.
        self.decay_momentum = torch.zeros(self.total) if settings.local_weight_decay and settings.weight_decay else None
        self.generator = torch.Generator().manual_seed(int(seed))
        self.stats = StepStats()
        self.epoch = 0
        self.plan = self._plan(settings.sparsity_at(0))

    # -- schedule
    def set_epoch(self, epoch: int) -> float:
        """Use the (warm-up) sparsity of ``epoch``; returns it."""
        self.epoch = epoch
        sparsity = self.settings.sparsity_at(epoch)
        if abs((1.0 - sparsity) - self.plan.density) > 1e-15:
            self.plan = self._plan(sparsity)
        return sparsity

    def max_piece_bytes(self) -> int:
        """The most bytes :meth:`compress` can return at the current sparsity, so that a fixed-size exchange
        can carry any piece: per tensor at most ``adapt_bounds[1]``·k entries (k with ``exact_k``; a larger
        selection is cut to k, a smaller one than ``adapt_bounds[0]``·k refilled to k), plus the dense tail."""
        plan = self.plan
        most = plan.k if self.settings.exact_k else torch.maximum(plan.k, torch.floor(plan.k_high).long())
        value_bytes = torch.empty((), dtype=VALUE_DTYPES[self.settings.value_dtype]).element_size()
        entries = int(torch.minimum(most, plan.numels).sum())
        return entries * (value_bytes + INDEX_BYTES) + self.dense_total * value_bytes

    def _plan(self, sparsity: float) -> SelectionPlan:
        return make_plan(
            self.sparse_numels,
            1.0 - sparsity,
            sample_ratio=self.settings.sample_ratio,
            bounds=self.settings.adapt_bounds,
        )

    # -- one step
    def compress(
        self, grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor] | None = None
    ) -> SparseGradient:
        """Accumulate this worker's gradients and pick what to send (Algorithm 1).

        ``∇_k ← ∇_k + λ·w`` (weight decay, if set and not ``local_weight_decay``), share ``G = ∇_k / N``,
        local clipping, momentum correction (or plain accumulation), top-k selection of ``|v|``, then the sent
        positions are cleared (and masked in ``u``). A missing gradient (``None``: the parameter was not used) is zero.
        """
        s = self.settings
        share = torch.cat([_flat_or_zeros(grads[i], n) for i, n in zip(self.order, self.numels, strict=True)])
        if s.weight_decay and params is not None and not s.local_weight_decay:
            share.add_(torch.cat([params[i].detach().reshape(-1).float() for i in self.order]), alpha=s.weight_decay)
        if self.world_size != 1:
            share.div_(self.world_size)
        if s.local_clipping and s.clip_norm > 0:
            local_gradient_clipping(share, s.clip_norm, self.world_size)
        if self.u is not None:
            momentum_correction(self.u, self.v, share, s.momentum)
        else:
            gradient_accumulation(self.v, share)
        started = time.perf_counter()
        indices, fallbacks = select_top_k(
            self.v[: self.sparse_total].abs(), self.plan, generator=self.generator, tries=s.adapt_tries, exact=s.exact_k
        )
        self.stats.select_seconds += time.perf_counter() - started
        wire = VALUE_DTYPES[s.value_dtype]
        values = self.v[indices].to(wire)
        dense = self.v[self.sparse_total :].to(wire, copy=True) if self.dense_total else None
        momentum_factor_masking(self.u, self.v, indices, mask_momentum=s.factor_masking)
        self.v[self.sparse_total :] = 0.0  # the dense tail left whole; its momentum is never masked
        piece = SparseGradient(values, indices.to(INDEX_DTYPE), dense)
        self.stats.entries += piece.entries
        self.stats.nbytes += piece.nbytes
        self.stats.steps += 1
        self.stats.fallbacks += fallbacks
        return piece

    def aggregate(self, pieces: Sequence[SparseGradient]) -> torch.Tensor:
        """``Σ_k sparse(v_k)`` as a dense flat vector (sums are taken in rank order on every worker)."""
        total = torch.zeros(self.total)
        for piece in pieces:
            total.index_add_(0, piece.indices.long(), piece.values.float())
            if piece.dense is not None:
                total[self.sparse_total :] += piece.dense.float()
        return total

    def direction(self, aggregated: torch.Tensor, params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """The update direction: the aggregate itself under momentum correction, else ``U ← m·U + Σ``.

        With ``local_weight_decay`` (and ``params``) the reference's ``DGCSGD`` step is added: ``b ← m·b + λ·w``,
        direction ``+ b``, computed by every worker from its own weights, which all workers hold identical.
        """
        out = (
            aggregated
            if self.global_momentum is None
            else self.global_momentum.mul_(self.settings.momentum).add_(aggregated)
        )
        if self.decay_momentum is not None and params is not None:
            weights = torch.cat([params[i].detach().reshape(-1).float() for i in self.order])
            self.decay_momentum.mul_(self.settings.momentum).add_(weights, alpha=self.settings.weight_decay)
            out = out + self.decay_momentum
        return out

    # -- resume
    def state_dict(self) -> dict[str, Any]:
        """``u``, ``v``, the post-exchange momentum (without momentum correction), the local decay's momentum,
        the epoch and the sampling generator: everything a resumed worker needs to continue bit for bit."""
        state: dict[str, Any] = {"v": self.v.clone(), "epoch": self.epoch, "generator": self.generator.get_state()}
        if self.u is not None:
            state["u"] = self.u.clone()
        if self.global_momentum is not None:
            state["global_momentum"] = self.global_momentum.clone()
        if self.decay_momentum is not None:
            state["decay_momentum"] = self.decay_momentum.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (for the same parameter shapes and settings)."""
        if state["v"].numel() != self.total:
            raise ValueError(f"the saved DGC state covers {state['v'].numel()} entries, the model {self.total}")
        self.v.copy_(state["v"])
        if self.u is not None and "u" in state:
            self.u.copy_(state["u"])
        if self.global_momentum is not None and "global_momentum" in state:
            self.global_momentum.copy_(state["global_momentum"])
        if self.decay_momentum is not None and "decay_momentum" in state:
            self.decay_momentum.copy_(state["decay_momentum"])
        self.generator.set_state(state["generator"])
        self.set_epoch(int(state["epoch"]))

    def apply_update(self, params: Sequence[torch.Tensor], direction: torch.Tensor, lr: float) -> None:
        """``w ← w − η·direction`` for the flat ``direction`` in this compressor's layout."""
        with torch.no_grad():
            offset = 0
            for i, n in zip(self.order, self.numels, strict=True):
                params[i].add_(direction[offset : offset + n].view_as(params[i]), alpha=-lr)
                offset += n
