"""Small database helpers shared by the engine and the rule effects."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, select

from models.tables import Item, TimelineEntry, utcnow

M = TypeVar("M", bound=SQLModel)


@cache
def _get_by_statement(model: type[SQLModel], columns: tuple[str, ...], nulls: frozenset[str]) -> Any:
    statement = select(model)
    for column in columns:
        field = getattr(model, column)
        statement = statement.where(field.is_(None) if column in nulls else field == bindparam(column))
    return statement


def get_by(session: Session, model: type[M], **where: Any) -> M | None:
    """The first row whose columns have the given values (None: the column is null). The statement is built once
    per model and set of columns."""
    nulls = frozenset(column for column, value in where.items() if value is None)
    params = {column: value for column, value in where.items() if value is not None}
    return session.exec(_get_by_statement(model, tuple(where), nulls), params=params).first()


def locked_item(session: Session, item_id: int) -> Item | None:
    """The item read under its row lock as it is now: a copy the session already holds is refreshed, so a change
    another writer committed since is seen before this transaction writes the item."""
    return session.get(Item, item_id, with_for_update=True, populate_existing=True)


def get_or_create(session: Session, model: type[M], effect_key: str, **values: Any) -> tuple[M, bool]:
    """The row keyed by `effect_key`, created with `values` when it does not exist yet."""
    existing = get_by(session, model, effect_key=effect_key)
    if existing is not None:
        return existing, False
    row = model(effect_key=effect_key, **values)
    session.add(row)
    session.flush()
    return row, True


@cache
def _insert_once_statement(dialect_name: str, table: Table, unique: str, returning: str) -> Any:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=[unique]).returning(table.c[returning])


def insert_once(session: Session, table: Table, values: dict[str, Any], unique: str, returning: str) -> Any:
    """Inserts a row unless one with the same `unique` value exists (one statement, no read first); the new
    row's `returning` column, or None when the row was there already. `values` holds the row's columns as the
    database stores them (JSON columns as plain data). The statement is built once per table: only the values change
    from one row to the next."""
    statement = _insert_once_statement(session.get_bind().dialect.name, table, unique, returning)
    return session.execute(statement, values).scalar()


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
    nulls: tuple[str, ...] = (),
    **data: Any,
) -> int:
    """Append a timeline entry and answer its id; with a key, at most one entry per key ever exists (the existing
    one's id is answered). `data` values that are None are left out, but for the names in `nulls`, which say null."""
    values: dict[str, Any] = dict(
        item_id=item_id,
        at=at if at is not None else utcnow(),
        kind=kind,
        text=text,
        key=key,
        author_id=author_id,
        rule_name=rule_name,
        entry_no=entry_no,
        data={name: value for name, value in data.items() if value is not None or name in nulls},
    )
    if key is None:
        entry = TimelineEntry(**values)
        session.add(entry)
        session.flush()
        return entry.id
    new_id = insert_once(session, TimelineEntry.__table__, values, "key", "id")
    return new_id if new_id is not None else get_by(session, TimelineEntry, key=key).id
