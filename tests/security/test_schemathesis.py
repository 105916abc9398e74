"""Bad input, generated: schemathesis reads the running API's OpenAPI document and sends every operation a
bounded number of generated requests, valid and invalid (fixed seed, so a run can be repeated).

No answer may be a server error, and every 4xx answer carries a `detail`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis

from tests.faults.cluster import Cluster

SEED = 20260101
MAX_EXAMPLES = 5


def openapi_document() -> dict:
    """The OpenAPI document the API serves at /openapi.json (the running API's is checked to be the same)."""
    from api.main import create_app
    from models.settings import get_settings

    return create_app(get_settings()).openapi()


DOCUMENT = openapi_document()
api_schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict({
    "seed": SEED,
    "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large", "large_base_example"],
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "no-shrink": True,
                   "with-security-parameters": False, "database": "none"},
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
}))


@pytest.fixture(scope="module")
def running_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The API (uvicorn) with its worker and Temporal server, as separate processes."""
    cluster = Cluster(tmp_path_factory.mktemp("schemathesis"))
    try:
        yield cluster.start()
    finally:
        cluster.close()


def test_the_running_api_serves_this_document(running_api: Cluster):
    import httpx

    assert httpx.get(f"{running_api.api_url}/openapi.json", timeout=30).json() == DOCUMENT


@api_schema.parametrize()
def test_generated_requests_get_no_server_error_and_4xx_name_the_problem(case, running_api: Cluster):
    response = case.call(base_url=running_api.api_url, headers=running_api.headers, timeout=60)
    shown = f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:500]}"
    assert response.status_code < 500, shown
    if 400 <= response.status_code < 500:
        assert (response.headers.get("content-type") or [""])[0].startswith("application/json"), shown
        body = response.json()
        assert isinstance(body, dict) and body.get("detail"), shown
