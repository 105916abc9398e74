"""What the timeline records about rules beyond their scheduling: a rule waiting after its effect and done once
the wait is over, a rule that failed, and the end of a stage entry (its rules cancelled because the item left,
or skipped)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session
from temporalio import activity

from activities.steps.planning import rule_text
from activities.keys import effect_key, outcome_key, part_key
from activities.rule import Deps
from models.item_data import load_automation
from models.store import add_timeline, get_by
from models.tables import Effect, Item, TimelineEntry
from workflows.types import (
    FINISH_ENTRY,
    RECORD_RULE_FAILED,
    RECORD_VERSION_APPLIED,
    RECORD_WAIT_END,
    EntryFinish,
    RuleCall,
    RuleFailure,
    VersionApplied,
    WaitEnded,
    WaitSpec,
)


def no_value_said(empty: list[str] | None) -> str:
    """What a `rule_done` text adds for the placeholders that rendered as nothing."""
    return f"; these placeholders had no value: {', '.join(empty)}" if empty else ""


def record_waiting(session: Session, call: RuleCall, wait: WaitSpec, empty: list[str] | None = None) -> None:
    """The rule took effect and now waits: it is done once the answer (or the change, or the timeout) is in."""
    what = "the answer to its callback URL" if wait.kind == "callback" else "a change of " + ", ".join(wait.fields)
    until = f", at most {wait.timeout_seconds:g} s" if wait.timeout_seconds else ""
    add_timeline(
        session, call.item_id, "rule_waiting", f"Rule {rule_text(call.rule)} waiting for {what}{until}",
        at=call.at, key=outcome_key(call.workflow_id, call.rule.name, "waiting"), rule_name=call.rule.name,
        entry_no=call.entry_no, wait=wait.kind, fields=wait.fields or None, timeout_seconds=wait.timeout_seconds,
        version=call.rule.version or None, empty_placeholders=empty or None,
    )


def record_done(
    session: Session, item_id: int, workflow_id: str, entry_no: int, rule: str, rule_type: str, at: datetime,
    result: dict[str, Any], detail: str = "", version: int = 0,
) -> None:
    """The rule's `rule_done` entry, once per rule and entry; a rule that waited names the placeholders its texts
    rendered as nothing, as its `rule_waiting` entry recorded them."""
    waiting = get_by(session, TimelineEntry, key=outcome_key(workflow_id, rule, "waiting"))
    empty = (waiting.data or {}).get("empty_placeholders") if waiting is not None else None
    add_timeline(
        session, item_id, "rule_done",
        f"Rule {rule} ({rule_type}) done" + (f": {detail}" if detail else "") + no_value_said(empty),
        at=at, key=outcome_key(workflow_id, rule, "done"), rule_name=rule, entry_no=entry_no,
        result=result or None, version=version or None, empty_placeholders=empty or None,
    )



class OutcomeSteps:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    @activity.defn(name=RECORD_RULE_FAILED)
    async def record_rule_failed(self, failure: RuleFailure) -> None:
        link = self.deps.settings.workflow_ui_link(failure.workflow_id)
        metrics = self.deps.metrics

        info = activity.info()
        # Once per step: its attempts share a key (another workflow, or a later step, records its own failure).
        key = part_key(effect_key(failure.workflow_id, failure.rule), "failed", info.workflow_id, info.workflow_run_id,
                       info.activity_id)

        def work(session: Session) -> None:
            if session.get(Effect, effect_key(failure.workflow_id, failure.rule)) is not None:
                return
            if get_by(session, TimelineEntry, key=key) is not None:
                return  # recorded by an earlier attempt of this step
            add_timeline(
                session,
                failure.item_id,
                "rule_failed",
                f"Rule {failure.rule} ({failure.rule_type}) failed: {failure.error}",
                key=key,
                at=failure.at,
                rule_name=failure.rule,
                entry_no=failure.entry_no,
                error=failure.error,
                rule_type=failure.rule_type,
                workflow_id=failure.workflow_id,
                workflow_url=link,
                version=failure.version or None,
            )
            metrics.after_commit(session, lambda: metrics.rule_finished(failure.rule_type, "failed"))

        await self.deps.db(work)

    @activity.defn(name=RECORD_WAIT_END)
    async def record_wait_end(self, ended: WaitEnded) -> None:
        if ended.timed_out:
            kind = "rule_timed_out"
        else:
            kind = "rule_callback_received" if ended.kind == "callback" else "rule_wait_ended"
        text = f"Rule {ended.rule}: {ended.detail}" + ("; going on" if ended.timed_out else "")

        def work(session: Session) -> None:
            add_timeline(
                session, ended.item_id, kind, text, at=ended.at,
                key=outcome_key(ended.workflow_id, ended.rule, "wait-ended"),
                rule_name=ended.rule, entry_no=ended.entry_no, timed_out=ended.timed_out,
                version=ended.version or None,
            )
            record_done(
                session, ended.item_id, ended.workflow_id, ended.entry_no, ended.rule, ended.rule_type or "rule",
                ended.at, ended.result, version=ended.version,
            )

        await self.deps.db(work)

    @activity.defn(name=FINISH_ENTRY)
    async def finish_entry(self, finish: EntryFinish) -> None:
        def work(session: Session) -> None:
            cancelled = list(finish.cancelled)
            item = session.get(Item, finish.item_id)
            archived = item is not None and item.archived_at is not None and item.entry_no == finish.entry_no
            reason, why = ("archived", "the item was archived") if archived else ("left", "the item left the stage")
            if finish.before_plan and finish.pipeline_id is not None:
                config, _ = load_automation(session, finish.pipeline_id)
                stage = config.stages.get(finish.stage or "")
                cancelled = [rule.name for rule in stage.rules] if stage else []
            for name in cancelled:
                add_timeline(
                    session,
                    finish.item_id,
                    "rule_cancelled",
                    f"Rule {name} cancelled: {why}",
                    at=finish.at,
                    key=outcome_key(finish.workflow_id, name, "cancelled"),
                    rule_name=name,
                    entry_no=finish.entry_no,
                    reason=reason,
                    version=finish.version or None,
                )
            for name, rule_type in finish.left_waiting.items():
                record_done(
                    session, finish.item_id, finish.workflow_id, finish.entry_no, name, rule_type, finish.at, {},
                    f"{why} before the wait was over", version=finish.version,
                )
            for name, reason in finish.skipped.items():
                add_timeline(
                    session,
                    finish.item_id,
                    "rule_skipped",
                    f"Rule {name} skipped: {reason}",
                    at=finish.at,
                    key=outcome_key(finish.workflow_id, name, "skipped"),
                    rule_name=name,
                    entry_no=finish.entry_no,
                    reason=reason,
                    version=finish.version or None,
                )

        await self.deps.db(work)

    @activity.defn(name=RECORD_VERSION_APPLIED)
    async def record_version_applied(self, applied: VersionApplied) -> None:
        """An entry took on a newer automation version: each rule it removed is cancelled (`reason: removed`), each
        rule it changed says what changed; once each."""
        def work(session: Session) -> None:
            for name in applied.removed:
                add_timeline(
                    session, applied.item_id, "rule_cancelled",
                    f"Rule {name} cancelled: version {applied.version} of the automation removed it",
                    at=applied.at, key=outcome_key(applied.workflow_id, name, "cancelled"), rule_name=name,
                    entry_no=applied.entry_no, reason="removed", version=applied.version,
                )
            for name, fields in applied.changed.items():
                add_timeline(
                    session, applied.item_id, "rule_changed",
                    f"Rule {name} follows version {applied.version} of the automation: its {', '.join(fields)} changed",
                    at=applied.at, key=part_key(outcome_key(applied.workflow_id, name, "changed"), applied.version),
                    rule_name=name, entry_no=applied.entry_no, fields=fields, version=applied.version,
                )

        await self.deps.db(work)
