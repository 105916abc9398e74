"""The engine's stage steps: an item enters a stage, and an event finds the trigger that moves it."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.steps import at_entering
from activities.steps.planning import PlanningSteps, entry_began
from activities.steps.runner import RuleRunner
from activities.keys import event_key, part_key, stage_change_key
from activities.rule import Deps
from models.domain import timing
from models.domain.automation import AutomationConfig, TriggerConfig
from models.domain.events import FieldChanged, PaymentReceived, ResponsibleChanged
from models.domain.fields import number_or_none
from models.domain.triggers import Miss, scan
from models.item_data import build_data, load_automation
from models.store import add_timeline, get_by, locked_item
from models.tables import CrmActivity, Item, Stage, TimelineEntry
from workflows.client import start_entry
from workflows.types import (
    ENTER_STAGE, GENERATION, MATCH_TRIGGER, EnterCall, Entered, EntryInput, MatchCall, MatchResult, entry_workflow_id,
    item_workflow_id,
)

T = TypeVar("T")


def enter(session: Session, call: EnterCall, item: Item | None = None) -> tuple[Item, EnterCall, bool]:
    """The item's stage becomes `call.stage` (once per entry number), with its timeline entry; the activities
    that complete on a stage change are completed. `item`: the item as this transaction read it under its lock
    already. Answers the item, the stage change as made, and whether this call made it (not an earlier one).

    The item may already be further on than the item workflow knows: this same step ran before and its answer was
    lost, or a move's step ran and the server then aborted its update, so that the workflow never heard of it. Found
    in `call.stage` already, the item stays in that entry (answered as it was made); found in another stage, it
    enters `call.stage` as the entry after the one it is in, from the stage it is really in. A step that runs late
    (its workflow task was lost while it ran, and the workflow went on without it) carries a time before the item's
    last stage change: its own change is dated at that one, so that an item's stage changes follow each other in
    time as in number."""
    item = item or locked_item(session, call.item_id)
    if item is None:
        raise ApplicationError(f"{call.entity} {call.item_id} does not exist", type="UnknownItem", non_retryable=True)
    last_change = item.stage_changed_at and timing.as_utc(item.stage_changed_at)
    if item.entry_no >= call.entry_no:
        if item.stage == call.stage:
            return item, replace(call, entry_no=item.entry_no, at=last_change or call.at), False
        call = replace(call, entry_no=item.entry_no + 1, previous_stage=item.stage)
    if last_change and last_change > timing.as_utc(call.at):
        call = replace(call, at=last_change)
    item.stage, item.entry_no, item.stage_changed_at, item.updated_at = call.stage, call.entry_no, call.at, call.at
    session.add(item)
    by = {
        "created": "created",
        "manual": "moved by user",
        "trigger": f"moved by trigger {call.trigger}",
        "rule": f"moved by rule {call.rule}",
    }.get(call.reason, call.reason)
    author = call.as_user_id or (item.responsible_id if call.reason == "trigger" else None)
    text = f"Stage {call.previous_stage or '—'} → {call.stage} ({by})"
    add_timeline(
        session,
        item.id,
        "stage_changed",
        text,
        at=call.at,
        key=stage_change_key(call.entity, call.item_id, call.entry_no),
        author_id=author,
        entry_no=call.entry_no,
        **{"from": call.previous_stage, "to": call.stage, "reason": call.reason, "trigger": call.trigger,
           "event": call.event_type, "rule": call.rule},
    )
    for todo in session.exec(
        select(CrmActivity).where(
            CrmActivity.item_id == item.id, CrmActivity.completed == False,  # noqa: E712
            CrmActivity.complete_on_stage_change == True,  # noqa: E712
        )
    ):
        todo.completed, todo.completed_at = True, call.at
        session.add(todo)
        add_timeline(
            session, item.id, "activity_completed",
            f"Activity “{todo.description}” completed: the item left its stage for {call.stage}",
            at=call.at, key=part_key(stage_change_key(call.entity, call.item_id, call.entry_no), f"activity-{todo.id}"),
            entry_no=call.entry_no, activity_id=todo.id, activity_kind=todo.kind,
        )
    return item, call, True


class StageSteps:
    def __init__(self, deps: Deps, planning: PlanningSteps, runners: Mapping[str, RuleRunner]) -> None:
        self.deps = deps
        self.planning = planning
        self.runners = runners

    @activity.defn(name=ENTER_STAGE)
    async def enter_stage(self, call: EnterCall) -> str | Entered | None:
        """The item enters the stage. With `start_entry`, the new entry's plan is made in the same transaction and
        its workflow started once that has committed; the answer is the entry's workflow id. With
        `finish_entry_at_entering`, an entry that needs no workflow is finished in that transaction instead
        (`at_entering`), and the answer says whether a workflow runs the entry."""
        def work(session: Session, finishing: bool) -> tuple[EntryInput, bool] | None:
            item, entered, made = enter(session, call)
            if not call.start_entry:
                return None
            entry = self._planned(session, item, entered)
            return entry, self._finished(session, entry, entered.at, call.finish_entry_at_entering, finishing, made)

        made = await self._in_transaction(work, call.finish_entry_at_entering)
        if made is None:
            return None
        entry, finished = made
        workflow_id = await self._start(entry, call.search_attributes, finished)
        return Entered(workflow_id, running=not finished) if call.finish_entry_at_entering else workflow_id

    async def _in_transaction(self, work: Callable[[Session, bool], T], finishing: bool) -> T:
        """`work` in one transaction, first finishing the entry it makes when `finishing`; when that cannot be, the
        transaction is undone and `work` runs again without."""
        if finishing:
            try:
                return await self.deps.db(lambda session: work(session, True))
            except (at_entering.NotFinished, ApplicationError) as not_finished:
                activity.logger.debug("entry not finished at entering: %s", not_finished)
            except Exception:  # noqa: BLE001 - nothing of the transaction stays: the entry gets its workflow below
                activity.logger.warning("entry not finished at entering", exc_info=True)
        return await self.deps.db(lambda session: work(session, False))

    def _finished(
        self, session: Session, entry: EntryInput, at: datetime, asked: bool, finishing: bool, made: bool
    ) -> bool:
        """Whether `entry` is finished without a workflow (`asked`: the item workflow takes that answer). The step
        that `made` the stage change chooses: `finishing` and when its rules allow, it runs them in this transaction
        (raising when they do not all end). A step that finds the stage change made before answers as it says."""
        if not asked:
            return False
        if not made:
            return at_entering.finished_before(session, entry)
        if not finishing or not at_entering.may_finish(entry, at):
            return False
        at_entering.finish(session, self.deps, self.runners, entry, at)
        return True

    def _planned(
        self, session: Session, item: Item, call: EnterCall, automation: tuple[AutomationConfig, int] | None = None
    ) -> EntryInput:
        """The input of the entry `call` makes, with its plan."""
        began = entry_began(item, call.entry_no, call.at)
        return EntryInput(
            item_id=item.id, entity=call.entity, pipeline_id=item.pipeline_id, stage=call.stage,
            entry_no=call.entry_no, entered_at=began, parent_workflow_id=item_workflow_id(call.entity, item.id),
            engine=GENERATION,
            plan=self.planning.plan(
                session, item, item.pipeline_id, call.stage, call.entry_no,
                entry_workflow_id(call.entity, item.id, call.entry_no), began, automation,
            ),
        )

    async def _start(self, entry: EntryInput, search_attributes: bool, finished: bool = False) -> str:
        """Starts the entry's workflow (unless the step `finished` the entry); its workflow id."""
        if finished:
            return entry_workflow_id(entry.entity, entry.item_id, entry.entry_no)
        if self.deps.client is None:
            raise ApplicationError(
                "this worker has no Temporal client to start stage entries with", type="NoClient", non_retryable=True
            )
        return await start_entry(
            self.deps.client, entry, task_queue=activity.info().task_queue, search_attributes=search_attributes
        )

    @activity.defn(name=MATCH_TRIGGER)
    async def match_trigger(self, call: MatchCall) -> MatchResult:
        """The first trigger the event matches; with `enter_entry_no`, the item also enters that trigger's stage."""
        def work(session: Session, finishing: bool) -> tuple[MatchResult, EntryInput | None]:
            item = locked_item(session, call.item_id) if call.enter_entry_no else session.get(Item, call.item_id)
            if item is None or call.stage is None:
                return MatchResult(), None
            matching = call
            if call.enter_entry_no and item.entry_no >= call.enter_entry_no:
                match = _answered_before(session, call, item)
                if match is None:
                    # The item entered stages the item workflow never heard of (a move's update the server aborted
                    # after its step ran): the event meets the triggers of the stage the item is really in.
                    matching = replace(call, stage=item.stage, enter_entry_no=item.entry_no + 1)
                elif match.entered and call.start_entry:
                    entering = replace(_entering(call, match.stage, match.trigger, None), entry_no=item.entry_no)
                    entry = self._planned(session, item, entering)
                    match.entry_running = not self._finished(
                        session, entry, entering.at, call.finish_entry_at_entering, finishing, made=False)
                    return match, entry
                else:
                    return match, None
            config, version = load_automation(session, matching.pipeline_id)
            order = [
                stage.code
                for stage in session.exec(
                    select(Stage).where(Stage.pipeline_id == matching.pipeline_id).order_by(Stage.position, Stage.id)
                )
            ]
            _add_payment(session, matching, item)
            data = functools.cache(
                lambda: build_data(session, item, constants=config.constants, variables=config.variables))
            found, misses = scan(config, order, matching.stage, matching.event.type, matching.event.data or {}, data)
            _record_event(session, matching, found, misses)
            if found is not None or misses:
                metrics = self.deps.metrics
                metrics.after_commit(session, lambda: metrics.trigger_checked(found is not None))
            if found is None:
                return MatchResult(), None
            stage, trigger = found
            match = MatchResult(stage=stage, trigger=trigger.name, as_user_id=trigger.as_user_id)
            if matching.enter_entry_no and stage != matching.stage:
                entering = _entering(matching, stage, trigger.name, trigger.as_user_id)
                item, entering, made = enter(session, entering, item)
                match.entered = True
                if not matching.start_entry:
                    return match, None
                entry = self._planned(session, item, entering, (config, version))
                match.entry_running = not self._finished(
                    session, entry, entering.at, call.finish_entry_at_entering, finishing, made)
                return match, entry
            return match, None

        match, entry = await self._in_transaction(work, call.finish_entry_at_entering)
        if entry is not None:
            match.entry_workflow_id = await self._start(entry, call.search_attributes, not match.entry_running)
        return match


