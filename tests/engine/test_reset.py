"""A failed rule is re-run by resetting its stage-entry workflow; rules that took effect do not repeat."""

from __future__ import annotations

import copy
import uuid

from sqlmodel import select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from models.tables import Notification, User
from tests.crm import automate, deal, eventually, kinds, pipeline, timeline, user


COURIER_RULES = [
    {"name": "note", "type": "add_timeline_entry", "settings": {"text": "Order {{Deal.Title}} accepted"}},
    {"name": "courier", "type": "notify_employee", "start": "after_previous",
     "settings": {"user_ids": [], "text": "Deliver {{Deal.Title}}"}},
]


async def _failed_courier_entry(stack) -> tuple[dict, dict, dict, list[dict], WorkflowHandle]:
    """A deal whose entry failed: its note took effect, its courier (deleted) could not be notified. Returns the
    deal, the courier, the pipeline, its rules and the failed entry's handle."""
    manager = await user(stack.http, "Manager")
    courier = await user(stack.http, "Courier")
    flow = await pipeline(stack.http, ["NEW", "DONE"])
    rules = copy.deepcopy(COURIER_RULES)
    rules[1]["settings"]["user_ids"] = [courier["id"]]
    await automate(stack.http, flow["id"], {"NEW": {"rules": rules}})
    with stack.session() as session:
        session.delete(session.get(User, courier["id"]))
    item = await deal(stack.http, flow["id"], manager["id"])
    handle = stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1")

    async def failed_run() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.FAILED

    await eventually(failed_run)
    return item, courier, flow, rules, handle


async def _reset(stack, workflow_id: str, task_completed: int, reason: str) -> None:
    """What "Reset" in the Temporal UI does: the run goes back to the workflow task that completed at the event."""
    await stack.client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=stack.client.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            reason=reason, workflow_task_finish_event_id=task_completed, request_id=str(uuid.uuid4()),
        )
    )


async def test_reset_reruns_the_failed_rule_without_repeating_earlier_effects(stack):
    item, courier, _flow, _rules, handle = await _failed_courier_entry(stack)
    failed = await timeline(stack.http, item["id"], kind="rule_failed")
    assert "does not exist" in failed[0]["text"]
    assert failed[0]["data"]["workflow_url"].endswith(f"deal-{item['id']}%2Fentry-1")

    with stack.session() as session:
        session.add(User(id=courier["id"], name="Courier"))
    history = await handle.fetch_history()
    first_task = next(e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    await _reset(stack, handle.id, first_task, "courier restored")
    await stack.client.get_workflow_handle(handle.id).result()

    entries = await timeline(stack.http, item["id"])
    assert kinds(entries, "note") == ["rule_scheduled", "comment", "rule_done"]
    assert kinds(entries, "courier") == ["rule_failed", "rule_done"]
    with stack.session() as session:
        notes = list(session.exec(select(Notification).where(Notification.user_id == courier["id"])))
    assert [note.text for note in notes] == ["Deliver Sofa for Anna"]


async def test_a_reset_to_the_first_workflow_task_runs_with_the_automation_saved_now(stack):
    """The choice (README, "In the Temporal UI"): a reset replays the stage entry's history up to the chosen point
    and runs the rest anew. Reset to the first workflow task, the entry loads its rules again, so an admin fixes
    a failing rule's settings, then resets, and the fixed rule runs; rules that took effect do not repeat."""
    item, courier, flow, rules, handle = await _failed_courier_entry(stack)
    with stack.session() as session:
        session.add(User(id=courier["id"], name="Courier"))
    rules[1]["settings"]["text"] = "Deliver {{Deal.Title}} today"
    await automate(stack.http, flow["id"], {"NEW": {"rules": rules}})

    history = await handle.fetch_history()
    first_task = next(e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    await _reset(stack, handle.id, first_task, "courier restored, text fixed")
    await stack.client.get_workflow_handle(handle.id).result()
    with stack.session() as session:
        notes = list(session.exec(select(Notification).where(Notification.user_id == courier["id"])))
    assert [note.text for note in notes] == ["Deliver Sofa for Anna today"]
    assert kinds(await timeline(stack.http, item["id"]), "note") == ["rule_scheduled", "comment", "rule_done"]


async def test_a_reset_to_a_later_workflow_task_keeps_the_plan_the_entry_ran_with(stack):
    """Reset to its last workflow task, an entry replays what the reset kept with the plan it began with (no
    workflow task fails on replay) and runs the rest anew; the rule that took effect does not repeat."""
    item, _courier, _flow, _rules, handle = await _failed_courier_entry(stack)
    history = await handle.fetch_history()
    last_task = [e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED][-1]
    await _reset(stack, handle.id, last_task, "once more")
    reset_run = stack.client.get_workflow_handle(handle.id)

    async def failed_again() -> bool:
        described = await reset_run.describe()
        return described.run_id != history.run_id and described.status == WorkflowExecutionStatus.FAILED

    await eventually(failed_again)
    events = (await reset_run.fetch_history()).events
    task_failures = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert len(task_failures) == 1  # the reset itself; replaying what it kept did not fail
    assert kinds(await timeline(stack.http, item["id"]), "note") == ["rule_scheduled", "comment", "rule_done"]
