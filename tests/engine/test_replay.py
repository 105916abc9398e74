"""Determinism: recorded histories of every workflow type replay against the current code.

The histories in tests/histories/ were recorded from the scenario below; a code change that would
break running items makes them fail. Set STAGEFLOW_RECORD_HISTORIES=1 to record them again (only
when a change is deliberately incompatible and guarded by `workflow.patched`).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from tests.custom.endpoint import Endpoint, endpoint
from tests.engine.changed_workflows import ReorderedEntryWorkflow
from tests.engine.moments import handed, moment_gone, ran_to_be_tried_again
from workflows.converter import DATA_CONVERTER
from workflows.entry import StageEntryWorkflow
from workflows.item import ItemWorkflow
from workflows.moment import DueMomentWorkflow
from workflows.operations import ApplyVersionWorkflow, RetryFailuresWorkflow
from workflows.types import GENERATION, EntryInput, ItemState, due_moment_key, due_workflow_id

HISTORIES = Path(__file__).parent.parent / "histories"
WORKFLOWS = [ItemWorkflow, StageEntryWorkflow, ApplyVersionWorkflow, RetryFailuresWorkflow, DueMomentWorkflow]
RELEASE = "v0.10.0"  # histories of earlier releases stay in tests/histories and must keep replaying


def _recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def _load(path: Path) -> WorkflowHistory:
    document = json.loads(path.read_text())
    return WorkflowHistory.from_json(document["workflow_id"], document["history"])


def _automation(manager_id: int, late: str, erp: str, closing: bool = True) -> dict:
    new = [
        {"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hello {{Deal.Title}}"}},
        {"name": "welcome", "type": "add_timeline_entry", "settings": {"text": "Welcome"}},
        {"name": "late", "type": "add_timeline_entry", "delay": late, "settings": {"text": "late"}},
        {"name": "then", "type": "change_responsible", "start": "after_previous", "settings": {"user_id": manager_id}},
    ]
    if closing:
        new.append({"name": "before close", "type": "add_timeline_entry",
                    "delay": {"field": "close_date", "offset": "-1d"}, "settings": {"text": "closes tomorrow"}})
    return {
        "NEW": {"rules": new},
        "INVOICE": {"rules": [
            {"name": "ping", "type": "notify_supervisor", "settings": {"text": "no supervisor here"}},
            {"name": "tell", "type": "notify_employee", "settings": {"text": "invoice out", "user_ids": [manager_id]}},
            {"name": "erp", "type": "webhook", "settings": {"url": erp}},
        ], "triggers": [{"name": "paid", "type": "payment_received"}]},
    }


async def _scenario(stack, erp: Endpoint) -> dict[str, str]:
    """Creation, two rules due at once (one `rules.together` call), three rules that reach the outside due at once
    (one `rules.outside_together` call: one fails, one is retried in an activity of its own), a delayed rule cancelled by a move, a rule that
    follows the close date (moved once), a new version applied to the waiting entry (one rule's delay moved, another
    rule removed), a trigger move, a failed rule run again by a retry operation (and failing again), a pending query,
    a move to a stage without rules (an entry without a workflow) and away from it. Each workflow id by the name its
    history keeps."""
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "INVOICE", "WON"])
    await automate(stack.http, flow["id"], _automation(manager["id"], "1h", erp.url()))
    item = await deal(stack.http, flow["id"], manager["id"], close_date="2099-01-10")
    await eventually(lambda: timeline(stack.http, item["id"], kind="comment"))
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"close_date": "2099-02-10"}))
    await eventually(lambda: timeline(stack.http, item["id"], kind="rule_rescheduled"))
    applied = ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", params={"in_flight": "apply"},
                                      json={"stages": _automation(manager["id"], "2h", erp.url(), closing=False)}))
    await stack.client.get_workflow_handle(applied["apply_workflow_id"]).result()
    await eventually(lambda: timeline(stack.http, item["id"], kind="rule_changed"))
    ok(await stack.http.get(f"/deals/{item['id']}/pending"))
    ok(await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 10}), 202)
    await eventually(lambda: timeline(stack.http, item["id"], kind="rule_failed"))
    await eventually(lambda: _done(stack.http, item["id"], "erp"))
    retry = ok(await stack.http.post("/failures/retry", json={"pipeline_id": flow["id"], "dry_run": False}), 202)
    progress = ok(await stack.http.get(f"/operations/{retry['operation_id']}"))
    await stack.client.get_workflow_handle(progress["workflow_id"]).result()
    await eventually(lambda: _left(stack.http, item["id"]))
    # WON has no rules: its entry needs no workflow (engine generation 3), and leaving it cancels nothing.
    assert ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "WON"}))["stage"] == "WON"
    assert ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "NEW"}))["stage"] == "NEW"
    return {"item": f"deal-{item['id']}", "entry-1": f"deal-{item['id']}/entry-1",
            "entry-2": f"deal-{item['id']}/entry-2", "apply": applied["apply_workflow_id"],
            "retry": progress["workflow_id"]}


async def _moment_scenario(stack) -> dict[str, str]:
    """Three deals whose two rules, one database-only and one that reaches the outside, fall due at one moment
    (engine generations 4 and 5): the first rule to arrive keeps its own timer, the other rules of the first two deals
    run at the moment's workflow, the third's date moves before the moment and its entry takes the rules back."""
    owner = await user(stack.http, "Owner")
    flow = await pipeline(stack.http, ["NEW"], name="Moments")
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "follow", "type": "add_timeline_entry", "delay": {"field": "Fields.fire_at"},
         "settings": {"text": "Call back"}},
        {"name": "tell", "type": "notify_employee", "delay": {"field": "Fields.fire_at"},
         "settings": {"user_ids": [owner["id"]], "text": "Call back"}},
    ]}})
    due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=13)
    deals = [await deal(stack.http, flow["id"], owner["id"], fields={"fire_at": due.isoformat()}) for _ in range(3)]
    later = due + timedelta(seconds=2)
    ok(await stack.http.patch(f"/deals/{deals[2]['id']}", json={"fields": {"fire_at": later.isoformat()}}))
    moment = due_workflow_id(due_moment_key(due))
    assert await stack.client.get_workflow_handle(moment).result() == 3
    for item in deals:
        await stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1").result()
    return {"moment": moment, "entry-handed": f"deal-{deals[1]['id']}/entry-1",
            "entry-taken-back": f"deal-{deals[2]['id']}/entry-1"}


async def _tried_again_scenario(stack) -> dict[str, str]:
    """A rule handed to a moment whose attempt failed and may be tried again (its workflow gone before it told the
    entry), and the item leaving: the entry tries it again, and the rule is cancelled."""
    owner = await user(stack.http, "Owner")
    flow = await pipeline(stack.http, ["NEW", "ASIDE"], name="Tried again")
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "follow", "type": "add_timeline_entry", "delay": {"field": "Fields.fire_at"},
         "settings": {"text": "Call back"}},
    ]}})
    due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    deals = [await deal(stack.http, flow["id"], owner["id"], fields={"fire_at": due.isoformat()}) for _ in range(2)]
    key = due_moment_key(due)
    [row] = await eventually(lambda: handed(stack, key))
    await moment_gone(stack, key)
    ran_to_be_tried_again(stack, row.id)
    ok(await stack.http.post(f"/deals/{deals[1]['id']}/move", json={"stage": "ASIDE"}))
    await eventually(lambda: _left(stack.http, deals[1]["id"]))
    return {"entry-tried-again": f"deal-{deals[1]['id']}/entry-1"}


async def _done(http, item_id: int, rule: str) -> list[dict]:
    return [entry for entry in await timeline(http, item_id, kind="rule_done") if entry.get("rule_name") == rule]


async def _left(http, item_id: int) -> list[dict]:
    """The rules cancelled because the item left their stage."""
    return [entry for entry in await timeline(http, item_id, kind="rule_cancelled") if entry["data"].get("reason") == "left"]


async def test_fresh_histories_of_every_workflow_type_replay(stack):
    async with endpoint(replies=[(503, {"error": "busy"})]) as erp:
        workflow_ids = await _scenario(stack, erp)
    workflow_ids.update(await _moment_scenario(stack))
    workflow_ids.update(await _tried_again_scenario(stack))
    histories = {part: await stack.client.get_workflow_handle(wid).fetch_history() for part, wid in workflow_ids.items()}
    for converter in (DataConverter.default, DATA_CONVERTER):
        replayer = Replayer(workflows=WORKFLOWS, data_converter=converter)
        for history in histories.values():
            await replayer.replay_workflow(history)
    if os.environ.get("STAGEFLOW_RECORD_HISTORIES") == "1":
        for part, history in histories.items():
            (HISTORIES / f"{RELEASE}_{part}.json").write_text(
                json.dumps({"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}, indent=1)
            )


@pytest.mark.parametrize("path", _recorded(), ids=lambda path: path.stem)
async def test_recorded_history_replays(path: Path):
    await Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER).replay_workflow(_load(path))


def test_histories_are_recorded_for_every_workflow_type():
    types = {json.loads(path.read_text())["history"]["events"][0]["workflowExecutionStartedEventAttributes"]
             ["workflowType"]["name"] for path in _recorded()}
    assert types == {"ItemWorkflow", "StageEntryWorkflow", "ApplyVersionWorkflow", "RetryFailuresWorkflow",
                     "DueMomentWorkflow"}


async def test_a_non_deterministic_change_is_caught():
    entries = [path for path in _recorded() if "entry" in path.stem]
    assert entries, "no recorded stage-entry history"
    with pytest.raises(NondeterminismError):
        await Replayer(workflows=[ItemWorkflow, ReorderedEntryWorkflow]).replay_workflow(_load(entries[0]))


async def test_a_run_begun_under_a_newer_engine_waits_for_a_worker_that_knows_it(stack):
    """An entry and an item workflow begun by a newer release (its engine generation above this code's) are not run
    down an older path by this worker: each workflow task fails, saying why, and the workflow stays running for a
    worker of that release."""
    newer = GENERATION + 1
    entry = await stack.client.start_workflow(
        StageEntryWorkflow.run,
        EntryInput(item_id=1, entity="deal", pipeline_id=1, stage="NEW", entry_no=1,
                   entered_at=datetime.now(timezone.utc), parent_workflow_id="deal-1", engine=newer),
        id=f"newer-engine-entry-{uuid.uuid4().hex[:8]}", task_queue=stack.settings.temporal_task_queue,
    )
    item = await stack.client.start_workflow(
        ItemWorkflow.run, ItemState(item_id=1, entity="deal", pipeline_id=1, engine=newer),
        id=f"newer-engine-item-{uuid.uuid4().hex[:8]}", task_queue=stack.settings.temporal_task_queue,
    )
    for handle in (entry, item):
        async def refused(handle=handle) -> bool:
            history = await handle.fetch_history()
            return any(f"engine generation {newer}" in event.workflow_task_failed_event_attributes.failure.message
                       for event in history.events if event.HasField("workflow_task_failed_event_attributes"))

        assert await eventually(refused)
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        await handle.terminate("a newer release's run")
