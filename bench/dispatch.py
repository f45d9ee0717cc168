"""Dispatch latency: submit -> running of a job, beside a raw Celery no-op round trip, same broker.

Starts its own stack on this machine's PostgreSQL and Redis (a scratch database and Redis db 12):
gunicorn, one Celery worker, the maintenance loop. Jobs are submitted one at a time over HTTP with an
idle worker, so the figure is the service's dispatch overhead, not queueing. Goal: ratio <= 10.

    .venv/bin/python -m bench.dispatch [--jobs 30] [--pings 100]

Run it from the checkout's root with ``-m``, as ``make test`` runs pytest: it drives the test suite's stack
(``tests/stack.py``), which is part of the checkout, not of the installed project.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from tests.stack import scratch_pg_stack

REDIS_URL = "redis://127.0.0.1:6379/12"


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--pings", type=int, default=100)
    args = parser.parse_args()

    with scratch_pg_stack(
        Path(tempfile.mkdtemp(prefix="bench-dispatch-")), REDIS_URL, {"CELERY_RESULT_BACKEND": REDIS_URL}
    ) as stack:
        stack.create_user("bench", "bench-pass-1")
        stack.start_web()
        stack.start_worker("worker")
        client = stack.client("bench", "bench-pass-1")

        # Baseline: raw Celery no-op round trips (send, execute, result back) on the same broker.
        import os

        os.environ.update(stack.env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "automl_site.settings")
        from workers.celery_app import app

        ping = app.signature("workers.tasks.ping")
        ping.delay().get(timeout=30)  # warm up connections
        rtts = []
        for _ in range(args.pings):
            t0 = time.time()
            ping.delay().get(timeout=30)
            rtts.append(time.time() - t0)

        # The service: HTTP submit -> the worker's atomic claim sets started_at (status running).
        latencies = []
        for i in range(args.jobs + 2):
            t0 = time.time()
            job = client.submit("mlp_sweep", {"trials": 1, "epochs": 1})
            done = client.wait_status(job["id"], {"succeeded", "failed"}, timeout=60)
            started = dt.datetime.fromisoformat(done["started_at"]).timestamp()
            if i >= 2:  # the first two warm up the worker's imports and connections
                latencies.append(started - t0)

    p50_job, p95_job = percentile(latencies, 50), percentile(latencies, 95)
    p50_rtt, p95_rtt = percentile(rtts, 50), percentile(rtts, 95)
    print(f"celery no-op round trip ({len(rtts)}): p50 {p50_rtt * 1000:.1f} ms  p95 {p95_rtt * 1000:.1f} ms")
    print(f"submit -> running ({len(latencies)} jobs): p50 {p50_job * 1000:.1f} ms  p95 {p95_job * 1000:.1f} ms")
    print(f"ratio (p50): {p50_job / p50_rtt:.2f}   ratio (p95): {p95_job / p95_rtt:.2f}   goal <= 10")


if __name__ == "__main__":
    main()