def _entering(call: MatchCall, stage: str, trigger: str | None, as_user_id: int | None) -> EnterCall:
    """The stage change a match makes."""
    return EnterCall(
        item_id=call.item_id, entity=call.entity, stage=stage, previous_stage=call.stage,
        entry_no=call.enter_entry_no, at=call.at, reason="trigger", as_user_id=as_user_id,
        trigger=trigger, event_type=call.event.type, start_entry=call.start_entry,
        search_attributes=call.search_attributes,
    )


SELF_REPORTED = (FieldChanged.TYPE, ResponsibleChanged.TYPE)
"""Events of the CRM's own edits: their `field_changed` timeline entry says what changed, so they are recorded again
only when they fire a trigger."""


def _event_id(call: MatchCall) -> str | None:
    """The event's id: the client's, else this step's own (the same on each of its attempts)."""
    info = activity.info() if activity.in_activity() else None
    return call.event.event_id or (f"{info.workflow_run_id}/{info.activity_id}" if info is not None else None)


MAX_PAYMENT = 1e15
"""The largest payment added up, as `POST /deals/{id}/payments` takes."""


def _add_payment(session: Session, call: MatchCall, item: Item) -> None:
    """A payment in the item's currency adds to what the item has been paid, before its triggers are asked (their
    conditions may compare `Paid` with `Amount`). Once per event: an attempt that finds the event on the timeline
    already added it."""
    if call.event.type != PaymentReceived.TYPE:
        return
    event_id = _event_id(call)
    if event_id and get_by(session, TimelineEntry, key=event_key(call.entity, call.item_id, event_id)) is not None:
        return
    payment = PaymentReceived.read(call.event.data or {})
    amount = number_or_none(payment.amount)
    currency = payment.currency if payment.currency is None or isinstance(payment.currency, str) else ""
    if amount is None or not math.isfinite(amount) or not 0 <= amount <= MAX_PAYMENT or currency == "":
        return  # not a payment anyone can add up: its event is still recorded and matched as sent
    if currency and item.currency and currency.upper() != item.currency.upper():
        return
    item.paid = round((item.paid or 0) + amount, 3)
    session.add(item)


