"""What keeps the pages fast on a big job (issue 18): curves down-sampled on the server for the first drawing, lean
list rows, capped pages, conditional GETs on what the pages poll, and an admin change page whose queries do not
grow with the job's trials."""

from __future__ import annotations

import math

import pytest

from automl_site.jobs.models import Job, MetricPoint
from automl_site.jobs.sampling import minmax_indices

pytestmark = pytest.mark.django_db


def test_minmax_keeps_first_last_and_every_extreme_within_the_bound() -> None:
    values = [math.sin(i / 50) for i in range(10_000)]
    values[1234], values[8765] = 50.0, -50.0  # a spike and a dip the down-sampling must not lose
    keep = minmax_indices(values, 300)
    assert len(keep) <= 300 and keep == sorted(set(keep))
    assert keep[0] == 0 and keep[-1] == 9_999 and 1234 in keep and 8765 in keep
    assert minmax_indices(values[:50], 300) == list(range(50))  # a series that fits is kept whole


def _job_with_curves(owner, trials: int, steps: int) -> Job:  # noqa: ANN001
    job = Job.objects.create(owner=owner, kind="mlp_sweep", config={"trials": trials})
    MetricPoint.objects.bulk_create(
        [MetricPoint(job=job, trial_number=None, step=i, name="best", value=i % 97) for i in range(steps)]
        + [
            MetricPoint(job=job, trial_number=t, step=s, name="val_accuracy", value=t + s / steps)
            for t in range(trials)
            for s in range(10)
        ]
    )
    return job


def test_first_load_of_curves_is_bounded_columns_with_the_last_point(alice, alice_api) -> None:  # noqa: ANN001
    job = _job_with_curves(alice, trials=30, steps=5_000)
    MetricPoint.objects.filter(job=job, name="best", step=2_500).update(value=1e6)  # an extreme mid-series
    r = alice_api.get(f"/api/v1/jobs/{job.pk}/metrics/?max_points=200&max_series=5")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["last_id"] == MetricPoint.objects.filter(job=job).latest("id").pk
    assert body["more_series"] == ["val_accuracy"]
    best = next(s for s in body["series"] if s["name"] == "best")
    assert best["trial"] is None and best["points"] == 5_000 and best["sampled"] is True
    assert len(best["step"]) == len(best["value"]) == len(best["id"]) <= 200
    assert best["step"][0] == 0 and best["step"][-1] == 4_999  # first and last kept
    assert 1e6 in best["value"] and best["step"] == sorted(best["step"])
    trials = [s["trial"] for s in body["series"] if s["name"] == "val_accuracy"]
    assert trials == [25, 26, 27, 28, 29]  # the latest trials', whole
    assert all(s["points"] == 10 and not s["sampled"] for s in body["series"] if s["name"] == "val_accuracy")
    # Polling from last_id brings only what came after, in the page format clients of ?since= know.
    MetricPoint.objects.create(job=job, trial_number=29, step=10, name="val_accuracy", value=0.5)
    after = alice_api.get(f"/api/v1/jobs/{job.pk}/metrics/?since={body['last_id']}").json()
    assert after["count"] == 1 and set(after["results"][0]) == {"id", "trial", "step", "name", "value", "created_at"}
    assert after["results"][0]["trial"] == 29 and after["results"][0]["created_at"].endswith("Z")


def test_since_pages_keep_their_shape_and_bound(alice, alice_api) -> None:  # noqa: ANN001
    job = _job_with_curves(alice, trials=0, steps=6_000)
    first = alice_api.get(f"/api/v1/jobs/{job.pk}/metrics/").json()
    assert first["count"] == 5_000 and first["next"].endswith(f"?since={first['last_id']}")
    rest = alice_api.get(f"/api/v1/jobs/{job.pk}/metrics/?since={first['last_id']}").json()
    assert rest["count"] == 1_000 and rest["next"] is None
    assert [p["step"] for p in first["results"] + rest["results"]] == list(range(6_000))


@pytest.mark.parametrize("query", ["max_points=1", "max_points=100000", "max_points=x", "max_points=10&max_series=0"])
def test_first_load_bounds_are_checked(alice, alice_api, query) -> None:  # noqa: ANN001
    job = _job_with_curves(alice, trials=1, steps=3)
    r = alice_api.get(f"/api/v1/jobs/{job.pk}/metrics/?{query}")
    assert r.status_code == 400, r.content


