"""The Temporal client calls that drive the item workflows: update-with-start for creation and moves, signals for
events, the entry workflow's query for what is pending. The API and the rules that create items call these."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from typing import Any, Protocol

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models.settings import Settings
from workflows.entry import StageEntryWorkflow
from workflows.item import ItemWorkflow, entry_summary, search_keys
from workflows.operations import ApplyVersionWorkflow, RetryFailuresWorkflow
from workflows.types import (
    GENERATION,
    SA_VERSION,
    ApplyInput,
    Archiving,
    CallbackSignal,
    EntryInput,
    EventHandled,
    ItemEvent,
    ItemState,
    ItemMove,
    MoveResult,
    RetryInput,
    PendingRule,
    entry_workflow_id,
)
from workflows.types import item_workflow_id as _workflow_id


class Item(Protocol):
    """What the calls read of an item (a `models.tables.Item` row)."""

    id: int | None
    entity_type: str
    pipeline_id: int
    title: str
    stage: str | None
    entry_no: int


class MoveRejected(Exception):
    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def item_workflow_id(item: Item) -> str:
    return _workflow_id(item.entity_type, item.id)


def _state(settings: Settings, item: Item, entries_before: int = 0, first_stage: str | None = None) -> ItemState:
    return ItemState(
        item_id=item.id,
        entry_no=entries_before,
        entity=item.entity_type,
        pipeline_id=item.pipeline_id,
        search_attributes=settings.temporal_search_attributes,
        history_limit=settings.item_history_limit,
        engine=GENERATION,
        search_stage=first_stage if settings.temporal_search_attributes else None,
    )


UPDATE_ATTEMPTS = 3
TASK_FAILURE = "unexpected workflow task failure"


async def _update(
    client: Client, settings: Settings, item: Item, request: ItemMove, update_id: str, entries_before: int = 0
) -> MoveResult:
    """The move as an update, starting the item's workflow when it is not running: started with the search
    attributes of the stage it enters, so that entering it needs no second write of them."""
    state = _state(settings, item, entries_before, request.stage)

    def operation() -> WithStartWorkflowOperation:
        """The start half of the call; an operation is used once, so each attempt has its own."""
        return WithStartWorkflowOperation(
            ItemWorkflow.run,
            state,
            id=item_workflow_id(item),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            task_queue=settings.temporal_task_queue,
            static_summary=f"{item.entity_type} {item.id}: {item.title[:80]}",
            search_attributes=(
                TypedSearchAttributes(search_keys(item.entity_type, item.id, item.pipeline_id, request.stage))
                if state.search_stage else None
            ),
        )

    try:
        for attempt in range(UPDATE_ATTEMPTS):
            try:
                return await client.execute_update_with_start_workflow(
                    ItemWorkflow.move, request, id=update_id, start_workflow_operation=operation(),
                    result_type=MoveResult,
                )
            except RPCError as error:
                # An update that reaches the workflow while it continues as new is refused by the server with this
                # message; the same update (its id, and the move's request id the workflow keeps) is sent again.
                if TASK_FAILURE not in error.message or attempt == UPDATE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError) and cause.type in ("AlreadyInStage", "Archived"):
            raise MoveRejected(409, str(cause.message)) from error
        raise MoveRejected(422, str(getattr(cause, "message", cause))) from error


async def start_item(
    client: Client, settings: Settings, item: Item, stage: str, *, as_user_id: int | None, resume: bool = False
) -> MoveResult:
    """Start the item's workflow and enter its first stage; returns once that stage's rules have started.
    With `resume`, the item's workflow starts over in the stage the item records, as the same entry (its number
    and the time it began kept), so the entry's rules find what they did before and count delays from then."""
    request = ItemMove(stage=stage, as_user_id=as_user_id, reason="created", request_id="created")
    entries_before = item.entry_no - 1 if resume and item.entry_no else 0
    return await _update(client, settings, item, request, "created", entries_before)


async def move_item(
    client: Client, settings: Settings, item: Item, stage: str, *, as_user_id: int | None, request_id: str | None
) -> MoveResult:
    update_id = f"move-{request_id}" if request_id else f"move-{uuid.uuid4()}"
    request = ItemMove(stage=stage, as_user_id=as_user_id, reason="manual", request_id=update_id)
    result = await _update(client, settings, item, request, update_id)
    if not result.moved and result.detail == "already in stage":
        raise MoveRejected(409, f"the item is already in stage {stage}")
    return result


async def archive_item(client: Client, item: Item, archived: bool) -> None:
    """Archives the item's workflow (its entry cancelled, moves and events refused) or restores it."""
    await client.get_workflow_handle(item_workflow_id(item)).execute_update(
        ItemWorkflow.archive, Archiving(archived=archived), id=f"{'archive' if archived else 'restore'}-{uuid.uuid4()}",
        result_type=MoveResult,
    )


