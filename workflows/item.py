"""The entity workflow of one deal or lead: the only writer of its stage.

Moves arrive as updates (update-with-start on creation), trigger events as signals; a lock
serializes them so racing moves and events can never interleave. A stage entry runs as a
workflow of its own (`<item workflow id>/entry-<n>`), which outlives this workflow's continue-as-new:
the step that enters the stage starts it (runs from before engine generation 1 start it as an
abandoned child workflow), unless the step finished the entry itself (engine generation 3: a stage
without rules, or whose rules all ran as the item entered it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime
from typing import Union

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.domain.events import FieldChanged
    from workflows.entry import StageEntryWorkflow, run_step
    from workflows.types import (
        GENERATION,
        ENTER_STAGE,
        ITEM_CHANGED,
        ITEM_EVENT,
        ITEM_WORKFLOW,
        MATCH_TRIGGER,
        RULE_MOVE,
        SA_ENTITY,
        SA_ITEM_ID,
        SA_PIPELINE_ID,
        SA_STAGE,
        Archiving,
        EnterCall,
        Entered,
        EntryInput,
        EventHandled,
        ItemChanged,
        ItemEvent,
        ItemState,
        MatchCall,
        MatchResult,
        ItemMove,
        MoveResult,
        entry_number,
        entry_workflow_id,
        known_engine,
    )

SEEN_LIMIT = 500
TRIGGER_ENTERS = "trigger-match-enters-stage"


def search_keys(entity: str, item_id: int, pipeline_id: int, stage: str) -> list[SearchAttributePair]:
    """The search attributes of an item's workflows while the item is in `stage`."""
    values = {SA_ITEM_ID: str(item_id), SA_ENTITY: entity, SA_PIPELINE_ID: str(pipeline_id), SA_STAGE: stage}
    return [SearchAttributePair(SearchAttributeKey.for_keyword(name), value) for name, value in values.items()]


def entry_summary(entity: str, item_id: int, stage: str, entry_no: int) -> str:
    """What the Temporal UI shows beside an entry's workflow."""
    return f"{entity} {item_id} in {stage} (entry {entry_no})"


def _outcome_seen(child: asyncio.Future) -> None:
    """An entry's own outcome is on its timeline; the item workflow only marks it as read."""
    if not child.cancelled():
        child.exception()


