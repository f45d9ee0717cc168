"""Scale (issue 18): the pages and the admin over 10,000 jobs, a job of 100,000 trials and 1M metric points, and
1,000 FPGA reports, on PostgreSQL, with the web started as the Procfile starts it (gunicorn, deploy/gunicorn.conf.py).

Seeds a scratch database with bulk_create, then measures over HTTP each endpoint the job list, the job page and the
admin use (p50/p95 over --repeat requests, the answer's bytes, and its queries, counted in-process with Django's
test client on the same database), the big job's page in Chromium to its first drawn curve, and ``pareto_mask`` of
10,000 points. Goals: lists p95 <= 100 ms, the big job's page drawn <= 1 s, its admin page <= 1 s, Pareto of 10k
points <= 200 ms.

    nice -n 10 .venv/bin/python -m bench.scale [--jobs 10000] [--trials 100000] [--points 1000000] [--reports 1000]

Run it from the checkout's root with ``-m``: it drives the test suite's stack (``tests/stack.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.stack import scratch_pg_stack

REDIS_URL = "redis://127.0.0.1:6379/13"
USER, PASSWORD = "bench", "bench-pass-1"
STAFF, STAFF_PASSWORD = "staff", "staff-pass-1"
BATCH = 10_000


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def seed(args: argparse.Namespace) -> dict[str, Any]:
    """The rows, in bulk: ``--jobs`` jobs of one user (results with headlines, configs), one of them the big job with
    ``--trials`` trials (two objective values each), ``--points`` metric points (a job-level best-so-far point per
    trial, the rest spread over the trials as a per-epoch val_accuracy) and ``--reports`` FPGA reports."""
    from django.contrib.auth import get_user_model

    from automl_site.jobs.models import FpgaReport, Job, MetricPoint, Trial

    owner = get_user_model().objects.get(username=USER)
    summary = [{"label": "best accuracy", "value": 0.93, "unit": "fraction", "better": "higher"}]
    result = {"summary": summary, "tables": [{"name": "t", "columns": ["a"], "rows": [[i] for i in range(50)]}]}
    config = {"trials": 20, "epochs": 20, "hidden_min": 16, "hidden_max": 128, "lr": [0.001, 0.1]}
    t0 = time.time()
    Job.objects.bulk_create(
        [
            Job(owner=owner, kind="mlp_sweep", name=f"job {i}", status="succeeded", config=config, result=result)
            for i in range(args.jobs - 1)
        ],
        batch_size=BATCH,
    )
    big = Job.objects.create(
        owner=owner, kind="hls4ml_sweep", name="the big job", status="succeeded", config={}, result=result
    )
    for start in range(0, args.trials, BATCH):
        Trial.objects.bulk_create(
            [
                Trial(
                    job=big,
                    number=n,
                    params={"reuse_factor": n % 16, "bits": 8 + n % 9, "strategy": "latency"},
                    values=[(n * 7919 % 10_000) / 10_000, float(n * 104_729 % 5_000)],
                    metrics={"dsp": n % 500, "latency_ns": n % 300},
                    duration_seconds=1.0,
                )
                for n in range(start, min(start + BATCH, args.trials))
            ]
        )
    per_trial = max(1, (args.points * 9 // 10) // max(args.trials, 1))
    job_level = max(0, args.points - per_trial * args.trials)

    def points() -> Any:
        for n in range(job_level):
            yield MetricPoint(job=big, trial_number=None, step=n, name="best_value", value=(n % 1000) / 1000)
        for t in range(args.trials):
            for step in range(per_trial):
                yield MetricPoint(job=big, trial_number=t, step=step, name="val_accuracy", value=step / per_trial)

    batch: list[MetricPoint] = []
    for point in points():
        batch.append(point)
        if len(batch) == BATCH:
            MetricPoint.objects.bulk_create(batch)
            batch = []
    MetricPoint.objects.bulk_create(batch)
    trials = list(Trial.objects.filter(job=big).order_by("number")[: args.reports])
    FpgaReport.objects.bulk_create(
        [
            FpgaReport(
                job=big,
                trial=trials[i % len(trials)],
                part="xcu250-figd2104-2L-e",
                clock_period_ns=5,
                reuse_factor={"fc1": 4, "fc2": 4},
                precision={"fc1": "ap_fixed<16,6>"},
                dsp=i % 700,
                lut=i * 13,
                latency_ns=float(i % 400),
                utilisation={"dsp": 1.5, "lut": 2.5},
                raw={"report": "x" * 2000},
            )
            for i in range(args.reports)
        ]
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(
        f"seeded {args.jobs} jobs, {args.trials} trials, {MetricPoint.objects.count()} metric points "
        f"({job_level} job-level, {per_trial} per trial), {args.reports} FPGA reports in {time.time() - t0:.0f} s"
    )
    return {"big": big.pk}


def queries(path: str, username: str) -> int:
    """The queries one GET of ``path`` makes, counted in this process on the same database."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    with CaptureQueriesContext(connection) as captured:
        status = client.get(path, HTTP_HOST="127.0.0.1").status_code
    return len(captured) if status in (200, 304) else -status


