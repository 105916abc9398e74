"""Moves and triggers through the HTTP API on the local dev server."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import is_cancelled_exception
from temporalio.testing import ActivityEnvironment

from activities.steps import WorkerActivities
from activities.rules import CUSTOM_RULES, RULE_TYPES, rule_types
from tests.crm import automate, deal, eventually, kinds, ok, pipeline, timeline, user
from activities.worker import build_worker
from workflows.entry import StageEntryWorkflow
from workflows.item import ItemWorkflow
from workflows.types import EnterCall, EntryInput, ItemEvent, MatchCall, MatchResult, entry_workflow_id, item_workflow_id

STAGES = ["NEW", "PREPARE", "INVOICE", "PAID", "WON"]


async def _stage(stack, item_id: int) -> str:
    return ok(await stack.http.get(f"/deals/{item_id}"))["stage"]


async def _setup(stack, stages_automation: dict) -> tuple[dict, dict]:
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, STAGES)
    await automate(stack.http, flow["id"], stages_automation)
    return flow, manager


async def test_manual_move_records_the_change_and_starts_the_new_stage_rules(stack):
    flow, manager = await _setup(stack, {
        "PREPARE": {"rules": [{"name": "note", "type": "add_timeline_entry",
                               "settings": {"text": "Prepare {{Deal.Title}}"}}]},
    })
    item = await deal(stack.http, flow["id"], manager["id"])
    assert item["stage"] == "NEW"
    moved = ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "PREPARE", "as_user_id": manager["id"]}))
    assert moved["stage"] == "PREPARE"

    comments = await eventually(lambda: _kind(stack, item["id"], "comment"))
    assert [entry["text"] for entry in comments] == ["Prepare Sofa for Anna"]
    changes = await timeline(stack.http, item["id"], kind="stage_changed")
    assert [(entry["data"].get("from"), entry["data"]["to"]) for entry in changes] == [(None, "NEW"), ("NEW", "PREPARE")]
    assert changes[1]["author_id"] == manager["id"]


async def _kind(stack, item_id: int, kind: str) -> list[dict]:
    return await timeline(stack.http, item_id, kind=kind)


async def test_move_to_the_current_or_an_unknown_stage_is_refused(stack):
    flow, manager = await _setup(stack, {})
    item = await deal(stack.http, flow["id"], manager["id"])
    same = await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "NEW"})
    assert same.status_code == 409
    unknown = await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "NOPE"})
    assert unknown.status_code == 422
    assert "stage" in unknown.text
    assert await _stage(stack, item["id"]) == "NEW"
    assert len(await _kind(stack, item["id"], "stage_changed")) == 1


async def test_payment_trigger_moves_forward_once_even_when_the_event_arrives_twice(stack):
    flow, manager = await _setup(stack, {
        "INVOICE": {"rules": [], "triggers": [{"name": "paid", "type": "payment_received"}]},
    })
    item = await deal(stack.http, flow["id"], manager["id"])
    headers = {"Idempotency-Key": "payment-42"}
    for _ in range(2):
        response = await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 100}, headers=headers)
        assert response.status_code in (200, 202)
    await eventually(lambda: _moved_to(stack, item["id"], "INVOICE"))
    changes = await _kind(stack, item["id"], "stage_changed")
    assert [entry["data"]["to"] for entry in changes] == ["NEW", "INVOICE"]
    assert changes[1]["data"]["trigger"] == "paid"
    assert changes[1]["author_id"] == manager["id"]


async def _moved_to(stack, item_id: int, stage: str) -> bool:
    return await _stage(stack, item_id) == stage


async def test_triggers_move_forward_only_unless_allowed_back(stack):
    flow, manager = await _setup(stack, {
        "NEW": {"triggers": [{"name": "reopen", "type": "custom", "filter": {"event": "reopened"}}]},
        "PREPARE": {"triggers": [{"name": "back", "type": "custom", "filter": {"event": "rework"},
                                  "allow_backwards": True}]},
    })
    item = await deal(stack.http, flow["id"], manager["id"], stage="INVOICE")
    ok(await stack.http.post(f"/deals/{item['id']}/events", json={"type": "reopened"}), 202)
    ok(await stack.http.post(f"/deals/{item['id']}/events", json={"type": "rework"}), 202)
    await eventually(lambda: _moved_to(stack, item["id"], "PREPARE"))
    changes = await _kind(stack, item["id"], "stage_changed")
    assert [entry["data"]["to"] for entry in changes] == ["INVOICE", "PREPARE"]


async def test_first_matching_trigger_after_the_current_stage_wins(stack):
    flow, manager = await _setup(stack, {
        "NEW": {"triggers": [{"name": "early", "type": "payment_received", "allow_backwards": True}]},
        "PAID": {"triggers": [{"name": "paid", "type": "payment_received"}]},
        "WON": {"triggers": [{"name": "big", "type": "payment_received", "filter": {"min_amount": 1000}}]},
    })
    item = await deal(stack.http, flow["id"], manager["id"], stage="PREPARE")
    ok(await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 5000}), 202)
    await eventually(lambda: _moved_to(stack, item["id"], "PAID"))
    ok(await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 5000}), 202)
    await eventually(lambda: _moved_to(stack, item["id"], "WON"))
    ok(await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 10}), 202)
    await eventually(lambda: _moved_to(stack, item["id"], "NEW"))
    changes = await _kind(stack, item["id"], "stage_changed")
    assert [entry["data"]["trigger"] for entry in changes[1:]] == ["paid", "big", "early"]


async def test_a_rule_changing_the_item_does_not_fire_triggers(stack):
    flow, manager = await _setup(stack, {
        "NEW": {"rules": [{"name": "rename", "type": "update_fields", "settings": {"fields": {"title": "Renamed"}}}]},
        "PREPARE": {"triggers": [{"name": "changed", "type": "field_changed", "filter": {"fields": ["title"]}}]},
    })
    item = await deal(stack.http, flow["id"], manager["id"])
    await eventually(lambda: _kind(stack, item["id"], "rule_done"))
    await asyncio.sleep(0.5)
    assert ok(await stack.http.get(f"/deals/{item['id']}"))["title"] == "Renamed"
    assert await _stage(stack, item["id"]) == "NEW"


async def test_change_stage_rule_moves_the_item_and_cancels_nothing_twice(stack):
    flow, manager = await _setup(stack, {
        "NEW": {"rules": [
            {"name": "advance", "type": "change_stage", "settings": {"stage": "PREPARE"}},
            {"name": "later", "type": "add_timeline_entry", "delay": "1h", "settings": {"text": "too late"}},
        ]},
    })
    item = await deal(stack.http, flow["id"], manager["id"])
    await eventually(lambda: _moved_to(stack, item["id"], "PREPARE"))
    await eventually(lambda: _kind(stack, item["id"], "rule_cancelled"))
    entries = await timeline(stack.http, item["id"])
    assert kinds(entries, "later") == ["rule_scheduled", "rule_cancelled"]
    assert kinds(entries, "advance") == ["rule_scheduled", "rule_done"]


async def test_fifty_concurrent_moves_and_events_end_in_an_explained_sequence(stack):
    rules = [{"name": "mark", "type": "add_timeline_entry", "settings": {"text": "in {{Deal.Stage}}"}},
             {"name": "late", "type": "add_timeline_entry", "delay": "1h", "settings": {"text": "late"}}]
    flow, manager = await _setup(stack, {
        code: {"rules": rules, "triggers": [{"name": f"to-{code}", "type": "custom", "filter": {"event": f"go-{code.lower()}"},
                                             "allow_backwards": True}]}
        for code in STAGES
    })
    item = await deal(stack.http, flow["id"], manager["id"])

    async def act(n: int) -> int:
        target = STAGES[n % len(STAGES)]
        if n % 2:
            response = await stack.http.post(f"/deals/{item['id']}/events", json={"type": f"go-{target.lower()}"})
        else:
            response = await stack.http.post(f"/deals/{item['id']}/move", json={"stage": target})
        return response.status_code

    codes = await asyncio.gather(*(act(n) for n in range(50)))
    # 409: already in that stage; 503: the server's limit of in-flight updates per workflow was reached
    assert set(codes) <= {200, 202, 409, 503}, codes
    assert codes.count(200) + codes.count(202) >= 25, codes

    async def settled() -> list[dict] | None:
        entries = await timeline(stack.http, item["id"])
        changes = [entry for entry in entries if entry["kind"] == "stage_changed"]
        last_entry = changes[-1]["entry_no"]
        finished = {(entry["entry_no"], entry["rule_name"]) for entry in entries
                    if entry["kind"] in ("rule_done", "rule_cancelled", "rule_skipped")}
        expected = {(entry_no, name) for entry_no in range(1, last_entry) for name in ("mark", "late")}
        return entries if expected <= finished else None

    entries = await eventually(settled, timeout=60)
    changes = [entry for entry in entries if entry["kind"] == "stage_changed"]
    told = [(entry["entry_no"], entry["at"], entry["id"], entry["data"].get("from"), entry["data"]["to"])
            for entry in changes]
    assert [entry["entry_no"] for entry in changes] == list(range(1, len(changes) + 1)), told
    for before, after in zip(changes, changes[1:]):
        assert after["data"]["from"] == before["data"]["to"] != after["data"]["to"]
    assert ok(await stack.http.get(f"/deals/{item['id']}"))["stage"] == changes[-1]["data"]["to"]
    for entry_no in range(1, changes[-1]["entry_no"]):
        outcomes = [entry["kind"] for entry in entries if entry["entry_no"] == entry_no and entry.get("rule_name") == "late"]
        marks = [entry["kind"] for entry in entries if entry["entry_no"] == entry_no and entry.get("rule_name") == "mark"]
        assert marks.count("rule_done") + marks.count("rule_cancelled") == 1, (entry_no, marks)
        if outcomes == ["rule_cancelled"]:
            # The item left before the entry loaded its rules: none was scheduled, each is cancelled once.
            assert marks == ["rule_cancelled"], (entry_no, marks)
        else:
            assert outcomes == ["rule_scheduled", "rule_cancelled"], (entry_no, outcomes)


async def test_a_trigger_step_run_again_after_a_lost_workflow_task_keeps_its_first_answer(stack):
    """The step that matches a trigger and enters its stage may run twice when its workflow task is lost; the
    second run must answer as the first did, though the item's data (here its stage) has changed since."""
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "PAID"])
    await automate(stack.http, flow["id"], {"PAID": {"triggers": [{
        "name": "paid", "type": "payment_received",
        "condition": {"all": [{"field": "Deal.Stage", "op": "==", "value": "NEW"}]},
    }]}})
    item = await deal(stack.http, flow["id"], manager["id"])
    engine = WorkerActivities(stack.deps, RULE_TYPES, CUSTOM_RULES, rule_types)
    call = MatchCall(
        item_id=item["id"], entity="deal", pipeline_id=flow["id"], stage="NEW",
        event=ItemEvent(type="payment_received", data={"amount": 5}, event_id="payment-1"), at=datetime.now(timezone.utc),
        enter_entry_no=2,
    )
    first = await engine.stages.match_trigger(call)
    again = await engine.stages.match_trigger(call)
    assert first == again == MatchResult(stage="PAID", trigger="paid", entered=True)
    changes = [entry for entry in await timeline(stack.http, item["id"]) if entry["kind"] == "stage_changed"]
    assert [(entry["data"]["to"], entry["entry_no"]) for entry in changes] == [("NEW", 1), ("PAID", 2)]