@workflow.defn(name=ITEM_WORKFLOW)
class ItemWorkflow:
    @workflow.init
    def __init__(self, state: ItemState) -> None:
        known_engine(state.engine)
        self.state = state
        self.lock = asyncio.Lock()
        self.moving: asyncio.Task | None = None
        """The move an answered event still finishes; held so that the event loop keeps the task."""
        self.current = state.engine >= 1
        """The run began under engine generation 1: it asks for no earlier patch."""
        self.third = state.engine >= 3
        """The run began under engine generation 3: the steps that enter a stage finish an entry that needs no
        workflow themselves, and say whether a workflow runs the entry."""

    @workflow.run
    async def run(self, state: ItemState) -> None:
        await workflow.wait_condition(self._should_continue_as_new)
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() and not self.lock.locked())
        self.state.engine = GENERATION  # the next run begins under the current engine
        workflow.continue_as_new(self.state)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        limit = self.state.history_limit
        return bool(limit) and info.get_current_history_length() >= limit

    @workflow.update
    async def move(self, request: ItemMove) -> MoveResult:
        async with self.lock:
            return await self._move(request)

    @move.validator
    def validate_move(self, request: ItemMove) -> None:
        if not request.stage:
            raise ApplicationError("stage is required", type="InvalidMove")
        if self.state.archived:
            raise ApplicationError("the item is archived; restore it first", type="Archived")
        if request.reason != "created" and self.state.stage is None and not self.lock.locked():
            raise ApplicationError("the item has not entered a stage yet", type="InvalidMove")
        if request.stage == self.state.stage and not self.lock.locked():
            raise ApplicationError(f"the item is already in stage {request.stage}", type="AlreadyInStage")

    @workflow.update
    async def archive(self, request: Archiving) -> MoveResult:
        """Archived, the item's current entry is cancelled (its waiting rules are recorded as cancelled because the
        item was archived) and moves and events are refused until a restore; restored, it is back in its stage, whose
        rules do not run again."""
        async with self.lock:
            if request.archived and not self.state.archived and self.state.entry_no and self.state.entry_running:
                self._cancel_entry(entry_workflow_id(self.state.entity, self.state.item_id, self.state.entry_no))
            self.state.archived = request.archived
            return MoveResult(moved=False, stage=self.state.stage, entry_no=self.state.entry_no,
                              detail="archived" if request.archived else "restored")

    @workflow.signal(name=ITEM_EVENT)
    async def event(self, event: ItemEvent) -> None:
        async with self.lock:
            _handled, rest = await self._handle(event)
            if rest is not None:
                await rest

    @workflow.update
    async def handle_event(self, event: ItemEvent) -> EventHandled:
        """The same as the `event` signal, answered as soon as the event's match has entered the item in its new
        stage; starting that stage's entry goes on after the answer, still holding the lock."""
        await self.lock.acquire()
        handed_over = False
        try:
            handled, rest = await self._handle(event)
            if rest is not None and handled.moved:
                self.moving = asyncio.create_task(self._finish_then_release(rest))
                handed_over = True
            elif rest is not None:
                moved = await rest
                handled = EventHandled(matched=handled.matched, stage=self.state.stage, moved=moved.moved)
            return handled
        finally:
            if not handed_over:
                self.lock.release()

    async def _finish_then_release(self, rest: Awaitable[MoveResult]) -> None:
        try:
            await rest
        finally:
            self.lock.release()

    async def _handle(self, event: ItemEvent) -> tuple[EventHandled, Awaitable[MoveResult] | None]:
        """Matches the event; when a trigger fired, the move that remains (entering the stage unless the match
        did, starting its entry) is handed back to be awaited."""
        if self.state.archived or self._seen(event.event_id):
            # The item is archived (the API refuses its events; one sent just before is dropped, and not taken as
            # seen, so the same event sent after a restore is taken), or the event was handled before.
            return EventHandled(stage=self.state.stage), None
        if event.type == FieldChanged.TYPE and self.state.entry_no and self.state.entry_running:
            self._tell_entry(ItemChanged(fields=list(event.data.get("fields") or [])))
        # From this version on, a trigger's match and the stage it enters are one step.
        one_step = self.current or workflow.patched(TRIGGER_ENTERS)
        match: MatchResult = await run_step(
            MATCH_TRIGGER,
            MatchCall(
                item_id=self.state.item_id,
                entity=self.state.entity,
                pipeline_id=self.state.pipeline_id,
                stage=self.state.stage,
                event=event,
                at=workflow.now(),
                enter_entry_no=self.state.entry_no + 1 if one_step else 0,
                start_entry=self.current,
                search_attributes=self.state.search_attributes,
                finish_entry_at_entering=self.third,
            ),
            result_type=MatchResult,
            summary=f"match {event.type}",
            current=self.current,
        )
        if match.stage:
            rest = self._move(
                ItemMove(
                    stage=match.stage,
                    as_user_id=match.as_user_id,
                    reason="trigger",
                    trigger=match.trigger,
                    event_type=event.type,
                ),
                entered=match.entered,
                started=match.entry_workflow_id,
                running=match.entry_running,
            )
            return EventHandled(matched=match.trigger, stage=match.stage, moved=match.entered), rest
        return EventHandled(stage=self.state.stage), None

    @workflow.signal(name=RULE_MOVE)
    async def rule_move(self, request: ItemMove) -> None:
        """A move asked for by a rule (change stage); deduplicated by its request id."""
        async with self.lock:
            if self.state.archived or self._seen(request.request_id):
                return
            await self._move(request)

    @workflow.query
    def current(self) -> ItemState:
        return self.state

    def _seen(self, key: str | None) -> bool:
        if not key:
            return False
        if key in self.state.seen:
            return True
        self.state.seen.append(key)
        del self.state.seen[:-SEEN_LIMIT]
        return False

    async def _move(
        self, request: ItemMove, *, entered: bool = False, started: str | None = None, running: bool = True
    ) -> MoveResult:
        """Enters the requested stage, unless the trigger's match already did (`started`: the new entry's workflow
        id, `running`: whether a workflow runs it); the step that enters starts the entry's workflow unless it
        finished the entry itself, or in runs from before engine generation 1 this workflow starts it as a child."""
        state = self.state
        if request.request_id and request.reason != "rule" and self._seen(request.request_id):
            return MoveResult(moved=False, stage=state.stage, entry_no=state.entry_no, detail="duplicate request")
        if request.stage == state.stage:
            return MoveResult(moved=False, stage=state.stage, entry_no=state.entry_no, detail="already in stage")
        previous_entry = state.entry_no
        entry_no = previous_entry + 1
        now = workflow.now()
        if not entered:
            started, running = await self._enter(request, entry_no, now)
        if started:
            # The step answers the entry it made: a later one when it found the item further on than this workflow
            # knew (a move whose update the server aborted after its step ran). The entries this workflow never
            # heard of are cancelled with the one it leaves. (Every step before this answered `entry_no` itself.)
            entry_no = entry_number(started)
        state.stage, state.entry_no = request.stage, entry_no
        keys = search_keys(state.entity, state.item_id, state.pipeline_id, request.stage)
        if state.search_attributes and request.stage != state.search_stage:
            workflow.upsert_search_attributes([pair.key.value_set(pair.value) for pair in keys])
            state.search_stage = request.stage
        for left in range(previous_entry or 1, entry_no):
            if left != previous_entry or state.entry_running:
                self._cancel_entry(entry_workflow_id(state.entity, state.item_id, left))
        state.entry_running = running
        child_id = entry_workflow_id(state.entity, state.item_id, entry_no)
        if self.current:
            return MoveResult(moved=True, stage=request.stage, entry_no=entry_no, entry_workflow_id=started or child_id)
        child = await workflow.start_child_workflow(
            StageEntryWorkflow.run,
            EntryInput(
                item_id=state.item_id,
                entity=state.entity,
                pipeline_id=state.pipeline_id,
                stage=request.stage,
                entry_no=entry_no,
                entered_at=now,
                parent_workflow_id=workflow.info().workflow_id,
            ),
            id=child_id,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            search_attributes=TypedSearchAttributes(keys) if state.search_attributes else None,
            static_summary=entry_summary(state.entity, state.item_id, request.stage, entry_no),
        )
        child.add_done_callback(_outcome_seen)
        return MoveResult(moved=True, stage=request.stage, entry_no=entry_no, entry_workflow_id=child_id)

    async def _enter(self, request: ItemMove, entry_no: int, now: datetime) -> tuple[str | None, bool]:
        """Enters the stage; in engine generation 1 the step also starts the entry and answers its workflow id, in
        generation 3 also whether a workflow runs the entry."""
        state = self.state
        answer = await run_step(
            ENTER_STAGE,
            EnterCall(
                item_id=state.item_id,
                entity=state.entity,
                stage=request.stage,
                previous_stage=state.stage,
                entry_no=entry_no,
                at=now,
                reason=request.reason,
                as_user_id=request.as_user_id,
                trigger=request.trigger,
                event_type=request.event_type,
                rule=request.rule,
                start_entry=self.current,
                search_attributes=state.search_attributes,
                finish_entry_at_entering=self.third,
            ),
            summary=f"enter {request.stage}",
            result_type=Union[Entered, str, None],
            current=self.current,
        )
        if isinstance(answer, Entered):
            return answer.workflow_id, answer.running
        # A worker of an earlier version ran the step: it answers the id of the workflow it started (or nothing).
        return answer, True

    def _tell_entry(self, change: ItemChanged) -> None:
        """Rules of the current entry that wait for a field hear of its change."""
        entry_id = entry_workflow_id(self.state.entity, self.state.item_id, self.state.entry_no)

        async def tell() -> None:
            try:
                await workflow.get_external_workflow_handle(entry_id).signal(ITEM_CHANGED, change)
            except Exception as error:  # the entry may have finished already
                workflow.logger.debug("entry %s not told: %s", entry_id, error)

        asyncio.create_task(tell())

    def _cancel_entry(self, workflow_id: str) -> None:
        """Asks the previous entry to stop; not awaited, since an entry that already finished may never answer."""

        async def cancel() -> None:
            try:
                await workflow.get_external_workflow_handle(workflow_id).cancel()
            except Exception as error:  # the entry may have finished already
                workflow.logger.debug("entry %s not cancelled: %s", workflow_id, error)

        asyncio.create_task(cancel())
