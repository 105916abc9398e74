"""Rules whose last outcome is failed: a `rule_failed` timeline entry of a stage entry, and nothing since that
settles the rule (no effect stored for it: done or skipped; no cancellation). What the failures listing shows and
what a bulk retry takes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from activities.keys import effect_key, outcome_key, stage_change_key
from models.tables import Effect, Item, Operation, OperationTarget, TimelineEntry

FAILED_TYPE = re.compile(r"^Rule .* \(([a-z][a-z0-9_]*)\) failed: ")
"""The rule type in the text of a `rule_failed` entry written before the entry's data named it."""


@dataclass
class FailedRule:
    item_id: int
    entity: str
    pipeline_id: int
    stage: str
    entry_no: int
    workflow_id: str
    rule: str
    rule_type: str
    error: str
    failed_at: datetime
    version: int = 0


def _rule_type(entry: TimelineEntry) -> str:
    named = (entry.data or {}).get("rule_type")
    if named:
        return str(named)
    found = FAILED_TYPE.match(entry.text or "")
    return found.group(1) if found else "unknown"


def open_failures(
    session: Session, *, since: datetime | None = None, until: datetime | None = None,
    pipeline_id: int | None = None, rule_type: str | None = None,
) -> list[FailedRule]:
    """Every rule of a stage entry that failed in the window (by when it failed) and has not been settled since,
    oldest first; one per entry and rule, with its latest error. An archived item's are left out: its entry was
    cancelled."""
    statement = (
        select(TimelineEntry, Item.entity_type, Item.pipeline_id)
        .join(Item, col(Item.id) == TimelineEntry.item_id)
        .where(TimelineEntry.kind == "rule_failed", col(Item.archived_at).is_(None))
        .order_by(col(TimelineEntry.at), col(TimelineEntry.id))
    )
    if since is not None:
        statement = statement.where(TimelineEntry.at >= since)
    if until is not None:
        statement = statement.where(TimelineEntry.at < until)
    if pipeline_id is not None:
        statement = statement.where(Item.pipeline_id == pipeline_id)
    latest: dict[tuple[str, str], tuple[TimelineEntry, str, int]] = {}
    for entry, entity, pipeline in session.exec(statement):
        workflow_id = (entry.data or {}).get("workflow_id")
        if not workflow_id or not entry.rule_name:
            continue
        latest[(workflow_id, entry.rule_name)] = (entry, entity, pipeline)
    if not latest:
        return []
    settled = _present(session, col(Effect.key), [effect_key(workflow, rule) for workflow, rule in latest])
    cancelled = _present(session, col(TimelineEntry.key),
                         [outcome_key(workflow, rule, "cancelled") for workflow, rule in latest])
    stages = _entry_stages(session, [(entity, entry.item_id, entry.entry_no or 0)
                                     for entry, entity, _ in latest.values()])
    found = []
    for (workflow_id, rule), (entry, entity, pipeline) in latest.items():
        if effect_key(workflow_id, rule) in settled or outcome_key(workflow_id, rule, "cancelled") in cancelled:
            continue
        kind = _rule_type(entry)
        if rule_type is not None and kind != rule_type:
            continue
        data = entry.data or {}
        found.append(FailedRule(
            item_id=entry.item_id, entity=entity, pipeline_id=pipeline,
            stage=stages.get(stage_change_key(entity, entry.item_id, entry.entry_no or 0), ""),
            entry_no=entry.entry_no or 0, workflow_id=workflow_id, rule=rule, rule_type=kind,
            error=str(data.get("error") or ""), failed_at=entry.at, version=int(data.get("version") or 0),
        ))
    return found


def _present(session: Session, column, keys: list[str]) -> set[str]:
    """The keys that `column` holds, asked a few hundred at a time."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        found.update(session.exec(select(column).where(column.in_(keys[start:start + 500]))).all())
    return found


def _entry_stages(session: Session, entries: list[tuple[str, int, int]]) -> dict[str, str]:
    """The stage each stage entry entered, by the key of its stage change."""
    keys = sorted({stage_change_key(entity, item_id, entry_no) for entity, item_id, entry_no in entries})
    stages: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        for key, data in session.exec(select(TimelineEntry.key, TimelineEntry.data).where(
                col(TimelineEntry.key).in_(keys[start:start + 500]))):
            stages[key] = str((data or {}).get("to") or "")
    return stages


def being_retried(session: Session) -> set[tuple[str, str]]:
    """(entry workflow id, rule) of the failed rules an unfinished retry operation is still to run: a second
    operation leaves them to it, so that no rule runs in two operations at once."""
    return set(session.exec(
        select(OperationTarget.workflow_id, OperationTarget.rule)
        .join(Operation, col(Operation.id) == OperationTarget.operation_id)
        .where(OperationTarget.status == "pending", col(Operation.finished_at).is_(None))
    ).all())