def _local_steps(stack) -> tuple[WorkerActivities, ActivityEnvironment]:
    """The engine's steps, and an environment that runs one as the item workflow runs it: a local activity."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, task_queue=stack.settings.temporal_task_queue, is_local=True)
    return WorkerActivities(stack.deps, RULE_TYPES, CUSTOM_RULES, rule_types), env


async def _aborted_move(stack, item: dict, stage: str, previous: str, entry_no: int) -> None:
    """What a move leaves when the server aborts its update after the step that enters the stage ran: the stage
    change on record and the entry's workflow started, with the item workflow never hearing of either."""
    engine, env = _local_steps(stack)
    call = EnterCall(item_id=item["id"], entity="deal", stage=stage, previous_stage=previous, entry_no=entry_no,
                     at=datetime.now(timezone.utc), start_entry=True, search_attributes=True)
    assert await env.run(engine.stages.enter_stage, call) == entry_workflow_id("deal", item["id"], entry_no)


async def _changes(stack, item_id: int) -> list[tuple]:
    return [(entry["data"].get("from"), entry["data"]["to"], entry["entry_no"])
            for entry in await timeline(stack.http, item_id, kind="stage_changed")]


async def _item_state(stack, item_id: int) -> tuple[str, int]:
    state = await stack.client.get_workflow_handle(item_workflow_id("deal", item_id)).query(ItemWorkflow.current)
    return state.stage, state.entry_no


