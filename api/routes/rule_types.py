"""The catalogues of rule and trigger types, and registering an app's own rule type (called over HTTP)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from api.deps import PageDep, SessionDep, SettingsDep, admin_only, member_only, page_of
from api.schemas import CustomRuleTypeCreate, CustomRuleTypePublic
from api.usecases import rule_types

router = APIRouter(tags=["rule types"], dependencies=member_only)


@router.get("/rule-types", response_model=list[dict[str, Any]])
def list_rule_types(session: SessionDep, page: PageDep, response: Response):
    """Every rule type with its settings schema and return values: built-in ones, then the apps' own."""
    return page_of(rule_types.rule_catalogue(session), page, response)


@router.post(
    "/rule-types", response_model=CustomRuleTypePublic, status_code=status.HTTP_201_CREATED, dependencies=admin_only
)
async def create_rule_type(body: CustomRuleTypeCreate, session: SessionDep, settings: SettingsDep):
    """Register an app's own rule type: its rules call `handler_url` with the item's data and the rule's
    settings, and take the answer's `returns` values for later rules (`{{Rule.<rule name>.<value>}}`). A
    `handler_url` on a loopback or private address is refused unless STAGEFLOW_ALLOW_PRIVATE_URLS allows it,
    as every call of it is."""
    return await rule_types.register_rule_type(session, settings, body)


@router.get("/trigger-types", response_model=list[dict[str, Any]])
def list_trigger_types(page: PageDep, response: Response):
    """Every trigger type (event) with its filter schema."""
    return page_of(rule_types.trigger_catalogue(), page, response)