def measure(get: Callable[[], requests.Response], repeat: int) -> tuple[float, float, int, int]:
    get()  # warm up the worker's connection and caches
    times, size, status = [], 0, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = get()
        times.append((time.perf_counter() - t0) * 1000)
        size, status = len(r.content), r.status_code
    return percentile(times, 50), percentile(times, 95), size, status


def page_load(base_url: str, job_id: int) -> tuple[float, float]:
    """Seconds from opening the big job's page (logged in) to its first drawn curve, in Chromium (and, printed, to
    its trial table and FPGA chart), and again on a second visit (plotly.js cached)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's, as the browser tests launch it
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(base_url=base_url)
        page.goto("/login/?next=/")
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/login/" not in url)
        t0 = time.perf_counter()
        page.goto(f"/jobs/{job_id}/")
        page.locator("#curves .main-svg").first.wait_for(state="visible", timeout=300_000)
        seconds = time.perf_counter() - t0
        # the rest of the page, asked for once the first curves are drawn: the trial table and the FPGA reports
        page.locator("#trials-section tbody tr").first.wait_for(state="attached", timeout=300_000)
        page.locator("#fpga-reports tbody tr").first.wait_for(state="attached", timeout=300_000)
        page.locator("#fpga-pareto .main-svg").first.wait_for(state="visible", timeout=300_000)
        rest = time.perf_counter() - t0
        print(f"browser: trial table, FPGA table and FPGA chart drawn {rest:.2f} s after opening the page")
        heap = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : 0")
        print(f"browser: first curve drawn {seconds:.2f} s after opening the page, JS heap {heap / 1e6:.0f} MB")
        # where the time went: each request the page made, from the navigation's start (ms)
        entries = page.evaluate(
            "() => [['page', 0, performance.timing.domContentLoadedEventEnd - performance.timing.navigationStart],"
            " ...performance.getEntriesByType('resource').map(e => [e.name.replace(location.origin, ''),"
            " Math.round(e.startTime), Math.round(e.responseEnd)])]"
        )
        for name, start, end in entries:
            print(f"  {start:6.0f} -> {end:6.0f} ms  {name[:100]}")
        # A second visit in the same browser: plotly.js (served to be kept) comes from the cache, compiled.
        page.goto("/")
        t0 = time.perf_counter()
        page.goto(f"/jobs/{job_id}/")
        page.locator("#curves .main-svg").first.wait_for(state="visible", timeout=300_000)
        warm = time.perf_counter() - t0
        print(f"browser: first curve drawn {warm:.2f} s after opening the page again (plotly.js cached)")
        browser.close()
    return seconds, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--reports", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    with scratch_pg_stack(Path(tempfile.mkdtemp(prefix="bench-scale-")), REDIS_URL) as stack:
        stack.create_user(USER, PASSWORD)
        stack.create_user(STAFF, STAFF_PASSWORD, staff=True)
        os.environ.update(stack.env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "automl_site.settings"
        import django

        django.setup()
        big = seed(args)["big"]
        stack.start_web()
        api = stack.client(USER, PASSWORD)
        admin = requests.Session()
        admin.get(f"{stack.base_url}/admin/login/", timeout=30)
        r = admin.post(
            f"{stack.base_url}/admin/login/?next=/admin/",
            data={"username": STAFF, "password": STAFF_PASSWORD, "csrfmiddlewaretoken": admin.cookies["csrftoken"]},
            headers={"Referer": f"{stack.base_url}/admin/login/"},
            timeout=30,
        )
        assert r.ok and "/admin/login/" not in r.url, "the staff login failed"
        last_id = api.get(f"/api/v1/jobs/{big}/metrics/?max_points=4&max_series=1").json()["last_id"]
        tag = api.get(f"/api/v1/jobs/{big}/").headers["ETag"]
        deep_jobs, deep_trials = max(1, args.jobs // 40), max(1, args.trials // 50)  # half-way through the pages
        endpoints: list[tuple[str, str, str, dict[str, str]]] = [
            ("list", "job list page 1", "/api/v1/jobs/?page_size=20", {}),
            ("list", f"job list page {deep_jobs}", f"/api/v1/jobs/?page={deep_jobs}&page_size=20", {}),
            ("list_max", "job list 1,000 rows (the cap)", "/api/v1/jobs/?page_size=1000", {}),
            ("job", "big job", f"/api/v1/jobs/{big}/", {}),
            ("job", "big job, unchanged ETag", f"/api/v1/jobs/{big}/", {"If-None-Match": tag}),
            ("trials", "trials page 1", f"/api/v1/jobs/{big}/trials/?page_size=25", {}),
            ("trials", "trials best first", f"/api/v1/jobs/{big}/trials/?ordering=-values.0&page_size=25", {}),
            ("trials", f"trials page {deep_trials}", f"/api/v1/jobs/{big}/trials/?page={deep_trials}&page_size=25", {}),
            ("curves", "curves first load", f"/api/v1/jobs/{big}/metrics/?max_points=2000&max_series=20", {}),
            ("curves", "curves ?since=recent", f"/api/v1/jobs/{big}/metrics/?since={last_id - 100}", {}),
            ("list", "FPGA reports of the job", f"/api/v1/fpga-reports/?job={big}&page_size=1000", {}),
            ("job", "artifacts", f"/api/v1/jobs/{big}/artifacts/?page_size=1000", {}),
        ]
        admin_pages = [
            ("admin", "admin job changelist", "/admin/jobs/job/"),
            ("admin_job", "admin big job change page", f"/admin/jobs/job/{big}/change/"),
            ("admin", "admin trials of the big job", f"/admin/jobs/trial/?job__id__exact={big}"),
            ("admin", "admin trial changelist", "/admin/jobs/trial/"),
            ("admin", "admin metric points", "/admin/jobs/metricpoint/"),
            ("admin", "admin metric points of the job", f"/admin/jobs/metricpoint/?q={big}"),
            ("admin", "admin FPGA reports", "/admin/jobs/fpgareport/"),
        ]
        p95: dict[str, list[float]] = {}
        print(f"{'endpoint':<34} {'p50 ms':>8} {'p95 ms':>8} {'bytes':>10} {'queries':>8}")
        for group, label, path, headers in endpoints:
            p50, high, size, status = measure(
                lambda path=path, headers=headers: api.get(path, headers=headers), args.repeat
            )
            p95.setdefault(group, []).append(high)
            n = queries(path, USER) if not headers else 0
            print(f"{label:<34} {p50:8.1f} {high:8.1f} {size:10d} {n:8d}  HTTP {status}")
        for group, label, path in admin_pages:
            url = stack.base_url + path
            p50, high, size, status = measure(lambda url=url: admin.get(url, timeout=60), args.repeat)
            p95.setdefault(group, []).append(p50 if group == "admin_job" else high)
            print(f"{label:<34} {p50:8.1f} {high:8.1f} {size:10d} {queries(path, STAFF):8d}  HTTP {status}")
        loaded, loaded_again = page_load(stack.base_url, big)

    import numpy as np

    from search_spaces.kit.studies import pareto_mask

    points = np.random.default_rng(0).random((10_000, 2))
    pareto_mask(points, ["maximize", "minimize"])
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        pareto_mask(points, ["maximize", "minimize"])
        runs.append((time.perf_counter() - t0) * 1000)
    print(
        f"sizes: {args.jobs} jobs, {args.trials} trials, {args.points} points, {args.reports} reports; "
        f"{args.repeat} requests each; admin_job_s is the change page's p50"
    )
    print(
        f"RESULT list_p95_ms={max(p95['list']):.1f} trials_p95_ms={max(p95['trials']):.1f} page_load_s={loaded:.2f} "
        f"admin_job_s={p95['admin_job'][0] / 1000:.2f} pareto_10k_ms={statistics.median(runs):.1f} "
        f"page_load_again_s={loaded_again:.2f}"
    )


if __name__ == "__main__":
    main()
