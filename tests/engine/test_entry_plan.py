"""The step that enters a stage plans the entry and starts its workflow with the plan as its input: the entry's
history (what the Temporal UI shows) begins with its rules, with no step to load them and no version markers, and
the item's workflow starts no child workflow."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import datetime, timezone

from temporalio.testing import ActivityEnvironment

from activities.steps import WorkerActivities
from activities.rules import CUSTOM_RULES, RULE_TYPES, rule_types
from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from tests.engine.test_rules_together import local_activities
from workflows.types import EnterCall


def _markers(history: dict) -> list[str]:
    return [event["markerRecordedEventAttributes"]["markerName"] for event in history["events"]
            if "markerRecordedEventAttributes" in event]


def _input(history: dict) -> dict:
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    return json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))


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
    # NEW's one rule is due at once and only touches the database: the step that entered NEW ran it, and no workflow
    # runs that entry; PAID's entry waits a day for "later", so a workflow runs it, started with its plan.
    assert not [run async for run in stack.client.list_workflows(f"WorkflowId = 'deal-{item['id']}/entry-1'")]
    changes = await timeline(stack.http, item["id"], kind="stage_changed")
    assert [change["data"].get("workflow") for change in changes] == [False, None]
    second = await _history(stack, f"deal-{item['id']}/entry-2")
    # "later" is offered to its due moment, which no other entry waits for: the entry keeps its own timer.
    assert sorted(local_activities(second)) == [
        ("hand_over", f"later: offered to the moment {_input(second)['plan']['rules'][1]['due']}"),
        ("rule.add_timeline_entry", "thanks (add_timeline_entry)")]
    assert "core_patch" not in _markers(second)
    assert (_input(second)["stage"], [rule["name"] for rule in _input(second)["plan"]["rules"]]) == (
        "PAID", ["thanks", "later"])
    item_history = await _history(stack, f"deal-{item['id']}")
    assert "core_patch" not in _markers(item_history)
    assert local_activities(item_history) == [("enter_stage", "enter NEW"), ("match_trigger", "match payment_received")]
    assert not [event for event in item_history["events"] if "startChildWorkflowExecutionInitiatedEventAttributes" in event]
    scheduled = [entry["rule_name"] for entry in await timeline(stack.http, item["id"], kind="rule_scheduled")]
    assert sorted(scheduled) == ["hello", "later", "thanks"]
    pending = ok(await stack.http.get(f"/deals/{item['id']}/pending"))
    assert [rule["rule"] for rule in pending] == ["later"]


async def test_search_attributes_show_the_stage_from_the_start_and_follow_moves(stack):
    """What an admin searches the Temporal UI by: the item's workflow shows its stage from its first moment (it is
    started with it) and each move's; each entry with a workflow shows its own stage."""
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "PAID"])
    later = {"name": "later", "type": "add_timeline_entry", "delay": "1d", "settings": {"text": "later"}}
    await automate(stack.http, flow["id"], {"NEW": {"rules": [later]}, "PAID": {
        "rules": [later], "triggers": [{"name": "paid", "type": "payment_received"}]}})
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


async def test_an_enter_step_run_again_starts_its_entry_once_even_after_the_entry_finished(stack):
    """The step that enters a stage may run again (its workflow task lost, a worker killed after it): it finds the
    stage entered and the entry's workflow started, or already finished, and starts no second run of it."""
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "NEXT"])
    await automate(stack.http, flow["id"], {"NEXT": {"rules": [
        {"name": "there", "type": "add_timeline_entry", "settings": {"text": "Arrived"}},
    ]}})
    item = await deal(stack.http, flow["id"], manager["id"])
    engine = WorkerActivities(stack.deps, RULE_TYPES, CUSTOM_RULES, rule_types)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, task_queue=stack.settings.temporal_task_queue, is_local=True)
    call = EnterCall(item_id=item["id"], entity="deal", stage="NEXT", previous_stage="NEW", entry_no=2,
                     at=datetime.now(timezone.utc), start_entry=True, search_attributes=True)
    started = await env.run(engine.stages.enter_stage, call)
    assert started == f"deal-{item['id']}/entry-2"
    await stack.client.get_workflow_handle(started).result()
    assert await env.run(engine.stages.enter_stage, call) == started

    runs = [run.run_id async for run in stack.client.list_workflows(f"WorkflowId = '{started}'")]
    assert len(runs) == 1
    story = await timeline(stack.http, item["id"])
    assert [entry["text"] for entry in story if entry["kind"] == "comment"] == ["Arrived"]
    assert [entry["data"]["to"] for entry in story if entry["kind"] == "stage_changed"] == ["NEW", "NEXT"]
    assert [entry["rule_name"] for entry in story if entry["kind"] == "rule_scheduled"] == ["there"]
