"""A pipeline's saved automation versions: the list, one version, what one changes of another, and which items wait
right now on the rules a draft would remove or change.

An item in a stage runs the automation version its stage entry began with (`Item.entry_version`), or the one a
later save applied to it (`in_flight=apply`). A rule of its entry is waiting when the entry's timeline holds no
outcome of it yet (done, skipped, cancelled, failed, or waiting for an answer after its effect).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import HTTPException, status
from sqlmodel import Session, col, select

from api.errors import field_error
from api.lookups import stages_of
from models.domain.versions import FOLLOWED, automation_changes, piece_changes
from models.tables import Automation, AutomationVersion, Item, TimelineEntry

OUTCOMES = ("rule_done", "rule_skipped", "rule_cancelled", "rule_failed", "rule_waiting")
"""Timeline kinds after which an entry no longer waits on a rule."""
EMPTY: dict[str, Any] = {"constants": {}, "variables": {}, "stages": {}}
SHOWN_IDS = 500
"""At most this many item ids per waiting rule in an answer (the count is whole)."""


def version_public(row: AutomationVersion) -> dict[str, Any]:
    return {"version": row.version, "saved_at": row.saved_at, "saved_by": row.saved_by, "note": row.note,
            "in_flight": row.in_flight}


def list_versions(session: Session, pipeline_id: int) -> list[AutomationVersion]:
    """Every saved version, newest first."""
    return list(session.exec(
        select(AutomationVersion).where(AutomationVersion.pipeline_id == pipeline_id)
        .order_by(col(AutomationVersion.version).desc())
    ).all())


def get_version(session: Session, pipeline_id: int, number: int) -> AutomationVersion:
    row = session.get(AutomationVersion, (pipeline_id, number))
    if row is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND,
                            detail=f"Pipeline {pipeline_id} has no version {number} of its automation")
    return row


def current_version(session: Session, pipeline_id: int) -> tuple[int, AutomationVersion | None]:
    """The version saved now (0 before the first save) and its record."""
    row = session.get(Automation, pipeline_id)
    number = row.version if row is not None else 0
    return number, session.get(AutomationVersion, (pipeline_id, number)) if number else None


def diff(session: Session, pipeline_id: int, number: int, against: int | None, *, by_setting: bool = False
         ) -> dict[str, Any]:
    """What version `number` changes against version `against` (default: the one before it; 0 is the empty
    automation before the first save). `by_setting`: each changed setting named on its own."""
    to = get_version(session, pipeline_id, number)
    base = number - 1 if against is None else against
    if base == number:
        raise field_error(("query", "against"), f"against must name another version than {number}")
    if base == 0:
        before = EMPTY
    else:
        row = session.get(AutomationVersion, (pipeline_id, base))
        if row is None:
            raise field_error(("query", "against"), f"pipeline {pipeline_id} has no version {base}")
        before = row.config
    order = [stage.code for stage in stages_of(session, pipeline_id)]
    return {"from": base, "to": number, "changes": automation_changes(before, to.config, order, by_setting=by_setting)}


def preview(session: Session, pipeline_id: int, draft: dict[str, Any]) -> dict[str, Any]:
    """What saving `draft` (checked already) would change against the version saved now, and which items wait right
    now on each rule it removes or changes."""
    base = session.get(Automation, pipeline_id)
    order = [stage.code for stage in stages_of(session, pipeline_id)]
    return {
        "base_version": base.version if base is not None else 0,
        "changes": automation_changes(base.config if base is not None else EMPTY, draft, order),
        "waiting": waiting_on_changes(session, pipeline_id, draft),
    }


def _configs(session: Session, pipeline_id: int, numbers: set[int | None]) -> dict[int | None, dict[str, Any]]:
    """The config of each version named (an entry begun before versions were kept runs the oldest kept one)."""
    wanted = {number for number in numbers if number}
    rows = session.exec(select(AutomationVersion).where(
        AutomationVersion.pipeline_id == pipeline_id, col(AutomationVersion.version).in_(wanted or {0})
    )).all()
    configs: dict[int | None, dict[str, Any]] = {row.version: row.config for row in rows}
    oldest = session.exec(select(AutomationVersion).where(AutomationVersion.pipeline_id == pipeline_id)
                          .order_by(AutomationVersion.version).limit(1)).first()
    fallback = oldest.config if oldest is not None else EMPTY
    return {number: configs.get(number, fallback) if number else fallback for number in numbers}


def waiting_on_changes(session: Session, pipeline_id: int, draft: dict[str, Any]) -> list[dict[str, Any]]:
    """Which items wait right now on each rule `draft` removes or changes, compared with the version each item's
    stage entry runs: `{"stage", "rule", "change", "items", "item_ids"}`."""
    items = list(session.exec(
        select(Item).where(Item.pipeline_id == pipeline_id, col(Item.stage).is_not(None), Item.entry_no > 0)
        .order_by(Item.id)
    ).all())
    if not items:
        return []
    configs = _configs(session, pipeline_id, {item.entry_version for item in items})
    finished: set[tuple[int, int, str]] = set(session.exec(
        select(TimelineEntry.item_id, TimelineEntry.entry_no, TimelineEntry.rule_name).where(
            col(TimelineEntry.item_id).in_([item.id for item in items]), col(TimelineEntry.kind).in_(OUTCOMES),
        )
    ).all())
    draft_stages = draft.get("stages") or {}
    waiting: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for item in items:
        stage = (configs[item.entry_version].get("stages") or {}).get(item.stage) or {}
        drafted = {rule.get("name"): rule for rule in (draft_stages.get(item.stage) or {}).get("rules") or []}
        for rule in stage.get("rules") or []:
            name = rule.get("name")
            if (item.id, item.entry_no, name) in finished:
                continue
            if name not in drafted:
                waiting[(item.stage, name, "removed")].append(item.id)
            elif set(piece_changes(rule, drafted[name], "rule")) & set(FOLLOWED):
                waiting[(item.stage, name, "changed")].append(item.id)
    order = {stage.code: position for position, stage in enumerate(stages_of(session, pipeline_id))}
    return [
        {"stage": stage, "rule": rule, "change": change, "items": len(ids), "item_ids": ids[:SHOWN_IDS]}
        for (stage, rule, change), ids in sorted(waiting.items(), key=lambda pair: (order.get(pair[0][0], 0), pair[0]))
    ]
