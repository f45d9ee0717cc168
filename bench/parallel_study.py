"""One Optuna study, one worker vs two: wall time of a granularity_sweep job with N trials.

Starts its own stack on this machine's PostgreSQL and Redis (a scratch database, Redis db 12), runs
the same job (same seed, same N) with ``parallel_trials=1`` on one Celery worker, then with
``parallel_trials=2`` on two workers, and prints both wall times and the ratio (goal: about 2x).

    .venv/bin/python -m bench.parallel_study [--trials 40] [--dataset digits]

Run it from the checkout's root with ``-m``, as ``make test`` runs pytest: it drives the test suite's stack
(``tests/stack.py``), which is part of the checkout, not of the installed project.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from pathlib import Path

from tests.stack import scratch_pg_stack

REDIS_URL = "redis://127.0.0.1:6379/12"


def wall(job: dict) -> float:
    started, finished = (dt.datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--dataset", default="digits")
    args = parser.parse_args()
    config = {"n_trials": args.trials, "pretrain_epochs": 10, "prune_steps": 2, "retrain_epochs": 2, "seed": 0}
    with scratch_pg_stack(Path(tempfile.mkdtemp(prefix="bench-parallel-")), REDIS_URL) as stack:
        stack.create_user("bench", "bench-pass-1")
        stack.start_web()
        stack.start_worker("worker1")
        client = stack.client("bench", "bench-pass-1")
        one = client.submit("granularity_sweep", {**config, "parallel_trials": 1}, dataset=args.dataset)
        one = client.wait_status(one["id"], {"succeeded", "failed"}, timeout=3600)
        stack.start_worker("worker2")
        two = client.submit("granularity_sweep", {**config, "parallel_trials": 2}, dataset=args.dataset)
        two = client.wait_status(two["id"], {"succeeded", "failed"}, timeout=3600)
    assert one["status"] == two["status"] == "succeeded", (one["error"], two["error"])
    print(f"{args.trials} trials on {args.dataset} (pretraining included in both)")
    print(f"one worker : {wall(one):7.1f} s")
    print(f"two workers: {wall(two):7.1f} s")
    print(f"speed-up   : {wall(one) / wall(two):.2f}x   goal: about 2x")


if __name__ == "__main__":
    main()
