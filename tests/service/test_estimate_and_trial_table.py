"""What the browser pages read besides the plain lists: the budget estimate before a submit, the trial table's
server-side filter, ordering and pages, the objectives that head its columns, and what a queued job waits for."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from automl_site.jobs.models import Job, JobStatus, Trial
from search_spaces import registry

pytestmark = pytest.mark.django_db

ESTIMATE = "/api/v1/jobs/estimate/"


def test_the_estimate_is_the_budget_the_submit_stores_and_creates_nothing(alice_api) -> None:  # noqa: ANN001
    body = {"kind": "mlp_sweep", "config": {"trials": 3}, "dataset": "wine"}
    r = alice_api.post(ESTIMATE, body, format="json")
    assert r.status_code == 200, r.content
    estimate = r.json()
    assert Job.objects.count() == 0
    assert estimate["config"]["trials"] == 3 and estimate["config"]["epochs"] == 20  # defaults filled
    assert estimate["over_budget"] is False and estimate["accepted"] is True and estimate["problems"] == {}
    assert estimate["max_budget"] == settings.AUTOML["MAX_BUDGET_PER_JOB"]
    job = alice_api.post("/api/v1/jobs/", body, format="json").json()
    assert job["budget"] == pytest.approx(estimate["budget"]) and job["dataset"] == estimate["dataset"]


def test_an_estimate_over_the_limit_says_so_instead_of_refusing(alice_api) -> None:  # noqa: ANN001
    body = {"kind": "mlp_sweep", "config": {"trials": 200, "epochs": 2000, "hidden_max": 1024}}
    estimate = alice_api.post(ESTIMATE, body, format="json").json()
    assert estimate["over_budget"] is True and estimate["accepted"] is False
    assert estimate["budget"] > estimate["max_budget"] and "over the per-job limit" in estimate["problems"]["config"][0]
    submit = alice_api.post("/api/v1/jobs/", body, format="json")
    assert submit.status_code == 400 and submit.json()["config"] == estimate["problems"]["config"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "mlp_sweep", "config": {"trials": "many"}}, "config.trials"),
        ({"kind": "no_such_kind"}, "kind"),
        ({"kind": "mlp_sweep", "dataset": "no_such_dataset"}, "dataset"),
        ({"kind": "mlp_sweep", "parent": 999999}, "parent"),
    ],
)
def test_an_estimate_refuses_what_the_submit_refuses_before_sizing(alice_api, body, field) -> None:  # noqa: ANN001
    r = alice_api.post(ESTIMATE, body, format="json")
    assert r.status_code == 400 and field in r.json(), r.content


@override_settings(AUTOML={**settings.AUTOML, "MAX_ACTIVE_JOBS_PER_USER": 1})
def test_an_estimate_counts_the_active_job_limit(alice_api) -> None:  # noqa: ANN001
    assert alice_api.post("/api/v1/jobs/", {"kind": "mlp_sweep"}, format="json").status_code == 201
    estimate = alice_api.post(ESTIMATE, {"kind": "mlp_sweep"}, format="json").json()
    assert estimate["active_jobs"] == 1 and estimate["max_active_jobs"] == 1 and estimate["accepted"] is False


@pytest.fixture
def trials(alice) -> Job:  # noqa: ANN001
    job = Job.objects.create(owner=alice, kind="hls4ml_sweep", config=registry.get_kind("hls4ml_sweep").defaults())
    rows = [
        (0, "complete", [0.70, 40, 120.0], {"dsp": 40, "fits": True}),
        (1, "complete", [0.90, 80, 60.0], {"dsp": 80, "fits": True}),
        (2, "failed", None, {"error": "overflow"}),
        (3, "complete", [0.80, 10, None], {"dsp": 10, "fits": False}),
        (4, "pruned", [0.50, 5, 30.0], {"dsp": 5}),
    ]
    for number, state, values, metrics in rows:
        Trial.objects.create(job=job, number=number, state=state, params={}, values=values, metrics=metrics)
    return job


def _numbers(api, job: Job, query: str) -> list[int]:  # noqa: ANN001
    r = api.get(f"/api/v1/jobs/{job.pk}/trials/?{query}")
    assert r.status_code == 200, r.content
    return [t["number"] for t in r.json()["results"]]


@pytest.mark.parametrize(
    "query, numbers",
    [
        ("", [0, 1, 2, 3, 4]),
        ("ordering=-values.0", [1, 3, 0, 4, 2]),  # no values: last
        ("ordering=values.0", [4, 0, 3, 1, 2]),  # ascending too
        ("ordering=values.2", [4, 1, 0, 3, 2]),  # a JSON null is last like a missing value
        ("ordering=-metrics.dsp", [1, 0, 3, 4, 2]),
        ("ordering=-number", [4, 3, 2, 1, 0]),
        ("state=complete&ordering=-values.1", [1, 0, 3]),
        ("state=complete&state=pruned&ordering=values.1", [4, 3, 0, 1]),
        ("ordering=-values.0&page_size=2&page=2", [0, 4]),
    ],
)
def test_trials_are_filtered_ordered_and_paged_on_the_server(alice_api, trials, query, numbers) -> None:  # noqa: ANN001
    assert _numbers(alice_api, trials, query) == numbers


@pytest.mark.parametrize("query", ["ordering=params", "ordering=values.x", "ordering=metrics.a__b", "state=lost"])
def test_a_trial_ordering_or_state_it_does_not_know_is_a_400(alice_api, trials, query) -> None:  # noqa: ANN001
    r = alice_api.get(f"/api/v1/jobs/{trials.pk}/trials/?{query}")
    assert r.status_code == 400 and r.json(), r.content


def test_a_job_names_its_objectives_and_a_queued_one_says_what_it_waits_for(alice_api, trials, alice) -> None:  # noqa: ANN001
    job = alice_api.get(f"/api/v1/jobs/{trials.pk}/").json()
    assert [o["name"] for o in job["objectives"]] == ["fixed_accuracy", "dsp", "latency_ns"]
    assert [o["direction"] for o in job["objectives"]] == ["maximize", "minimize", "minimize"]
    assert job["queue"] == {"ahead": 0, "running": 0}
    later = Job.objects.create(owner=alice, kind="mlp_sweep", config={})
    Job.objects.create(owner=alice, kind="mlp_sweep", config={}, status=JobStatus.RUNNING)
    assert alice_api.get(f"/api/v1/jobs/{later.pk}/").json()["queue"] == {"ahead": 1, "running": 1}
    Job.objects.filter(pk=trials.pk).update(status=JobStatus.SUCCEEDED)
    assert alice_api.get(f"/api/v1/jobs/{trials.pk}/").json()["queue"] is None
    assert all(j["queue"] is None for j in alice_api.get("/api/v1/jobs/").json()["results"])  # not per row


def test_the_schema_documents_the_estimate_and_the_trial_ordering(alice_api) -> None:  # noqa: ANN001
    schema = alice_api.get("/api/schema/?format=json").json()
    assert "/api/v1/jobs/estimate/" in schema["paths"]
    params = {p["name"]: p for p in schema["paths"]["/api/v1/jobs/{id}/trials/"]["get"]["parameters"]}
    assert "values.N" in params["ordering"]["description"] and "state" in params
