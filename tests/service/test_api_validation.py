"""Bad input is refused whole: a 400 with per-field messages and no row created."""

from __future__ import annotations

import pytest
from django.test import override_settings

from automl_site.jobs.models import Job

pytestmark = pytest.mark.django_db


def _post(api, body):  # noqa: ANN001, ANN202
    return api.post("/api/v1/jobs/", body, format="json")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "no_such_kind"}, "kind"),
        ({}, "kind"),
        ({"kind": "mlp_sweep", "config": {"trials": "many"}}, "config.trials"),
        ({"kind": "mlp_sweep", "config": {"trials": 0}}, "config.trials"),
        ({"kind": "mlp_sweep", "config": {"trials": 10_000}}, "config.trials"),
        ({"kind": "mlp_sweep", "config": {"epochs": 1.5}}, "config.epochs"),
        ({"kind": "mlp_sweep", "config": {"trials": 2.0, "epochs": 1.0}}, "config.trials"),
        ({"kind": "mlp_sweep", "config": {"trials": True}}, "config.trials"),
        ({"kind": "mlp_sweep", "config": {"hidden_min": 100, "hidden_max": 10}}, "config.hidden_min"),
        ({"kind": "mlp_sweep", "config": {"unknown_option": 1}}, "config.unknown_option"),
        ({"kind": "mlp_sweep", "config": [1, 2]}, "config"),
        ({"kind": "mlp_sweep", "dataset": "no_such_dataset"}, "dataset"),
        ({"kind": "mlp_sweep", "dataset": "999999"}, "dataset"),
        ({"kind": "mlp_sweep", "parent": 999999}, "parent"),
        ({"kind": "mlp_sweep", "model": 999999}, "model"),
        ({"kind": "mlp_sweep", "config": {"trials": 200, "epochs": 2000, "hidden_max": 1024}}, "config"),
    ],
)
def test_bad_submit_is_a_400_with_field_errors_and_creates_nothing(alice_api, body, field) -> None:  # noqa: ANN001
    r = _post(alice_api, body)
    assert r.status_code == 400, r.content
    assert field in r.json(), r.json()
    assert all(isinstance(m, str) and m for m in r.json()[field])
    assert Job.objects.count() == 0


def test_good_submit_fills_defaults(alice_api) -> None:  # noqa: ANN001
    r = _post(alice_api, {"kind": "mlp_sweep", "config": {"trials": 3}, "dataset": "wine"})
    assert r.status_code == 201, r.content
    job = r.json()
    assert job["status"] == "queued" and job["config"]["trials"] == 3 and job["config"]["epochs"] == 20
    assert Job.objects.get(pk=job["id"]).dataset.builtin == "wine"


@override_settings(AUTOML={**__import__("django.conf").conf.settings.AUTOML, "MAX_ACTIVE_JOBS_PER_USER": 2})
def test_active_job_limit_is_enforced_per_user(alice_api, bob_api) -> None:  # noqa: ANN001
    assert _post(alice_api, {"kind": "mlp_sweep"}).status_code == 201
    assert _post(alice_api, {"kind": "mlp_sweep"}).status_code == 201
    r = _post(alice_api, {"kind": "mlp_sweep"})
    assert r.status_code == 400 and "limit" in r.json()["non_field_errors"][0]
    assert _post(bob_api, {"kind": "mlp_sweep"}).status_code == 201  # bob has his own quota
    assert Job.objects.count() == 3


def test_unauthenticated_requests_are_refused(db) -> None:  # noqa: ANN001
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/jobs/").status_code in (401, 403)
    assert APIClient().post("/api/v1/jobs/", {"kind": "mlp_sweep"}, format="json").status_code in (401, 403)


def test_token_auth_round_trip(alice) -> None:  # noqa: ANN001
    from rest_framework.test import APIClient

    client = APIClient()
    r = client.post("/api/v1/auth/token/", {"username": "alice", "password": "alice-pass-1"}, format="json")
    assert r.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {r.json()['token']}")
    assert client.get("/api/v1/jobs/").status_code == 200
    assert (
        APIClient().post("/api/v1/auth/token/", {"username": "alice", "password": "x"}, format="json").status_code
        == 400
    )


def test_job_kinds_lists_schema_and_defaults(alice_api) -> None:  # noqa: ANN001
    r = alice_api.get("/api/v1/job-kinds/")
    assert r.status_code == 200
    kinds = {k["name"]: k for k in r.json()["results"]}
    assert kinds["mlp_sweep"]["defaults"]["trials"] == 8
    assert kinds["mlp_sweep"]["schema"]["properties"]["trials"]["maximum"] == 200


def test_job_kinds_list_examples_and_metrics_as_the_schema_says(alice_api) -> None:  # noqa: ANN001
    from search_spaces import registry

    kinds = {k["name"]: k for k in alice_api.get("/api/v1/job-kinds/").json()["results"]}
    component = alice_api.get("/api/schema/?format=json").json()["components"]["schemas"]["JobKind"]
    assert {"examples", "metrics"} <= set(component["required"])
    for name, kind in kinds.items():
        assert set(kind) == set(component["properties"]), name  # the documented shape is the served one
        assert kind["examples"]["tiny"] == registry.get_kind(name).tiny_config and "default" in kind["examples"]
        declared = registry.get_kind(name).metrics
        assert kind["metrics"] == [
            {"name": m.name, "unit": m.unit, "group": m.group, "description": m.description} for m in declared
        ]
    assert {"name": "val_accuracy", "unit": "fraction", "group": "accuracy"}.items() <= next(
        m for m in kinds["mlp_sweep"]["metrics"] if m["name"] == "val_accuracy"
    ).items()


def test_list_filters_by_kind_and_status(alice_api) -> None:  # noqa: ANN001
    _post(alice_api, {"kind": "mlp_sweep"})
    assert alice_api.get("/api/v1/jobs/?status=queued").json()["count"] == 1
    assert alice_api.get("/api/v1/jobs/?status=running").json()["count"] == 0
    assert alice_api.get("/api/v1/jobs/?kind=mlp_sweep").json()["count"] == 1
    assert alice_api.get("/api/v1/jobs/?status=bogus").status_code == 400


def test_openapi_schema_and_docs_are_served_offline(alice_api) -> None:  # noqa: ANN001
    schema = alice_api.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in [
        "/api/v1/jobs/",
        "/api/v1/jobs/{id}/cancel/",
        "/api/v1/jobs/{id}/metrics/",
        "/api/v1/artifacts/{id}/download/",
        "/api/v1/fpga-reports/",
        "/api/v1/datasets/",
        "/api/v1/models/",
        "/api/v1/job-kinds/",
        "/api/v1/auth/token/",
    ]:
        assert path in paths, path
    docs = alice_api.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower() and "unpkg" not in html


def test_session_auth_submit_needs_csrf_and_works_with_it(alice) -> None:  # noqa: ANN001
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    assert browser.login(username="alice", password="alice-pass-1")
    refused = browser.post("/api/v1/jobs/", {"kind": "mlp_sweep"}, content_type="application/json")
    assert refused.status_code == 403 and Job.objects.count() == 0
    browser.get("/submit/")  # sets the CSRF cookie, as the page does
    token = browser.cookies["csrftoken"].value
    r = browser.post("/api/v1/jobs/", {"kind": "mlp_sweep"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert r.status_code == 201, r.content
