"""A pipeline's automation: read, checked and saved, for whoever changes it (`PUT /pipelines/{id}/automation`, the
console) or tries a draft (simulations). Every problem anywhere is one 422, each naming its field; a save replaces
the whole automation and keeps one secret per webhook trigger."""

from __future__ import annotations

import secrets

from typing import Any

from fastapi import HTTPException, status
from sqlmodel import Session, select

from activities.services.documents import BUILTIN_KINDS
from activities.rules import rule_types
from api.deps import hash_key
from api.lookups import stages_of
from models.domain.automation import AutomationConfig
from models.domain.validation import AutomationInvalid, ValidationContext, validate_automation
from models.item_data import load_automation
from models.settings import Settings
from models.tables import Automation, DocumentTemplate, HookSecret, Pipeline, Stage, User, utcnow


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
        rule_types=rule_types(session),
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


WEBHOOK = "webhook"


def webhook_triggers(config: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (stage, str(trigger.get("name")))
        for stage, automation in (config.get("stages") or {}).items()
        for trigger in (automation or {}).get("triggers") or []
        if trigger.get("type") == WEBHOOK
    }


def sync_hook_secrets(session: Session, pipeline_id: int, config: dict[str, Any]) -> None:
    """One secret per webhook trigger; a trigger kept under the same stage and name keeps its secret."""
    wanted = webhook_triggers(config)
    existing = session.exec(select(HookSecret).where(HookSecret.pipeline_id == pipeline_id)).all()
    kept = set()
    for row in existing:
        if (row.stage, row.trigger_name) in wanted:
            kept.add((row.stage, row.trigger_name))
        else:
            session.delete(row)
    for stage, name in sorted(wanted - kept):
        secret = secrets.token_urlsafe(32)
        session.add(
            HookSecret(pipeline_id=pipeline_id, stage=stage, trigger_name=name, secret=secret, secret_hash=hash_key(secret))
        )


def save_automation(session: Session, pipeline_id: int, stored: dict[str, Any]) -> None:
    """Replaces the pipeline's automation with `stored` (checked already) as its next version, and commits."""
    row = session.get(Automation, pipeline_id) or Automation(pipeline_id=pipeline_id, version=0)
    row.version += 1
    row.config = stored
    row.updated_at = utcnow()
    session.add(row)
    sync_hook_secrets(session, pipeline_id, stored)
    session.commit()


def change_automation(session: Session, settings: Settings, pipeline: Pipeline, raw: dict[str, Any]) -> None:
    """The pipeline's whole automation replaced by `raw`, checked as a whole first (a 422 listing every problem, and
    nothing saved)."""
    save_automation(session, pipeline.id, checked_automation(session, pipeline, settings, raw))


def current_automation(session: Session, pipeline_id: int) -> dict[str, Any]:
    """The pipeline's automation as it is saved (empty when none was)."""
    return load_automation(session, pipeline_id)[0].to_json()


def automation_public(session: Session, settings: Settings, pipeline_id: int) -> dict[str, Any]:
    """The automation as `GET /pipelines/{id}/automation` shows it: with its version and its webhooks' URLs."""
    row = session.get(Automation, pipeline_id)
    config = dict(row.config) if row is not None else AutomationConfig().to_json()
    hooks = session.exec(
        select(HookSecret).where(HookSecret.pipeline_id == pipeline_id).order_by(HookSecret.stage, HookSecret.trigger_name)
    ).all()
    return {
        **config,
        "version": row.version if row is not None else 0,
        "hooks": {f"{hook.stage}/{hook.trigger_name}": f"{settings.effective_public_url}/hooks/{hook.secret}" for hook in hooks},
    }
