"""Checking an automation before it is saved (`PUT /pipelines/{id}/automation`) or simulated as a draft: every
problem anywhere is one 422, each naming its field."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, status
from sqlmodel import Session, select

from activities.rendering import BUILTIN_KINDS
from activities.rules import RULE_TYPES
from activities.rules.custom import app_rule_types
from api.lookups import stages_of
from models.domain.validation import AutomationInvalid, ValidationContext, validate_automation
from models.settings import Settings
from models.tables import DocumentTemplate, Pipeline, Stage, User


def validation_context(session: Session, pipeline: Pipeline, settings: Settings) -> ValidationContext:
    """What an automation may refer to: this pipeline's stages, users, pipelines, templates, rule types; and the
    region phone numbers without a country code are read in."""
    codes_by_pipeline: dict[int, list[str]] = {}
    for stage in session.exec(select(Stage).order_by(Stage.pipeline_id, Stage.position)).all():
        codes_by_pipeline.setdefault(stage.pipeline_id, []).append(stage.code)
    pipelines = {
        row.id: (row.entity_type, codes_by_pipeline.get(row.id, [])) for row in session.exec(select(Pipeline)).all()
    }
    templates = set(BUILTIN_KINDS) | set(session.exec(select(DocumentTemplate.code)).all())
    return ValidationContext(
        entity_type=pipeline.entity_type,
        stage_codes=[stage.code for stage in stages_of(session, pipeline.id)],
        user_ids=set(session.exec(select(User.id)).all()),
        pipelines=pipelines,
        templates=templates,
        rule_types={**RULE_TYPES, **app_rule_types(session)},
        pipeline_id=pipeline.id,
        phone_region=settings.sms_default_region,
    )


def _problem(error: dict[str, Any], where: tuple[str, ...]) -> dict[str, Any]:
    loc = list(error.get("loc") or [])
    if loc[:1] == ["body"]:
        loc = loc[1:]
    loc = [*where, *loc]
    return {"type": error.get("type", "value_error"), "loc": loc, "msg": str(error.get("msg", ""))}


def checked_automation(
    session: Session, pipeline: Pipeline, settings: Settings, raw: dict[str, Any], where: tuple[str, ...] = ("body",)
) -> dict[str, Any]:
    """The automation as it is stored; a 422 listing every problem (located below `where`) otherwise."""
    try:
        config = validate_automation(raw, validation_context(session, pipeline, settings))
    except AutomationInvalid as invalid:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[_problem(error, where) for error in invalid.errors]
        ) from invalid
    return config.to_json()
