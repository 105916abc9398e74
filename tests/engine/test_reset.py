"""A failed rule is re-run by resetting its stage-entry workflow; rules that took effect do not repeat."""

from __future__ import annotations

import uuid

from sqlmodel import select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import WorkflowExecutionStatus

from models.tables import Notification, User
from tests.crm import automate, deal, eventually, kinds, pipeline, timeline, user


async def test_reset_reruns_the_failed_rule_without_repeating_earlier_effects(stack):
    manager = await user(stack.http, "Manager")
    courier = await user(stack.http, "Courier")
    flow = await pipeline(stack.http, ["NEW", "DONE"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "note", "type": "add_timeline_entry", "settings": {"text": "Order {{Deal.Title}} accepted"}},
        {"name": "courier", "type": "notify_employee", "start": "after_previous",
         "settings": {"user_ids": [courier["id"]], "text": "Deliver {{Deal.Title}}"}},
    ]}})
    with stack.session() as session:
        session.delete(session.get(User, courier["id"]))

    item = await deal(stack.http, flow["id"], manager["id"])
    failed = await eventually(lambda: timeline(stack.http, item["id"], kind="rule_failed"))
    assert "does not exist" in failed[0]["text"]
    assert failed[0]["data"]["workflow_url"].endswith(f"deal-{item['id']}%2Fentry-1")
    handle = stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1")
    async def failed_run() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.FAILED

    await eventually(failed_run)

    with stack.session() as session:
        session.add(User(id=courier["id"], name="Courier"))
    history = await handle.fetch_history()
    first_task = next(e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    await stack.client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=stack.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id),
            reason="courier restored",
            workflow_task_finish_event_id=first_task,
            request_id=str(uuid.uuid4()),
        )
    )
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
    manager = await user(stack.http, "Manager")
    courier = await user(stack.http, "Courier")
    flow = await pipeline(stack.http, ["NEW", "DONE"])
    rules = [
        {"name": "note", "type": "add_timeline_entry", "settings": {"text": "Order {{Deal.Title}} accepted"}},
        {"name": "courier", "type": "notify_employee", "start": "after_previous",
         "settings": {"user_ids": [courier["id"]], "text": "Deliver {{Deal.Title}}"}},
    ]
    await automate(stack.http, flow["id"], {"NEW": {"rules": rules}})
    with stack.session() as session:
        session.delete(session.get(User, courier["id"]))
    item = await deal(stack.http, flow["id"], manager["id"])
    await eventually(lambda: timeline(stack.http, item["id"], kind="rule_failed"))
    handle = stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1")

    async def failed_run() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.FAILED

    await eventually(failed_run)
    with stack.session() as session:
        session.add(User(id=courier["id"], name="Courier"))
    rules[1]["settings"]["text"] = "Deliver {{Deal.Title}} today"
    await automate(stack.http, flow["id"], {"NEW": {"rules": rules}})

    history = await handle.fetch_history()
    first_task = next(e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    await stack.client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=stack.client.namespace, workflow_execution=WorkflowExecution(workflow_id=handle.id),
            reason="courier restored, text fixed", workflow_task_finish_event_id=first_task,
            request_id=str(uuid.uuid4()),
        )
    )
    await stack.client.get_workflow_handle(handle.id).result()
    with stack.session() as session:
        notes = list(session.exec(select(Notification).where(Notification.user_id == courier["id"])))
    assert [note.text for note in notes] == ["Deliver Sofa for Anna today"]
    assert kinds(await timeline(stack.http, item["id"]), "note") == ["rule_scheduled", "comment", "rule_done"]
