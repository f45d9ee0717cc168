"""Bad input is refused whole, and the schema tells the truth: schema-driven fuzzing of the served OpenAPI spec
(schemathesis).

Every generated request, valid or malformed, must get an answer below 500, with a status code the operation
documents, in a media type it documents, and a body that matches the documented schema for that status. Jobs
the fuzzer manages to create are valid by construction (the service validated them); they are cancelled
afterwards so the worker is free for the other tests.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.stack import ApiClient, Stack

pytestmark = pytest.mark.e2e

FUZZER = ("fuzzer", "fuzzer-pass-1")


@pytest.fixture(scope="module")
def fuzz_client(pg_stack: Stack):  # noqa: ANN201
    pg_stack.create_user(*FUZZER)
    client = ApiClient(pg_stack.base_url, *FUZZER)
    yield client
    for job in client.get("/api/v1/jobs/?page_size=1000").json()["results"]:
        if job["status"] in ("queued", "running", "paused"):
            client.post(f"/api/v1/jobs/{job['id']}/cancel/")


def _served_schema() -> dict:
    """The same document /api/schema/ serves, generated in-process so pytest can collect per operation."""
    import json

    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(_served_schema()).exclude(path_regex=r"^/api/v1/auth/token/$")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_answer_is_below_500_and_as_documented(case, pg_stack: Stack, fuzz_client: ApiClient) -> None:  # noqa: ANN001
    case.call_and_validate(
        base_url=pg_stack.base_url, headers=dict(fuzz_client.session.headers), checks=CHECKS, timeout=30
    )
