"""Entries the step that enters their stage finishes itself (engine generation 3): a stage without rules, or whose rules
are all due at once and only touch the database, runs them as the item enters it and starts no workflow for the
entry; an entry whose rules do not all end there gets its workflow, and each rule still takes effect once."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import datetime, timezone

from temporalio.testing import ActivityEnvironment

from activities.rules import CUSTOM_RULES, RULE_TYPES, rule_types
from activities.steps import WorkerActivities
from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from workflows.item import ItemWorkflow
from workflows.types import EnterCall, Entered, entry_workflow_id, item_workflow_id

HELLO = {"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hello {{Deal.Title}}"}}
WELCOME = {"name": "welcome", "type": "add_timeline_entry", "settings": {"text": "Welcome"}}
BIG = {"name": "big", "type": "add_timeline_entry", "settings": {"text": "A big one"},
       "condition": {"all": [{"field": "Deal.Amount", "op": ">", "value": 1000000}]}}
LATER = {"name": "later", "type": "add_timeline_entry", "delay": "1d", "settings": {"text": "later"}}


class _Unreachable:
    """A Temporal client whose every use fails, as when the service is away."""

    def __getattr__(self, name: str):
        raise ConnectionError(f"Temporal is away ({name})")


async def _workflows(stack, workflow_id: str) -> list[str]:
    return [run.run_id async for run in stack.client.list_workflows(f"WorkflowId = '{workflow_id}'")]


async def _history(stack, workflow_id: str) -> list[dict]:
    return json.loads((await stack.client.get_workflow_handle(workflow_id).fetch_history()).to_json())["events"]


def _step_answers(events: list[dict], step: str) -> list[dict]:
    """What each local activity `step` in a history answered, as the Temporal UI shows its marker."""
    answers = []
    for event in events:
        marker = event.get("markerRecordedEventAttributes") or {}
        details = marker.get("details") or {}
        if marker.get("markerName") != "core_local_activity" or "result" not in details:
            continue
        if json.loads(base64.b64decode(details["data"]["payloads"][0]["data"]))["activity_type"] == step:
            answers.append(json.loads(base64.b64decode(details["result"]["payloads"][0]["data"])))
    return answers


def _commands(events: list[dict], attributes: str) -> list[dict]:
    return [event[attributes] for event in events if attributes in event]


async def _sofa(stack, automation: dict) -> tuple[dict, dict]:
    """A pipeline NEW → NEXT with `automation`, and a deal "Sofa" in NEW."""
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "NEXT"])
    await automate(stack.http, flow["id"], automation)
    return flow, await deal(stack.http, flow["id"], manager["id"], title="Sofa")


def _enter_step(stack, item_id: int):
    """The step that enters NEXT as entry 2, run as the item workflow of engine generation 3 runs it."""
    engine = WorkerActivities(stack.deps, RULE_TYPES, CUSTOM_RULES, rule_types)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, task_queue=stack.settings.temporal_task_queue, is_local=True)
    call = EnterCall(item_id=item_id, entity="deal", stage="NEXT", previous_stage="NEW", entry_no=2,
                     at=datetime.now(timezone.utc), start_entry=True, search_attributes=True,
                     finish_entry_at_entering=True)
    return lambda: env.run(engine.stages.enter_stage, call)


async def test_an_entry_whose_rules_all_run_at_once_has_no_workflow_and_leaving_it_cancels_nothing(stack):
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "NEXT"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [HELLO, WELCOME, BIG]}, "NEXT": {"rules": [LATER]}})
    item = await deal(stack.http, flow["id"], manager["id"], title="Sofa")

    # The rules took effect before the API answered: they ran in the step that entered NEW.
    story = await timeline(stack.http, item["id"])
    assert [entry["text"] for entry in story if entry["kind"] == "comment"] == ["Hello Sofa", "Welcome"]
    outcomes = {entry["rule_name"]: entry["kind"] for entry in story if entry["kind"] in ("rule_done", "rule_skipped")}
    assert outcomes == {"hello": "rule_done", "welcome": "rule_done", "big": "rule_skipped"}
    assert [entry["data"].get("workflow") for entry in story if entry["kind"] == "stage_changed"] == [False]
    version = ok(await stack.http.get(f"/pipelines/{flow['id']}/automation"))["version"]
    assert {entry["data"].get("version") for entry in story if entry["kind"] in ("rule_done", "rule_skipped")} == {
        version}
    assert await _workflows(stack, entry_workflow_id("deal", item["id"], 1)) == []
    # The entry's story in the Temporal UI: the item workflow's `enter NEW` step, which answers that no workflow runs it.
    assert _step_answers(await _history(stack, item_workflow_id("deal", item["id"])), "enter_stage") == [
        {"workflow_id": entry_workflow_id("deal", item["id"], 1), "running": False}]
    assert ok(await stack.http.get(f"/deals/{item['id']}/pending")) == []
    # No workflow is asked for it: with the API's Temporal client unable to answer, the entry still has nothing pending.
    stack.app.state.temporal_client, working = _Unreachable(), stack.app.state.temporal_client
    try:
        assert ok(await stack.http.get(f"/deals/{item['id']}/pending")) == []
    finally:
        stack.app.state.temporal_client = working

    # A field change, an archive and a restore tell and cancel no entry workflow; the item goes on as before.
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"title": "Oak sofa"}))
    ok(await stack.http.post(f"/deals/{item['id']}/archive"))
    ok(await stack.http.post(f"/deals/{item['id']}/restore"))
    moved = ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "NEXT"}))
    assert moved["stage"] == "NEXT"
    events = await _history(stack, item_workflow_id("deal", item["id"]))
    assert _commands(events, "requestCancelExternalWorkflowExecutionInitiatedEventAttributes") == []
    assert _commands(events, "signalExternalWorkflowExecutionInitiatedEventAttributes") == []
    story = await timeline(stack.http, item["id"])
    assert not [entry for entry in story if entry["kind"] == "rule_cancelled"]
    assert [entry["text"] for entry in story if entry["kind"] == "comment"] == ["Hello Sofa", "Welcome"]
    pending = ok(await stack.http.get(f"/deals/{item['id']}/pending"))
    assert [rule["rule"] for rule in pending] == ["later"]
    state = await stack.client.get_workflow_handle(item_workflow_id("deal", item["id"])).query(ItemWorkflow.current)
    assert (state.stage, state.entry_no, state.entry_running) == ("NEXT", 2, True)


async def test_an_entry_whose_rules_do_not_all_end_at_once_gets_its_workflow_and_each_rule_runs_once(stack):
    """`advance` asks for a move, which the entry's workflow hands to the item's: the entry is not finished as the
    item enters NEW, its workflow runs both rules, `hello` once."""
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "NEXT"])
    advance = {"name": "advance", "type": "change_stage", "settings": {"stage": "NEXT"}}
    await automate(stack.http, flow["id"], {"NEW": {"rules": [HELLO, advance]}})
    item = await deal(stack.http, flow["id"], manager["id"], title="Sofa")

    async def in_next() -> bool:
        return ok(await stack.http.get(f"/deals/{item['id']}"))["stage"] == "NEXT"

    await eventually(in_next)
    story = await timeline(stack.http, item["id"])
    assert [entry["text"] for entry in story if entry["kind"] == "comment"] == ["Hello Sofa"]
    assert sorted(entry["rule_name"] for entry in story if entry["kind"] == "rule_done") == ["advance", "hello"]
    assert [entry["data"].get("workflow") for entry in story if entry["kind"] == "stage_changed"] == [None, False]
    assert len(await _workflows(stack, entry_workflow_id("deal", item["id"], 1))) == 1
    assert await _workflows(stack, entry_workflow_id("deal", item["id"], 2)) == []


async def test_the_step_run_again_finishes_its_entry_once(stack):
    """The step that enters a stage may run again (its workflow task lost): it finds the entry finished, answers
    as the first time, and runs no rule twice."""
    flow, item = await _sofa(stack, {"NEXT": {"rules": [HELLO, WELCOME]}})
    enter_next = _enter_step(stack, item["id"])
    expected = Entered(workflow_id=entry_workflow_id("deal", item["id"], 2), running=False)
    assert await enter_next() == expected
    assert await enter_next() == expected
    story = await timeline(stack.http, item["id"])
    assert [entry["text"] for entry in story if entry["kind"] == "comment"] == ["Hello Sofa", "Welcome"]
    assert [entry["data"]["to"] for entry in story if entry["kind"] == "stage_changed"] == ["NEW", "NEXT"]
    assert await _workflows(stack, expected.workflow_id) == []


async def test_a_step_run_again_answers_as_the_step_that_made_the_stage_change_chose(stack):
    """The first run of the step started the entry's workflow (NEXT waited a day for `later`); by the time the step
    runs again, NEXT's rules are all due at once. The second run must not finish the entry too: the workflow that
    runs it stays the one the item workflow knows of."""
    flow, item = await _sofa(stack, {"NEXT": {"rules": [HELLO, LATER]}})
    enter_next = _enter_step(stack, item["id"])
    started = Entered(workflow_id=entry_workflow_id("deal", item["id"], 2), running=True)
    assert await enter_next() == started
    await automate(stack.http, flow["id"], {"NEXT": {"rules": [HELLO, WELCOME]}})
    assert await enter_next() == started
    assert len(await _workflows(stack, started.workflow_id)) == 1
    story = await timeline(stack.http, item["id"])
    assert [entry["data"].get("workflow") for entry in story if entry["kind"] == "stage_changed"] == [False, None]
    assert await eventually(lambda: _comments(stack, item["id"], ["Hello Sofa"]))


async def _comments(stack, item_id: int, expected: list[str]) -> bool:
    return [entry["text"] for entry in await timeline(stack.http, item_id, kind="comment")] == expected


async def test_a_rule_whose_placeholder_had_no_value_says_so_on_its_done_entry(stack):
    greet = {"name": "greet", "type": "add_timeline_entry", "settings": {"text": "Say hello to {{Deal.Contact.Name}}"}}
    flow, alone = await _sofa(stack, {"NEW": {"rules": [greet]}})
    contact = ok(await stack.http.post("/contacts", json={"name": "Anna Nowak"}), 201)
    manager = ok(await stack.http.get("/users"))[0]
    met = await deal(stack.http, flow["id"], manager["id"], title="Chair", contact_id=contact["id"])

    [done] = await timeline(stack.http, alone["id"], kind="rule_done")
    assert done["text"].endswith("done; these placeholders had no value: Deal.Contact.Name")
    assert done["data"]["empty_placeholders"] == ["Deal.Contact.Name"]
    assert "Say hello to " in [entry["text"] for entry in await timeline(stack.http, alone["id"], kind="comment")]
    [fine] = await timeline(stack.http, met["id"], kind="rule_done")
    assert "placeholders" not in fine["text"] and "empty_placeholders" not in fine["data"]
    assert "Say hello to Anna Nowak" in [entry["text"] for entry in await timeline(stack.http, met["id"], kind="comment")]