LATE = {"name": "late", "type": "add_timeline_entry", "delay": "1h", "settings": {"text": "late"}}


async def _late_outcomes_are(stack, item_id: int, entry_no: int, expected: list[str]) -> bool:
    return [entry["kind"] for entry in await timeline(stack.http, item_id)
            if entry.get("rule_name") == "late" and entry["entry_no"] == entry_no] == expected


async def test_the_move_after_one_whose_update_was_aborted_goes_on_from_the_stage_the_item_is_in(stack):
    flow, manager = await _setup(stack, {"NEW": {"rules": [LATE]}, "PREPARE": {"rules": [LATE]}})
    item = await deal(stack.http, flow["id"], manager["id"])
    await _aborted_move(stack, item, "PREPARE", "NEW", 2)

    moved = ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "INVOICE"}))
    assert moved["stage"] == "INVOICE"
    assert await _changes(stack, item["id"]) == [(None, "NEW", 1), ("NEW", "PREPARE", 2), ("PREPARE", "INVOICE", 3)]
    assert await _stage(stack, item["id"]) == "INVOICE"
    assert await _item_state(stack, item["id"]) == ("INVOICE", 3)
    # Both entries the item left are cancelled: the one the workflow knew and the one it never heard of.
    for entry_no in (1, 2):
        assert await eventually(
            lambda: _late_outcomes_are(stack, item["id"], entry_no, ["rule_scheduled", "rule_cancelled"]))
    moved = ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "PAID"}))
    assert await _changes(stack, item["id"]) == [
        (None, "NEW", 1), ("NEW", "PREPARE", 2), ("PREPARE", "INVOICE", 3), ("INVOICE", "PAID", 4)]


