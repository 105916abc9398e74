"""Helpers: change responsible, change stage, update fields."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlmodel import Session

from activities.engine import RuleContext, RuleFailed
from models.tables import Item, User

STANDARD_FIELDS = {"title": str, "amount": float, "currency": str, "close_date": date.fromisoformat}


async def change_responsible(ctx: RuleContext) -> dict[str, Any]:
    user_id = ctx.settings["user_id"]

    def work(session: Session) -> dict[str, Any]:
        if session.get(User, user_id) is None:
            raise RuleFailed(f"settings.user_id: user {user_id} does not exist")
        item = session.get(Item, ctx.item_id)
        previous = item.responsible_id
        item.responsible_id = user_id
        session.add(item)
        return {"previous_id": previous, "user_id": user_id}

    return await ctx.finish(work)


async def change_stage(ctx: RuleContext) -> dict[str, Any]:
    stage = ctx.settings["stage"]
    ctx.request_move(stage)
    return {"stage": stage}


def _convert(name: str, value: Any) -> Any:
    convert = STANDARD_FIELDS[name]
    if value in (None, ""):
        return None
    try:
        return convert(value)
    except (TypeError, ValueError) as error:
        raise RuleFailed(f"settings.fields.{name}: {value!r} is not a valid {name}") from error


async def update_fields(ctx: RuleContext) -> dict[str, Any]:
    values = {name: ctx.render(value) if isinstance(value, str) else value
              for name, value in (ctx.settings.get("fields") or {}).items()}

    def work(session: Session) -> dict[str, Any]:
        item = session.get(Item, ctx.item_id)
        custom = dict(item.fields or {})
        for name, value in values.items():
            if name.startswith("Fields."):
                custom[name.removeprefix("Fields.")] = value
            elif name in STANDARD_FIELDS:
                setattr(item, name, _convert(name, value))
            else:
                raise RuleFailed(f"settings.fields.{name}: unknown field")
        item.fields = custom
        item.updated_at = ctx.at
        session.add(item)
        return {"updated": sorted(values)}

    return await ctx.finish(work)
