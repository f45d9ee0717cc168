"""Down-sampling of a curve for drawing: min/max per bucket (the M4 idea without its time columns), so a series of
100,000 points becomes a few thousand whose envelope looks the same on a chart of that width."""

from __future__ import annotations

from collections.abc import Sequence


def minmax_indices(values: Sequence[float], max_points: int) -> list[int]:
    """Indices (ascending) of at most ``max_points`` of ``values`` (in drawing order): the first and the last point,
    and the lowest (the first of equals) and the highest (the last of equals) point of each of
    ``(max_points - 2) // 2`` buckets between them, point ``i`` of the ``n - 2`` inner ones in bucket
    ``i * buckets // (n - 2)``, so every spike and dip survives. A series that already fits is kept whole.

    The reference for ``MINMAX_SQL``, which does the same in the database."""
    n = len(values)
    if n <= max_points:
        return list(range(n))
    buckets, inner = max(0, (max_points - 2) // 2), n - 2
    keep = {0, n - 1}
    members: dict[int, list[int]] = {}
    for i in range(inner):
        members.setdefault(i * buckets // inner, []).append(i + 1)
    for chunk in members.values() if buckets else ():
        keep.add(min(chunk, key=values.__getitem__))
        keep.add(max(reversed(chunk), key=values.__getitem__))
    return sorted(keep)


# Per series (a trial's, or the job-level one) of one metric: number the points in step order, put the first and
# the last in a bucket of their own and the rest in ``%(buckets)s`` buckets, and keep each bucket's lowest and
# highest; a series of at most ``%(max_points)s`` is kept whole. Window
# functions and CTEs: PostgreSQL, and SQLite from 3.25.
MINMAX_SQL = """
WITH numbered AS (
    SELECT id, trial_number, step, value,
        ROW_NUMBER() OVER (PARTITION BY trial_number ORDER BY step, id) - 1 AS rn,
        COUNT(*) OVER (PARTITION BY trial_number) AS n
    FROM {table}
    WHERE job_id = %(job)s AND name = %(name)s AND id <= %(last_id)s AND ({trials})
), bucketed AS (
    SELECT id, trial_number, step, value, rn, n,
        CASE WHEN rn = 0 OR rn = n - 1 THEN -1 ELSE (rn - 1) * %(buckets)s / (n - 2) END AS bucket
    FROM numbered
), ranked AS (
    SELECT id, trial_number, step, value, rn, n,
        ROW_NUMBER() OVER (PARTITION BY trial_number, bucket ORDER BY value, rn) AS lowest,
        ROW_NUMBER() OVER (PARTITION BY trial_number, bucket ORDER BY value DESC, rn DESC) AS highest
    FROM bucketed
)
SELECT id, trial_number, step, value, n FROM ranked WHERE n <= %(max_points)s OR lowest = 1 OR highest = 1
ORDER BY CASE WHEN trial_number IS NULL THEN 0 ELSE 1 END, trial_number, rn
"""
