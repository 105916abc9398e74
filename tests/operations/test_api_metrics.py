"""The API's own metrics, in-process: each app keeps its own registry (apps made one after another count apart), a
simulation that runs counts once as done, one refused before it starts counts nothing, and requests count under their
route pattern."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from tests.crm import automate, ok, pipeline, user
from tests.operations.support import summed
from tests.stacks import Stack, stack_settings


async def samples(stack: Stack) -> list[tuple[str, dict[str, str], float]]:
    text = (await stack.anon.get("/metrics")).text
    return [(sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


async def test_simulations_and_requests_are_counted_in_the_apps_own_registry(stack: Stack, tmp_path):
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "WON"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "note", "type": "add_timeline_entry", "delay": "1d", "settings": {"text": "a day later"}},
    ]}})
    body = {"pipeline_id": flow["id"], "item": {"title": "Sofa", "responsible_id": manager["id"]}, "horizon": "3d"}
    answer = ok(await stack.http.post("/simulations", json=body))
    assert [entry for entry in answer["timeline"] if entry["kind"] == "rule_done"]
    refused = await stack.http.post("/simulations", json={**body, "pipeline_id": 999_999})
    assert refused.status_code in (404, 422), refused.text

    counted = await samples(stack)
    assert summed(counted, "stageflow_simulations_total", "outcome") == {"done": 1}
    requests = summed(counted, "stageflow_http_requests_total", "route", "method", "status")
    assert requests[("/simulations", "POST", "200")] == 1
    assert requests[("/pipelines/{pipeline_id}/automation", "PUT", "200")] == 1
    assert requests[("/simulations", "POST", str(refused.status_code))] == 1

    other = create_app(stack_settings(tmp_path / "other"), temporal_client=stack.client)
    assert other.state.metrics.registry is not stack.app.state.metrics.registry
    labels = {"route": "/simulations", "method": "POST", "status": "200"}
    assert stack.app.state.metrics.registry.get_sample_value("stageflow_http_requests_total", labels) == 1
    assert other.state.metrics.registry.get_sample_value("stageflow_http_requests_total", labels) is None
