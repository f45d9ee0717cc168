"""Bad input is refused whole: schema-driven fuzzing of the served OpenAPI spec (schemathesis).

Every generated request, valid or malformed, must get an answer below 500. Jobs the fuzzer manages
to create are valid by construction (the service validated them); they are cancelled afterwards so the
worker is free for the other tests.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.stack import ApiClient, Stack

pytestmark = pytest.mark.e2e

FUZZER = ("fuzzer", "fuzzer-pass-1")


@pytest.fixture(scope="module")
def fuzz_client(pg_stack: Stack):  # noqa: ANN201
    pg_stack.create_user(*FUZZER)
    client = ApiClient(pg_stack.base_url, *FUZZER)
    yield client
    for job in client.get("/api/v1/jobs/?page_size=1000").json()["results"]:
        if job["status"] in ("queued", "running"):
            client.post(f"/api/v1/jobs/{job['id']}/cancel/")


def _served_schema() -> dict:
    """The same document /api/schema/ serves, generated in-process so pytest can collect per operation."""
    import json

    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(_served_schema()).exclude(path_regex=r"^/api/v1/auth/token/$")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_gets_a_server_error(case, pg_stack: Stack, fuzz_client: ApiClient) -> None:  # noqa: ANN001
    response = case.call(base_url=pg_stack.base_url, headers=dict(fuzz_client.session.headers), timeout=30)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
