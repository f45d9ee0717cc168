"""Down-sampling of a curve for drawing: min/max per bucket (the M4 idea without its time columns), so a series of
100,000 points becomes a few thousand whose envelope looks the same on a chart of that width."""

from __future__ import annotations

from collections.abc import Sequence


def minmax_indices(values: Sequence[float], max_points: int) -> list[int]:
    """Indices (ascending) of at most ``max_points`` of ``values`` (in drawing order): the first and the last point,
    and the lowest and the highest point of each of ``(max_points - 2) // 2`` equal buckets between them, so every
    spike and dip survives. A series that already fits is kept whole."""
    n = len(values)
    if n <= max_points:
        return list(range(n))
    if max_points < 2:
        return [n - 1]
    buckets = (max_points - 2) // 2
    keep = {0, n - 1}
    inner = n - 2
    for b in range(buckets):
        start = 1 + b * inner // buckets
        stop = 1 + (b + 1) * inner // buckets
        if start >= stop:
            continue
        chunk = range(start, stop)
        keep.add(min(chunk, key=values.__getitem__))
        keep.add(max(chunk, key=values.__getitem__))
    return sorted(keep)
