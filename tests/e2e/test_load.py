"""Load is held: 50 clients submitting and polling for a minute (RELIABILITY.md).

No request fails or gets a 5xx, latency stays bounded, and every submitted job is accounted for:
it exists once, and it finishes.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import pytest
import requests

from tests.stack import ApiClient, Stack, wait_for

pytestmark = pytest.mark.e2e

CLIENTS = 50
USERS = 10
SECONDS = float(os.environ.get("LOAD_TEST_SECONDS", "60"))
POLL_SECONDS = 0.5


def test_fifty_clients_for_a_minute(pg_stack: Stack) -> None:
    users = [(f"load{i}", f"load-pass-{i}") for i in range(USERS)]
    for user in users:
        pg_stack.create_user(*user)
    clients = [ApiClient(pg_stack.base_url, *users[i % USERS]) for i in range(CLIENTS)]
    latencies: list[float] = []
    failures: list[str] = []
    submitted: dict[str, list[int]] = {u: [] for u, _ in users}
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def timed(call, *args, **kw) -> requests.Response | None:  # noqa: ANN001, ANN002, ANN003
        t0 = time.monotonic()
        try:
            r = call(*args, **kw)
        except requests.RequestException as exc:
            with lock:
                failures.append(f"{args[0]}: {exc}")
            return None
        with lock:
            latencies.append(time.monotonic() - t0)
            if r.status_code >= 500:
                failures.append(f"{args[0]}: {r.status_code}")
        return r

    def client_loop(index: int) -> None:
        client, user = clients[index], users[index % USERS][0]
        while time.monotonic() < deadline:
            r = timed(client.post, "/api/v1/jobs/", json={"kind": "mlp_sweep", "config": {"trials": 1, "epochs": 2}})
            if r is None or r.status_code != 201:
                if r is not None and r.status_code != 400:  # 400: the per-user active-jobs limit
                    failures.append(f"submit: {r.status_code} {r.text[:200]}")
                time.sleep(POLL_SECONDS)
                continue
            job_id = r.json()["id"]
            with lock:
                submitted[user].append(job_id)
            while time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                job = timed(client.get, f"/api/v1/jobs/{job_id}/")
                timed(client.get, "/api/v1/jobs/?status=running")
                if job is not None and job.status_code == 200 and job.json()["status"] not in ("queued", "running"):
                    break

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 60)

    assert not failures, failures[:10]
    p50, p95 = statistics.median(latencies), statistics.quantiles(latencies, n=20)[-1]
    total = sum(len(v) for v in submitted.values())
    print(
        f"\nload: {len(latencies)} requests, p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms, {total} jobs submitted"
    )
    assert total >= CLIENTS
    assert p95 < 2.0 and max(latencies) < 10.0
    for username, password in users:
        client = ApiClient(pg_stack.base_url, username, password)
        mine = submitted[username]

        def all_finished() -> bool:
            jobs = client.get("/api/v1/jobs/?page_size=1000").json()["results"]  # noqa: B023
            return sorted(j["id"] for j in jobs) == sorted(mine) and all(  # noqa: B023
                j["status"] == "succeeded" for j in jobs
            )

        wait_for(all_finished, 180, f"every job of {username} to be stored once and to succeed", interval=1)