async def send_event(
    client: Client, settings: Settings, item: Item, type: str, data: dict[str, Any], *, event_id: str | None
) -> None:
    event = ItemEvent(type=type, data=dict(data or {}), event_id=event_id)
    await client.get_workflow_handle(item_workflow_id(item)).signal(ItemWorkflow.event, event)


async def handle_event(
    client: Client, settings: Settings, item: Item, type: str, data: dict[str, Any], *, event_id: str | None
) -> EventHandled:
    """The event, answered once the item has handled it: the trigger it fired, the stage now, whether it moved.
    Sent again with the same `event_id`, it answers as the first time (or says it was a duplicate)."""
    event = ItemEvent(type=type, data=dict(data or {}), event_id=event_id or f"event-{uuid.uuid4()}")
    return await client.get_workflow_handle(item_workflow_id(item)).execute_update(
        ItemWorkflow.handle_event, event, id=f"event-{event.event_id}", result_type=EventHandled
    )


async def start_apply(client: Client, settings: Settings, pipeline_id: int, version: int) -> str:
    """Starts taking version `version` of the pipeline's automation to the entries already waiting in its stages;
    its workflow id. Started before the save commits: the workflow waits for that save, and does nothing when the
    save is refused."""
    workflow_id = f"pipeline-{pipeline_id}/version-{version}/apply-{uuid.uuid4().hex[:8]}"
    order = ApplyInput(pipeline_id=pipeline_id, version=version, requested_at=datetime.now(timezone.utc),
                       search_attributes=settings.temporal_search_attributes)
    await client.start_workflow(
        ApplyVersionWorkflow.run, order, id=workflow_id, task_queue=settings.temporal_task_queue,
        static_summary=f"version {version} of pipeline {pipeline_id} for the entries waiting",
    )
    return workflow_id


def retry_workflow_id(operation_id: str) -> str:
    return f"operation-{operation_id}/retry-failures"


async def start_retry(client: Client, settings: Settings, operation_id: str, *, rate: int, automation: str) -> str:
    """Starts running again the failed rules operation `operation_id` chose; its workflow id."""
    workflow_id = retry_workflow_id(operation_id)
    order = RetryInput(
        operation_id=operation_id, rate=rate, automation=automation,
        retry_initial_seconds=settings.rule_retry_initial_seconds, retry_max_attempts=settings.rule_max_attempts,
        heartbeat_seconds=settings.rule_heartbeat_seconds,
    )
    await client.start_workflow(
        RetryFailuresWorkflow.run, order, id=workflow_id, task_queue=settings.temporal_task_queue,
        static_summary=f"failed rules run again, at most {rate} a second",
    )
    return workflow_id


async def answer_callback(client: Client, entry_workflow_id: str, answer: CallbackSignal) -> None:
    """The answer to a rule of the entry that waits for an outside system."""
    await client.get_workflow_handle(entry_workflow_id).signal(StageEntryWorkflow.callback, answer)


async def start_entry(client: Client, entry: EntryInput, *, task_queue: str, search_attributes: bool) -> str:
    """Starts the workflow of a stage entry, once: started again (a retried step), it finds the entry started, or
    finished, and starts nothing. Asked to start eagerly, so that the worker that calls this runs its first task
    without a round trip through the task queue."""
    workflow_id = entry_workflow_id(entry.entity, entry.item_id, entry.entry_no)
    keys = None
    if search_attributes:
        keys = search_keys(entry.entity, entry.item_id, entry.pipeline_id, entry.stage)
        if entry.plan is not None:
            keys.append(SearchAttributePair(SearchAttributeKey.for_keyword(SA_VERSION), str(entry.plan.config_version)))
    try:
        await client.start_workflow(
            StageEntryWorkflow.run,
            entry,
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(keys) if keys else None,
            static_summary=entry_summary(entry.entity, entry.item_id, entry.stage, entry.entry_no),
            request_eager_start=True,
        )
    except WorkflowAlreadyStartedError:
        pass
    return workflow_id


async def pending_rules(client: Client, settings: Settings, item: Item) -> list[dict[str, Any]]:
    if not item.entry_no:
        return []
    handle = client.get_workflow_handle(entry_workflow_id(item.entity_type, item.id, item.entry_no))
    try:
        rules = await handle.query(StageEntryWorkflow.pending, result_type=list[PendingRule])
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return []
        raise
    return [
        {
            "rule": rule.name,
            "type": rule.type,
            "start": rule.start,
            "state": rule.state,
            "due": rule.due.isoformat() if rule.due else None,
            "delay": rule.delay,
            "condition": rule.condition,
            "waiting_for": rule.waiting_for,
            "version": rule.version,
            "entry_no": item.entry_no,
            "stage": item.stage,
        }
        for rule in rules
    ]
