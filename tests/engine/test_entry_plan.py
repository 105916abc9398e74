"""An entry's plan is made in the step that enters its stage and travels in the entry's input: the entry's history
(what the Temporal UI shows) begins with its rules, with no step to load them and no version markers."""

from __future__ import annotations

import base64
import json

from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from tests.engine.test_rules_together import local_activities


def _markers(history: dict) -> list[str]:
    return [event["markerRecordedEventAttributes"]["markerName"] for event in history["events"]
            if "markerRecordedEventAttributes" in event]


def _child_inputs(history: dict) -> list[dict]:
    inputs = []
    for event in history["events"]:
        started = event.get("startChildWorkflowExecutionInitiatedEventAttributes")
        if started:
            inputs.append(json.loads(base64.b64decode(started["input"]["payloads"][0]["data"])))
    return inputs


async def _history(stack, workflow_id: str) -> dict:
    return json.loads((await stack.client.get_workflow_handle(workflow_id).fetch_history()).to_json())


async def test_entries_start_with_their_plan_and_run_their_rules_first(stack):
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "PAID"])
    await automate(stack.http, flow["id"], {
        "NEW": {"rules": [{"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hello"}}]},
        "PAID": {"rules": [
            {"name": "thanks", "type": "add_timeline_entry", "settings": {"text": "Thanks"}},
            {"name": "later", "type": "add_timeline_entry", "delay": "1d", "settings": {"text": "later"}},
        ], "triggers": [{"name": "paid", "type": "payment_received"}]},
    })
    item = await deal(stack.http, flow["id"], manager["id"])
    await eventually(lambda: timeline(stack.http, item["id"], kind="comment"))
    ok(await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 10}), 202)

    async def thanked() -> bool:
        return len(await timeline(stack.http, item["id"], kind="comment")) == 2

    await eventually(thanked)
    first = await _history(stack, f"deal-{item['id']}/entry-1")
    assert [kind for kind, _ in local_activities(first)] == ["rule.add_timeline_entry"]
    assert _markers(first) == ["core_local_activity"]
    second = await _history(stack, f"deal-{item['id']}/entry-2")
    assert [summary for _, summary in local_activities(second)] == ["thanks (add_timeline_entry)"]
    assert "core_patch" not in _markers(second)

    item_history = await _history(stack, f"deal-{item['id']}")
    assert "core_patch" not in _markers(item_history)
    plans = [(child["stage"], [rule["name"] for rule in child["plan"]["rules"]]) for child in _child_inputs(item_history)]
    assert plans == [("NEW", ["hello"]), ("PAID", ["thanks", "later"])]
    scheduled = [entry["rule_name"] for entry in await timeline(stack.http, item["id"], kind="rule_scheduled")]
    assert sorted(scheduled) == ["hello", "later", "thanks"]
    pending = ok(await stack.http.get(f"/deals/{item['id']}/pending"))
    assert [rule["rule"] for rule in pending] == ["later"]


async def test_search_attributes_show_the_stage_from_the_start_and_follow_moves(stack):
    """What an admin searches the Temporal UI by: the item's workflow shows its stage from its first moment (it is
    started with it) and each move's; each entry shows its own stage."""
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "PAID"])
    await automate(stack.http, flow["id"], {"PAID": {"triggers": [{"name": "paid", "type": "payment_received"}]}})
    item = await deal(stack.http, flow["id"], manager["id"])

    async def found(stage: str, expected: set[str]) -> set[str] | None:
        query = f"StageflowItemId = '{item['id']}' AND StageflowEntity = 'deal' AND StageflowStage = '{stage}'"
        ids = {run.id async for run in stack.client.list_workflows(query)}
        return ids if ids == expected else None

    assert await eventually(lambda: found("NEW", {f"deal-{item['id']}", f"deal-{item['id']}/entry-1"}))
    item_history = await _history(stack, f"deal-{item['id']}")
    upserts = [e for e in item_history["events"] if "upsertWorkflowSearchAttributesEventAttributes" in e]
    assert upserts == []
    ok(await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 10}), 202)
    assert await eventually(lambda: found("PAID", {f"deal-{item['id']}", f"deal-{item['id']}/entry-2"}))
    assert await eventually(lambda: found("NEW", {f"deal-{item['id']}/entry-1"}))
