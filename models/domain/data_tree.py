"""The data tree that placeholders and conditions read: `Deal`/`Lead` (the item and its relations), `Constants`,
`Variables` and `Rule` (results of earlier rules).

`item_tree` is the one description of the item's part: the engine fills it from the database
(`models.item_data`), and the save-time checks read its shape (`ITEM_TREE`) to tell which placeholders exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any

from models.domain.placeholders import money

ANY = object()
"""In `ITEM_TREE`: any name goes below this node (custom fields)."""


def entity_root(entity: str) -> str:
    """The name the item goes by in placeholders: `Deal` or `Lead`."""
    return "Deal" if entity == "deal" else "Lead"


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def person(row: Any | None) -> dict[str, Any]:
    """A user, contact or company as the tree shows it."""
    if row is None:
        return {"Id": None, "Name": None, "Email": None, "Phone": None}
    return {"Id": row.id, "Name": row.name, "Email": row.email, "Phone": row.phone}


def item_tree(
    item: Any,
    *,
    pipeline_name: str | None,
    stage_name: str | None,
    responsible: Any | None,
    supervisor: Any | None,
    contact: Any | None,
    company: Any | None,
) -> dict[str, Any]:
    """The item's part of the tree; `Fields` holds its custom fields by name."""
    return {
        "Id": item.id,
        "Title": item.title,
        "Amount": money(item.amount),
        "Currency": item.currency,
        "Paid": money(item.paid),
        "Stage": item.stage,
        "StageName": stage_name,
        "Pipeline": pipeline_name,
        "PipelineId": item.pipeline_id,
        "CloseDate": _iso(item.close_date),
        "CreatedAt": _iso(item.created_at),
        "Fields": dict(item.fields or {}),
        "Responsible": {**person(responsible), "Supervisor": person(supervisor)},
        "Contact": person(contact),
        "Company": person(company),
    }


def _shape(tree: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _shape(value) if isinstance(value, Mapping) else None for name, value in tree.items()}


_BLANK = SimpleNamespace(
    id=None, title=None, amount=None, currency=None, paid=None, stage=None, pipeline_id=None, close_date=None, created_at=None,
    fields=None,
)
ITEM_TREE: dict[str, Any] = {
    **_shape(item_tree(_BLANK, pipeline_name=None, stage_name=None, responsible=None, supervisor=None, contact=None,
                       company=None)),
    "Fields": ANY,
}
"""The shape of `item_tree`: a dict per group, None for a value, `ANY` for the free custom fields."""


def data_tree(
    entity: str,
    item: dict[str, Any],
    *,
    constants: Mapping[str, Any] | None = None,
    variables: Mapping[str, Any] | None = None,
    results: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        entity_root(entity): item,
        "Constants": dict(constants or {}),
        "Variables": dict(variables or {}),
        "Rule": dict(results or {}),
    }


def date_fields(item: Any) -> dict[str, Any]:
    """The item's date fields a delay can be anchored to."""
    return {"close_date": item.close_date, "created_at": item.created_at, **{
        f"Fields.{name}": value for name, value in (item.fields or {}).items()
    }}
