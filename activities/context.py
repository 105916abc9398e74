"""The data tree that placeholders and conditions read: the item, its relations, constants, variables."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlmodel import Session

from models.tables import Company, Contact, Item, Pipeline, Stage, User
from activities.store import get_by


def entity_key(entity: str) -> str:
    return "Deal" if entity == "deal" else "Lead"


def _person(row: User | Contact | Company | None) -> dict[str, Any]:
    if row is None:
        return {"Id": None, "Name": None, "Email": None, "Phone": None}
    return {"Id": row.id, "Name": row.name, "Email": row.email, "Phone": row.phone}


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def item_tree(session: Session, item: Item) -> dict[str, Any]:
    pipeline = session.get(Pipeline, item.pipeline_id)
    stage = get_by(session, Stage, pipeline_id=item.pipeline_id, code=item.stage) if item.stage else None
    responsible = session.get(User, item.responsible_id)
    supervisor = session.get(User, responsible.supervisor_id) if responsible and responsible.supervisor_id else None
    return {
        "Id": item.id,
        "Title": item.title,
        "Amount": item.amount,
        "Currency": item.currency,
        "Stage": item.stage,
        "StageName": stage.name if stage else None,
        "Pipeline": pipeline.name if pipeline else None,
        "PipelineId": item.pipeline_id,
        "CloseDate": _iso(item.close_date),
        "CreatedAt": _iso(item.created_at),
        "Fields": dict(item.fields or {}),
        "Responsible": {**_person(responsible), "Supervisor": _person(supervisor)},
        "Contact": _person(session.get(Contact, item.contact_id) if item.contact_id else None),
        "Company": _person(session.get(Company, item.company_id) if item.company_id else None),
    }


def build_data(
    session: Session,
    item: Item,
    *,
    constants: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
    results: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        entity_key(item.entity_type): item_tree(session, item),
        "Constants": dict(constants or {}),
        "Variables": dict(variables or {}),
        "Rule": dict(results or {}),
    }


def date_fields(item: Item) -> dict[str, Any]:
    """The item's date fields a delay can be anchored to."""
    return {"close_date": item.close_date, "created_at": item.created_at, **{
        f"Fields.{name}": value for name, value in (item.fields or {}).items()
    }}
