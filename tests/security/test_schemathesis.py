"""Bad input, generated: schemathesis reads the running API's OpenAPI document and sends every operation a
bounded number of generated requests, valid and invalid, then sequences of requests that feed one answer's ids
into the next request (the stateful phase).

No answer may be a server error, and every 4xx answer carries a `detail`. The seed changes from run to run and
is printed in the header of the test run; STAGEFLOW_SCHEMATHESIS_SEED=<seed> replays a run.
"""

from __future__ import annotations

from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis

from tests.faults.cluster import Cluster
from tests.seeds import SCHEMATHESIS_SEED as SEED

MAX_EXAMPLES = 25
"""Generated requests per operation."""
STATEFUL_EXAMPLES = 30
"""Sequences, of up to STATEFUL_STEPS requests each."""
STATEFUL_STEPS = 8
STATEFUL_ATTEMPTS = 3


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
    "phases": {"coverage": {"enabled": False}},
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


def no_server_error(case, response) -> None:
    shown = f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:500]} (seed {SEED})"
    assert response.status_code < 500, shown
    if 400 <= response.status_code < 500:
        assert (response.headers.get("content-type") or [""])[0].startswith("application/json"), shown
        body = response.json()
        assert isinstance(body, dict) and body.get("detail"), shown


@api_schema.parametrize()
def test_generated_requests_get_no_server_error_and_4xx_name_the_problem(case, running_api: Cluster):
    no_server_error(case, case.call(base_url=running_api.api_url, headers=running_api.headers, timeout=60))


def test_sequences_of_generated_requests_get_no_server_error(running_api: Cluster):
    """Links between operations are inferred from the document (POST /users → GET /users/{user_id}, …), so a
    sequence reaches real records rather than ids that do not exist. Every answer is kept and checked at the end:
    the API's data grows as the sequences run, and when that steers a sequence away from what hypothesis drew
    for it before, hypothesis stops the run (FlakyStrategyDefinition); the run then goes on from the next seed."""
    answered: list[tuple[str, int]] = []
    server_errors: list[str] = []

    class Sequences(api_schema.as_state_machine()):
        def get_call_kwargs(self, case) -> dict:
            return {"base_url": running_api.api_url, "headers": running_api.headers, "timeout": 60}

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            answered.append((f"{case.method} {case.path}", response.status_code))
            try:
                no_server_error(case, response)
            except AssertionError as error:
                server_errors.append(str(error))

    for attempt in range(STATEFUL_ATTEMPTS):
        Sequences._hypothesis_internal_use_seed = SEED + attempt
        try:
            Sequences.run(settings=hypothesis.settings(
                max_examples=STATEFUL_EXAMPLES, stateful_step_count=STATEFUL_STEPS, deadline=None, database=None,
                suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate],
            ))
        except hypothesis.errors.FlakyStrategyDefinition:
            pass
        if len(answered) >= STATEFUL_EXAMPLES * 2:
            break
    assert server_errors == [], server_errors
    reached = {operation for operation, status in answered if status < 300 and "{" in operation}
    assert len(answered) >= STATEFUL_EXAMPLES * 2 and reached, answered