def _record_event(
    session: Session, call: MatchCall, found: tuple[str, TriggerConfig] | None, misses: list[Miss]
) -> None:
    """The event on the item's timeline: the trigger it fired, or why each trigger of its type did not."""
    event = call.event
    if found is None and event.type in SELF_REPORTED:
        return
    if found is not None:
        stage, trigger = found
        text = f"Event {event.type} fired trigger {trigger.name}: the item moves to {stage}"
    elif misses:
        why = "; ".join(f"trigger {miss.trigger} ({miss.stage}): {miss.reason}" for miss in misses)
        text = f"Event {event.type} moved nothing: {why}"
    else:
        text = f"Event {event.type} moved nothing: no trigger of this pipeline waits for it"
    event_id = _event_id(call)
    add_timeline(
        session, call.item_id, "event_received", text, at=call.at,
        key=event_key(call.entity, call.item_id, event_id) if event_id else None, nulls=("matched",),
        type=event.type, event_id=event.event_id, matched=found[1].name if found else None,
        stage=found[0] if found else None,
        why_not=[{"trigger": miss.trigger, "stage": miss.stage, "reason": miss.reason} for miss in misses] or None,
    )


def _answered_before(session: Session, call: MatchCall, item: Item) -> MatchResult | None:
    """This same step ran before (its workflow task was lost, or its update aborted) when the event is on the
    timeline already: its answer, read back, rather than a new match on data that already shows the new stage. It
    entered the stage it matched when the item is in that stage now. None: the step has not run before."""
    event_id = _event_id(call)
    earlier = get_by(session, TimelineEntry, key=event_key(call.entity, call.item_id, event_id)) if event_id else None
    if earlier is None:
        return None
    stage = (earlier.data or {}).get("stage")
    if stage is None:
        return MatchResult()
    return MatchResult(stage=stage, trigger=earlier.data.get("matched"), entered=item.stage == stage)
