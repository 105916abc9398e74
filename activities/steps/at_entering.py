"""An entry the step that enters its stage finishes itself (engine generation 3).

An entry whose stage has no rules has nothing for a workflow to do. An entry whose rules are all due when the item
enters (each starting on entry and reading no other rule's results, none waiting for an answer) and all only touch
the database has nothing to wait for either: its rules run in the transaction that enters the stage, each still
keyed by its effect key and recorded on its own, as `rules.together` runs them. Such an entry starts no workflow;
its stage change says so (`data.workflow: false`), and the item workflow does not cancel or tell it anything later.

When any of those rules does not end done or skipped, or produced something the item workflow must hear of (an event,
a move) or waits after its effect, the transaction is undone and the entry is entered as any other, its workflow
started. The choice is made once, by the step that makes the stage change: a step that runs again (its answer lost)
finds the stage change made and answers as it says.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlmodel import Session

from activities.keys import stage_change_key
from activities.rule import Deps
from activities.steps.runner import RuleRunner, run_at_once
from models.store import get_by
from models.tables import TimelineEntry
from workflows.types import EntryInput, RuleCall, RuleOutcome, entry_workflow_id, starts_now

FINAL = ("done", "skipped")


class NotFinished(Exception):
    """The entry's rules did not all end in the step: its transaction is undone, and the entry gets a workflow."""


def may_finish(entry: EntryInput, at: datetime) -> bool:
    """Whether the step that enters the stage may try to finish `entry` itself: its rules (if any) all start at
    once, on entry, and only touch the database."""
    plan = entry.plan
    return plan is not None and all(
        rule.local and rule.start == "on_entry" and rule.wait_for is None and starts_now(rule, at) for rule in plan.rules
    )


def stage_change(session: Session, entity: str, item_id: int, entry_no: int) -> TimelineEntry | None:
    """The `stage_changed` timeline entry of the item's entry `entry_no` (None before it is made)."""
    return get_by(session, TimelineEntry, key=stage_change_key(entity, item_id, entry_no))


def finished_before(session: Session, entry: EntryInput) -> bool:
    """Whether the stage change of `entry` says the step that made it finished the entry (no workflow)."""
    change = stage_change(session, entry.entity, entry.item_id, entry.entry_no)
    return change is not None and change.entry_without_workflow


def finish(session: Session, deps: Deps, runners: Mapping[str, RuleRunner], entry: EntryInput, at: datetime) -> None:
    """Runs the entry's rules in `session`'s transaction and marks its stage change as run without a workflow;
    raises `NotFinished` (or the rule's error) when it cannot, for the caller to undo the transaction."""
    plan = entry.plan
    assert plan is not None
    workflow_id = entry_workflow_id(entry.entity, entry.item_id, entry.entry_no)
    calls = [
        RuleCall(item_id=entry.item_id, entity=entry.entity, pipeline_id=entry.pipeline_id, stage=entry.stage,
                 entry_no=entry.entry_no, workflow_id=workflow_id, rule=rule, at=at, constants=plan.constants,
                 variables=dict(plan.variables))
        for rule in plan.rules
    ]
    if calls and not all(_final(outcome) for outcome in run_at_once(session, deps, runners, calls)):
        raise NotFinished(workflow_id)
    change = stage_change(session, entry.entity, entry.item_id, entry.entry_no)
    if change is not None:
        change.mark_entry_without_workflow()
        session.add(change)


def _final(outcome: RuleOutcome) -> bool:
    return outcome.status in FINAL and not outcome.events and not outcome.moves and outcome.wait is None
