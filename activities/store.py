"""Small database helpers shared by the engine and the rule effects."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlmodel import Session, SQLModel, select

from models.tables import TimelineEntry

M = TypeVar("M", bound=SQLModel)


def get_by(session: Session, model: type[M], **where: Any) -> M | None:
    statement = select(model)
    for column, value in where.items():
        statement = statement.where(getattr(model, column) == value)
    return session.exec(statement).first()


def get_or_create(session: Session, model: type[M], effect_key: str, **values: Any) -> tuple[M, bool]:
    """The row keyed by `effect_key`, created with `values` when it does not exist yet."""
    existing = get_by(session, model, effect_key=effect_key)
    if existing is not None:
        return existing, False
    row = model(effect_key=effect_key, **values)
    session.add(row)
    session.flush()
    return row, True


def add_timeline(
    session: Session,
    item_id: int,
    kind: str,
    text: str,
    *,
    at: datetime | None = None,
    key: str | None = None,
    author_id: int | None = None,
    rule_name: str | None = None,
    entry_no: int | None = None,
    **data: Any,
) -> TimelineEntry:
    """Append a timeline entry; with a key, at most one entry per key ever exists."""
    if key is not None:
        existing = get_by(session, TimelineEntry, key=key)
        if existing is not None:
            return existing
    values: dict[str, Any] = dict(
        item_id=item_id,
        kind=kind,
        text=text,
        key=key,
        author_id=author_id,
        rule_name=rule_name,
        entry_no=entry_no,
        data={name: value for name, value in data.items() if value is not None},
    )
    if at is not None:
        values["at"] = at
    entry = TimelineEntry(**values)
    session.add(entry)
    session.flush()
    return entry