async def test_a_move_sent_again_after_its_update_was_aborted_is_the_one_move(stack):
    flow, manager = await _setup(stack, {"PREPARE": {"rules": [LATE]}})
    item = await deal(stack.http, flow["id"], manager["id"])
    await _aborted_move(stack, item, "PREPARE", "NEW", 2)

    moved = ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "PREPARE"}))
    assert moved["stage"] == "PREPARE"
    assert await _changes(stack, item["id"]) == [(None, "NEW", 1), ("NEW", "PREPARE", 2)]
    assert await _item_state(stack, item["id"]) == ("PREPARE", 2)
    assert await eventually(lambda: _late_outcomes_are(stack, item["id"], 2, ["rule_scheduled"]))
    again = await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "PREPARE"})
    assert again.status_code == 409


async def test_an_event_after_a_move_whose_update_was_aborted_meets_the_triggers_of_the_stage_the_item_is_in(stack):
    flow, manager = await _setup(stack, {
        "PREPARE": {"rules": [LATE]},
        "INVOICE": {"triggers": [{"name": "ready", "type": "custom", "filter": {"event": "ready"},
                                  "condition": {"all": [{"field": "Deal.Stage", "op": "==", "value": "PREPARE"}]}}]},
    })
    item = await deal(stack.http, flow["id"], manager["id"])
    await _aborted_move(stack, item, "PREPARE", "NEW", 2)

    handled = ok(await stack.http.post(f"/deals/{item['id']}/events?wait=true", json={"type": "ready"}))
    assert handled["stage"] == "INVOICE" and handled["moved"] is True
    assert await _changes(stack, item["id"]) == [(None, "NEW", 1), ("NEW", "PREPARE", 2), ("PREPARE", "INVOICE", 3)]
    assert await _item_state(stack, item["id"]) == ("INVOICE", 3)
    assert await eventually(lambda: _late_outcomes_are(stack, item["id"], 2, ["rule_scheduled", "rule_cancelled"]))


