"""Bad input is refused whole, and the schema tells the truth: schema-driven fuzzing of the served OpenAPI spec
(schemathesis).

Every generated request, valid or malformed, must get an answer below 500, with a status code the operation
documents, in a media type it documents, and a body that matches the documented schema for that status. Jobs
the fuzzer manages to create are valid by construction (the service validated them); they are cancelled
afterwards so the worker is free for the other tests.
"""

from __future__ import annotations

import itertools

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
    url: str | None = f"{pg_stack.base_url}/api/v1/jobs/?page_size=500"
    while url:  # every page: the API caps one at 500 jobs
        page = client.session.get(url, timeout=30).json()
        for job in page["results"]:
            if job["status"] in ("queued", "running", "paused"):
                client.post(f"/api/v1/jobs/{job['id']}/cancel/")
        url = page["next"]


@pytest.fixture(scope="module")
def real_ids(fuzz_client: ApiClient) -> dict[str, str]:
    """Objects the fuzzer owns, so operations on an ``{id}`` get answers other than 404 to check: a finished
    job (its detail, trials, metrics, artifacts; pause, resume and cancel refused as a finished job's are), one of
    its artifacts, and a kind's name."""
    from search_spaces.registry import get_kind

    job = fuzz_client.submit("mlp_sweep", get_kind("mlp_sweep").tiny_config, name="fuzz target")
    fuzz_client.wait_status(job["id"], {"succeeded"}, timeout=180)
    artifacts = fuzz_client.get(f"/api/v1/jobs/{job['id']}/artifacts/").json()["results"]
    return {"jobs": str(job["id"]), "artifacts": str(artifacts[0]["id"]), "job-kinds": "mlp_sweep"}


def _served_schema() -> dict:
    """The same document /api/schema/ serves, generated in-process so pytest can collect per operation."""
    import json

    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


# The token endpoints are left out: DELETE revokes the very token the fuzzer calls with (every later answer a 401),
# and POST with generated passwords trips the per-account login throttle the other tests log in through. Their
# behaviour (throttle, 429 with Retry-After, revocation, expiry) is tested in tests/service/test_auth_hardening.py.
schema = schemathesis.openapi.from_dict(_served_schema()).exclude(path_regex=r"^/api/v1/auth/token/$")
_TURN = itertools.count()


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_answer_is_below_500_and_as_documented(
    case,  # noqa: ANN001
    pg_stack: Stack,
    fuzz_client: ApiClient,
    real_ids: dict[str, str],
) -> None:
    # Every other example of an operation on an {id} takes a real one (generated ids are almost always 404s, so
    # the 200 and 400 bodies would go unchecked); a DELETE keeps its generated id, so the objects stay for the rest.
    resource = case.operation.path.split("/")[3]
    if "{id}" in case.operation.path and case.method.upper() != "DELETE" and resource in real_ids and next(_TURN) % 2:
        case.path_parameters = {**(case.path_parameters or {}), "id": real_ids[resource]}
    case.call_and_validate(
        base_url=pg_stack.base_url, headers=dict(fuzz_client.session.headers), checks=CHECKS, timeout=30
    )
