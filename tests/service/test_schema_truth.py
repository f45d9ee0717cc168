"""The served OpenAPI schema says what the server answers (the e2e fuzzer checks every operation against it;
these are the quick in-process guards): lists are pages, errors are documented, and an API path no route
takes answers JSON like the rest of the API."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(alice_api):  # noqa: ANN001, ANN201
    response = alice_api.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _ref(response: dict) -> str:
    return response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def test_job_kinds_is_documented_as_the_page_it_is(schema, alice_api) -> None:  # noqa: ANN001
    listed = schema["paths"]["/api/v1/job-kinds/"]["get"]["responses"]["200"]
    page = schema["components"]["schemas"][_ref(listed)]
    assert set(page["properties"]) == {"count", "next", "previous", "results"}
    body = alice_api.get("/api/v1/job-kinds/").json()
    assert set(body) == {"count", "next", "previous", "results"} and body["count"] == len(body["results"])
    assert {p["name"] for p in schema["paths"]["/api/v1/job-kinds/"]["get"]["parameters"]} >= {"page", "page_size"}


def test_every_operation_documents_its_errors(schema) -> None:  # noqa: ANN001
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            where = f"{method.upper()} {path}"
            if path != "/api/v1/auth/token/":
                assert "401" in codes, where
            if "{" in path:
                assert "404" in codes and _ref(operation["responses"]["404"]) == "Error", where
            if method in ("post", "delete"):
                assert "400" in codes and _ref(operation["responses"]["400"]) == "FieldErrors", where


def test_pause_and_resume_are_in_the_schema_and_paused_is_a_status(schema) -> None:  # noqa: ANN001
    for action in ("pause", "resume"):
        responses = schema["paths"][f"/api/v1/jobs/{{id}}/{action}/"]["post"]["responses"]
        assert _ref(responses["200"]) == "Job" and "400" in responses
    job = schema["components"]["schemas"]["Job"]["properties"]
    assert "pause_requested" in job
    status_enum = schema["components"]["schemas"][job["status"]["allOf"][0]["$ref"].rsplit("/", 1)[-1]]["enum"]
    assert "paused" in status_enum


def test_an_fpga_report_import_answers_an_array_not_a_page(schema) -> None:  # noqa: ANN001
    created = schema["paths"]["/api/v1/fpga-reports/"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["type"] == "array"


def test_an_api_path_no_route_takes_is_a_json_404(alice_api, client) -> None:  # noqa: ANN001
    for path in ("/api/v1/jobs/0.5/", "/api/v1/job-kinds/Inf/", "/api/v1/nothing-here/"):
        response = alice_api.get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/json", path
        assert response.json() == {"detail": "Not found."}
    assert "text/html" in client.get("/no-such-page/")["Content-Type"]  # the pages keep their HTML 404