def test_the_job_list_rows_leave_config_result_and_error_to_the_detail(alice, alice_api) -> None:  # noqa: ANN001
    headline = {"label": "best accuracy", "value": 0.93, "unit": "fraction", "better": "higher"}
    done = Job.objects.create(
        owner=alice,
        kind="mlp_sweep",
        config={"trials": 3},
        status="succeeded",
        result={"summary": [headline, {"label": "other", "value": 1}], "big": "x" * 10_000},
        error="",
    )
    Job.objects.create(owner=alice, kind="mlp_sweep", config={"trials": 1}, error="boom " * 1000)
    rows = alice_api.get("/api/v1/jobs/").json()["results"]
    assert all({"config", "result", "error", "objectives"}.isdisjoint(row) for row in rows)
    by_id = {row["id"]: row for row in rows}
    assert by_id[done.pk]["headline"] == headline and by_id[done.pk]["status"] == "succeeded"
    assert [row["headline"] for row in rows if row["id"] != done.pk] == [None]
    detail = alice_api.get(f"/api/v1/jobs/{done.pk}/").json()
    assert detail["config"]["trials"] == 3 and detail["result"]["big"] and detail["objectives"]


def test_the_job_list_costs_the_same_queries_for_3_or_30_jobs(alice, alice_api) -> None:  # noqa: ANN001
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert alice_api.get("/api/v1/jobs/?page_size=100").status_code == 200
        return len(captured)

    Job.objects.bulk_create([Job(owner=alice, kind="mlp_sweep") for _ in range(3)])
    few = queries()
    Job.objects.bulk_create([Job(owner=alice, kind="mlp_sweep") for _ in range(27)])
    assert queries() == few


def test_fpga_report_list_names_the_trial_without_loading_it_or_the_raw_report(alice, alice_api) -> None:  # noqa: ANN001
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from automl_site.jobs.models import FpgaReport, Trial

    job = Job.objects.create(owner=alice, kind="hls4ml_sweep")
    trials = Trial.objects.bulk_create([Trial(job=job, number=n, params={"p": "x" * 500}) for n in range(20)])
    filled = {
        "dsp": 12,
        "lut": 3400,
        "bram": 1.5,
        "latency_ns": 75.0,
        "utilisation": {"dsp": 5.5},
        "reuse_factor": {"fc1": 2},
    }
    FpgaReport.objects.bulk_create(
        [
            FpgaReport(job=job, trial=t, part="xc7z020", clock_period_ns=5, raw={"big": "y" * 5000}, **filled)
            for t in trials
        ]
        + [FpgaReport(job=job, trial=None, part="xc7z020", clock_period_ns=5)]
    )
    with CaptureQueriesContext(connection) as captured:
        body = alice_api.get(f"/api/v1/fpga-reports/?job={job.pk}&page_size=100").json()
    sql = " ".join(q["sql"] for q in captured)
    assert '"raw"' not in sql and '"jobs_trial"."params"' not in sql
    assert sorted(r["trial_number"] for r in body["results"] if r["trial_number"] is not None) == list(range(20))
    assert [r["trial_number"] for r in body["results"]].count(None) == 1 and "raw" not in body["results"][0]
    # The list reads rows of values, not instances through the serializer: each row is what the detail answers.
    for row in body["results"][:3] + body["results"][-1:]:
        assert alice_api.get(f"/api/v1/fpga-reports/{row['id']}/").json() == row


def test_the_trial_list_caps_its_page_at_500(alice, alice_api) -> None:  # noqa: ANN001
    from automl_site.jobs.models import Trial

    job = Job.objects.create(owner=alice, kind="mlp_sweep")
    Trial.objects.bulk_create([Trial(job=job, number=n, values=[n / 700]) for n in range(700)])
    body = alice_api.get(f"/api/v1/jobs/{job.pk}/trials/?page_size=1000").json()
    assert body["count"] == 700 and len(body["results"]) == 500 and body["next"]
    rest = alice_api.get(body["next"]).json()
    assert [t["number"] for t in body["results"] + rest["results"]] == list(range(700))


