"""The catalogues of rule and trigger types, and an app's own rule types (called over HTTP)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from sqlmodel import select

from activities.rules import RULE_TYPES
from activities.rules.custom import CustomType, custom_rule_types
from activities.transports.net import registration_refusal, validate_url_syntax
from api.deps import PageDep, SessionDep, SettingsDep, admin_only, member_only, page_of
from api.errors import Problems, field_error
from api.schemas import CustomRuleTypeCreate, CustomRuleTypePublic
from models.domain.rule_types import rule_type_catalogue
from models.domain.triggers import trigger_type_catalogue
from models.tables import CustomRuleType

router = APIRouter(tags=["rule types"], dependencies=member_only)


def _loc(message: str) -> tuple[list[str], str]:
    """`custom_type` names the part at fault before a colon: `settings_schema.properties.x: ...`."""
    where, sep, text = message.partition(": ")
    if not sep or " " in where:
        return ["body", "settings_schema"], message
    return ["body", *where.split(".")], text


@router.get("/rule-types", response_model=list[dict[str, Any]])
def list_rule_types(session: SessionDep, page: PageDep, response: Response):
    """Every rule type with its settings schema and return values: built-in ones, then the apps' own."""
    return page_of(rule_type_catalogue(RULE_TYPES, custom_rule_types(session)), page, response)


@router.post(
    "/rule-types", response_model=CustomRuleTypePublic, status_code=status.HTTP_201_CREATED, dependencies=admin_only
)
async def create_rule_type(body: CustomRuleTypeCreate, session: SessionDep, settings: SettingsDep):
    """Register an app's own rule type: its rules call `handler_url` with the item's data and the rule's
    settings, and take the answer's `returns` values for later rules (`{{Rule.<rule name>.<value>}}`). A
    `handler_url` on a loopback or private address is refused unless STAGEFLOW_ALLOW_PRIVATE_URLS allows it,
    as every call of it is."""
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


@router.get("/trigger-types", response_model=list[dict[str, Any]])
def list_trigger_types(page: PageDep, response: Response):
    """Every trigger type (event) with its filter schema."""
    return page_of(trigger_type_catalogue(), page, response)
