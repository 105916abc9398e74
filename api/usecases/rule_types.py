"""The catalogues of rule and trigger types (what `GET /rule-types` lists and the console's forms are made from),
and registering an app's own rule type, whose rules call it over HTTP."""

from __future__ import annotations

from typing import Any

from fastapi import status
from sqlmodel import Session, select

from activities.rules import RULE_TYPES, rule_types
from activities.rules.custom import CustomType
from activities.transports.net import registration_refusal, validate_url_syntax
from api.errors import Problems, field_error
from api.schemas import CustomRuleTypeCreate
from models.domain.rule_types import rule_type_catalogue
from models.domain.triggers import trigger_type_catalogue
from models.settings import Settings
from models.tables import CustomRuleType


def rule_catalogue(session: Session) -> list[dict[str, Any]]:
    """Every rule type with its settings schema and return values: the built-in ones, then the custom ones."""
    return rule_type_catalogue(rule_types(session))


def trigger_catalogue() -> list[dict[str, Any]]:
    """Every trigger type (the event it waits for) with its filter schema."""
    return trigger_type_catalogue()


def _loc(message: str) -> tuple[list[str], str]:
    """`CustomType.from_row` names the part at fault before a colon: `settings_schema.properties.x: ...`."""
    where, sep, text = message.partition(": ")
    if not sep or " " in where:
        return ["body", "settings_schema"], message
    return ["body", *where.split(".")], text


async def register_rule_type(session: Session, settings: Settings, body: CustomRuleTypeCreate) -> CustomRuleType:
    """A custom rule type: its schema must make a settings form, its handler URL must be one that rules may call
    (not loopback or private unless STAGEFLOW_ALLOW_PRIVATE_URLS allows it), its name must be new."""
    problems = Problems()
    if (url_problem := validate_url_syntax(body.handler_url)) is not None:
        problems.add(("body", "handler_url"), url_problem)
    elif (refusal := await registration_refusal(body.handler_url, allow_private=settings.allow_private_urls)):
        problems.add(("body", "handler_url"), refusal)
    try:
        CustomType.from_row(body, reserved=RULE_TYPES)
    except ValueError as error:
        loc, msg = _loc(str(error))
        problems.add(loc, msg)
    problems.raise_if_any()
    if session.exec(select(CustomRuleType.id).where(CustomRuleType.name == body.name)).first() is not None:
        raise field_error(("body", "name"), f"rule type {body.name} exists", status.HTTP_409_CONFLICT)
    row = CustomRuleType.model_validate(body)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row