@pytest.mark.parametrize("path", ["/api/v1/jobs/{id}/", "/api/v1/jobs/{id}/trials/", "/api/v1/fpga-reports/?job={id}"])
def test_what_the_job_page_polls_answers_304_while_unchanged(alice, alice_api, path) -> None:  # noqa: ANN001
    from automl_site.jobs.models import FpgaReport, Trial

    job = Job.objects.create(owner=alice, kind="mlp_sweep", status="running")
    Trial.objects.create(job=job, number=0, values=[0.5])
    url = path.format(id=job.pk)
    first = alice_api.get(url)
    tag = first["ETag"]
    assert first.status_code == 200 and tag and "no-cache" in first["Cache-Control"]
    again = alice_api.get(url, HTTP_IF_NONE_MATCH=tag)
    assert again.status_code == 304 and again["ETag"] == tag and not again.content
    # A change is seen at once: the next poll gets the new content and a new tag.
    Job.objects.filter(pk=job.pk).update(progress=0.5)
    Trial.objects.create(job=job, number=1, values=[0.7])
    FpgaReport.objects.create(job=job, part="xc7z020", clock_period_ns=5)
    changed = alice_api.get(url, HTTP_IF_NONE_MATCH=tag)
    assert changed.status_code == 200 and changed["ETag"] != tag and changed.json()


def _admin_queries(client, url: str) -> tuple[int, str]:  # noqa: ANN001
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        r = client.get(url)
    assert r.status_code == 200, url
    return len(captured), r.content.decode()


def test_the_admin_change_page_of_a_big_job_is_capped_and_its_queries_bounded(alice, staff) -> None:  # noqa: ANN001
    from django.test import Client

    from automl_site.jobs.admin import INLINE_ROWS
    from automl_site.jobs.models import FpgaReport, Trial

    browser = Client()
    browser.force_login(staff)
    job = Job.objects.create(owner=alice, kind="hls4ml_sweep", status="succeeded")

    def grow(to: int) -> tuple[int, str]:
        have = job.trials.count()
        trials = Trial.objects.bulk_create([Trial(job=job, number=n, values=[n]) for n in range(have, to)])
        FpgaReport.objects.bulk_create([FpgaReport(job=job, trial=t, part="p", clock_period_ns=5) for t in trials])
        return _admin_queries(browser, f"/admin/jobs/job/{job.pk}/change/")

    few, _ = grow(5)
    many, page = grow(600)
    assert many <= few and many <= 15, (few, many)  # no query per trial or per FPGA report
    assert f'id="trials-{INLINE_ROWS - 1}"' in page and f'id="trials-{INLINE_ROWS}"' not in page  # not 600 rows
    assert f"job__id__exact={job.pk}" in page and "600 trials" in page and "600 FPGA reports" in page
    _, listed = _admin_queries(browser, f"/admin/jobs/trial/?job__id__exact={job.pk}")
    assert "trial 599 of job" in listed


@pytest.mark.parametrize("model", ["job", "trial", "fpgareport", "metricpoint", "artifact"])
def test_admin_changelists_make_the_same_queries_for_few_or_many_rows(alice, staff, model) -> None:  # noqa: ANN001
    from django.test import Client

    from automl_site.jobs.models import FpgaReport, Trial

    browser = Client()
    browser.force_login(staff)
    job = Job.objects.create(owner=alice, kind="hls4ml_sweep")

    def grow(n: int) -> int:
        base = job.trials.count()
        jobs = Job.objects.bulk_create([Job(owner=alice, kind="mlp_sweep", config={"x": "y" * 100}) for _ in range(n)])
        trials = Trial.objects.bulk_create([Trial(job=job, number=base + i) for i in range(n)])
        reports = [FpgaReport(job=j, trial=t, part="p", clock_period_ns=5) for j, t in zip(jobs, trials, strict=True)]
        FpgaReport.objects.bulk_create(reports)
        MetricPoint.objects.bulk_create([MetricPoint(job=j, step=0, name="loss", value=1) for j in jobs])
        return _admin_queries(browser, f"/admin/jobs/{model}/")[0]

    few = grow(3)
    assert grow(40) <= few