async def test_an_entry_left_before_it_loaded_its_rules_records_each_rule_cancelled_once(stack):
    """The item can leave a stage before the new entry's workflow has run a single step (a burst of moves): every
    rule of that stage is still accounted for, as cancelled, and none runs."""
    rules = [{"name": "mark", "type": "add_timeline_entry", "settings": {"text": "marked"}},
             {"name": "late", "type": "add_timeline_entry", "delay": "1h", "settings": {"text": "late"}}]
    flow, manager = await _setup(stack, {"PREPARE": {"rules": rules}})
    item = await deal(stack.http, flow["id"], manager["id"])
    idle_queue = f"{stack.settings.temporal_task_queue}-idle"
    handle = await stack.client.start_workflow(
        StageEntryWorkflow.run,
        EntryInput(item_id=item["id"], entity="deal", pipeline_id=flow["id"], stage="PREPARE", entry_no=2,
                   entered_at=datetime.now(timezone.utc), parent_workflow_id=item_workflow_id("deal", item["id"])),
        id=entry_workflow_id("deal", item["id"], 2),
        task_queue=idle_queue,
    )
    await handle.cancel()
    async with build_worker(stack.client, stack.deps, task_queue=idle_queue):
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert is_cancelled_exception(failure.value.cause)
    entries = [entry for entry in await timeline(stack.http, item["id"]) if entry["entry_no"] == 2]
    assert sorted((entry["rule_name"], entry["kind"]) for entry in entries if entry["kind"] != "rule_scheduled") == [
        ("late", "rule_cancelled"), ("mark", "rule_cancelled"),
    ]
    assert "marked" not in [entry["text"] for entry in await timeline(stack.http, item["id"], kind="comment")]


async def test_a_step_that_runs_late_dates_its_stage_change_no_earlier_than_the_one_before(stack):
    """The step of a move whose workflow task was lost may still run after the workflow went on without it: the
    stage change it makes comes after the item's last one in time as in number."""
    flow, manager = await _setup(stack, {})
    item = await deal(stack.http, flow["id"], manager["id"])
    asked_at = datetime.now(timezone.utc)
    ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "PREPARE"}))

    engine, env = _local_steps(stack)
    late = EnterCall(item_id=item["id"], entity="deal", stage="INVOICE", previous_stage="NEW", entry_no=2,
                     at=asked_at, start_entry=True, search_attributes=True)
    assert await env.run(engine.stages.enter_stage, late) == entry_workflow_id("deal", item["id"], 3)

    changes = await timeline(stack.http, item["id"], kind="stage_changed")
    assert [(entry["data"].get("from"), entry["data"]["to"], entry["entry_no"]) for entry in changes] == [
        (None, "NEW", 1), ("NEW", "PREPARE", 2), ("PREPARE", "INVOICE", 3)]
    invoiced, prepared = (datetime.fromisoformat(changes[index]["at"]) for index in (2, 1))
    assert invoiced == prepared > asked_at
