"""A simulation's scratch database: a SQLite file of its own, seeded from the real database with what the rules
read (users, pipelines and their automation, custom rule types, my company, calendar, document templates and
numbering, the contacts and companies the item names) and, for an item that exists, the item with its history.
Nothing is ever written back.

The item's history comes in with its links made the simulation's own (`OwnLinks`): every capability token in it
(a public document link, a signing link, a tracking link) is swapped for a token of the simulation, and every link
to the real service points at the simulation instead. A rule that reuses an earlier rule's link in the simulation
(`{{Rule.invoice.public_url}}`) hands out the simulation's link, never one to the real document.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from models.db import make_engine
from models.logs import CAPABILITY_TOKEN
from models.tables import (
    CrmActivity,
    Automation,
    Company,
    Contact,
    CustomRuleType,
    Document,
    DocumentTemplate,
    Effect,
    Item,
    Message,
    Notification,
    Pipeline,
    Requisites,
    Sequence,
    SettingsRecord,
    Stage,
    Task,
    TimelineEntry,
    User,
    utcnow,
)

CONFIGURATION = (User, Pipeline, Stage, Automation, CustomRuleType, SettingsRecord, DocumentTemplate, Sequence)
"""Copied whole: what any rule of any pipeline may read."""
ITEM_HISTORY = (TimelineEntry, Effect, Task, CrmActivity, Notification, Message, Document)
"""Copied for an item that exists: what its current entry did so far, which its rules read and do not repeat."""
EFFECT_TABLES = (TimelineEntry, Task, CrmActivity, Notification, Message, Document, Item)
"""Where a simulation's effects land; rows above the seeded ones are the simulation's."""


def scratch_engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    SQLModel.metadata.create_all(engine)
    return engine


def _table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined]


TOKEN_COLUMNS = ("public_token", "tracking_token")
"""Columns that hold a capability token of their own row."""


class OwnLinks:
    """Makes copied rows' links the simulation's: real capability tokens swapped for new ones (the same new one for
    each real one), links to the real service (`real`) pointing at the simulation (`own`)."""

    def __init__(self, real: str, own: str) -> None:
        self.real, self.own = real.rstrip("/") + "/", own.rstrip("/") + "/"
        self.tokens: dict[str, str] = {}

    def token(self, real: str) -> str:
        return self.tokens.setdefault(real, secrets.token_urlsafe(32))

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            swapped = CAPABILITY_TOKEN.sub(lambda match: match.group(1) + self.token(match.group(2)), value)
            return swapped.replace(self.real, self.own)
        if isinstance(value, dict):
            return {key: self.value(inner) for key, inner in value.items()}
        if isinstance(value, list):
            return [self.value(inner) for inner in value]
        return value

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        return {column: (self.token(value) if column in TOKEN_COLUMNS and value else self.value(value))
                for column, value in row.items()}


def _copy(
    source: Connection, target: Connection, model: type[SQLModel], where: Any = None,
    made_own: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    statement = select(_table(model))
    if where is not None:
        statement = statement.where(where)
    rows = [dict(row) for row in source.execute(statement).mappings()]
    if made_own is not None:
        rows = [made_own(row) for row in rows]
    if rows:
        target.execute(insert(_table(model)), rows)
    return rows


def _parties(contact_ids: Iterable[int | None], company_ids: Iterable[int | None]) -> tuple[set[int], set[int]]:
    return {i for i in contact_ids if i}, {i for i in company_ids if i}


def seed(
    real: Engine,
    scratch: Engine,
    *,
    pipeline_id: int,
    draft: dict[str, Any] | None,
    contact_ids: Iterable[int | None],
    company_ids: Iterable[int | None],
    item_id: int | None = None,
    links: OwnLinks | None = None,
) -> dict[str, int]:
    """Copies what the rules read, with the item's history made the simulation's own by `links`; returns, per effect
    table, the highest id seeded (0 for none)."""
    made_own = links.row if links is not None else None
    contacts, companies = _parties(contact_ids, company_ids)
    with real.connect() as source, scratch.connect() as target:
        target.exec_driver_sql("PRAGMA foreign_keys=OFF")  # rows come in table by table, not in reference order
        target.commit()
        with target.begin():
            for model in CONFIGURATION:
                _copy(source, target, model)
            if item_id is not None:
                [row] = _copy(source, target, Item, Item.id == item_id, made_own)
                contacts |= {row["contact_id"]} - {None}
                companies |= {row["company_id"]} - {None}
                for model in ITEM_HISTORY:
                    _copy(source, target, model, model.item_id == item_id, made_own)
            _copy(source, target, Contact, Contact.id.in_(contacts))
            _copy(source, target, Company, Company.id.in_(companies))
            _copy(source, target, Requisites, (Requisites.owner_type == "contact") & Requisites.owner_id.in_(contacts))
            _copy(source, target, Requisites, (Requisites.owner_type == "company") & Requisites.owner_id.in_(companies))
            if draft is not None:
                automation = _table(Automation)
                target.execute(automation.delete().where(automation.c.pipeline_id == pipeline_id))
                target.execute(insert(automation), [{"pipeline_id": pipeline_id, "version": 0, "config": draft, "updated_at": utcnow()}])
        target.exec_driver_sql("PRAGMA foreign_keys=ON")
        target.commit()
        return {
            model.__name__: target.execute(select(_table(model).c.id).order_by(_table(model).c.id.desc())).scalar() or 0
            for model in EFFECT_TABLES
        }
