"""A pipeline's automation: read, checked and saved, for whoever changes it (`PUT /pipelines/{id}/automation`, the
console) or tries a draft (simulations). Every problem anywhere is one 422, each naming its field; a save replaces
the whole automation, keeps one secret per webhook trigger, and is kept as a new version.

A save based on a version that is no longer the current one (`If-Match: "<version>"`) is refused with a 409 that
names the current version and who saved it, and changes nothing; two saves racing from the same version end with
one saved and one refused, whichever process runs them. With `in_flight=apply`, the entries already waiting follow
the new version (`ApplyVersionWorkflow`, started before the save commits, so no crash can save without applying).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import HTTPException, status
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio.client import Client

from activities.services.documents import BUILTIN_KINDS
from activities.rules import rule_types
from api.deps import hash_key
from api.errors import field_error
from api.lookups import stages_of
from api.usecases.versions import current_version, get_version
from models.domain.automation import AutomationConfig
from models.domain.validation import AutomationInvalid, ValidationContext, validate_automation
from models.item_data import load_automation
from activities.transports.channels import approved_templates
from models.settings import Settings
from models.tables import Automation, AutomationVersion, DocumentTemplate, HookSecret, Pipeline, Stage, User, utcnow
from workflows import client as workflow_client

InFlight = Literal["keep", "apply"]
IF_MATCH = re.compile(r'^(?:W/)?"([0-9]{1,9})"$')
MAX_NOTE = 500


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
        channel_templates=approved_templates(settings),
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


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None) -> int | None:
    """The version an `If-Match` header names (`"7"`); None without one (or `*`): the save is not checked."""
    if if_match is None or if_match.strip() == "*":
        return None
    found = IF_MATCH.match(if_match.strip())
    if found is None:
        raise field_error(("header", "If-Match"),
                          'give the version the change is based on, as the ETag of GET /pipelines/{id}/automation: "7"')
    return int(found.group(1))


def checked_note(note: Any) -> str:
    if note is None:
        return ""
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise field_error(("body", "note"), f"a note is a text of at most {MAX_NOTE} characters")
    return note.strip()


def conflict(session: Session, pipeline_id: int, expected: int | None) -> HTTPException:
    """The 409 of a save based on another version than the current one: the current version, who saved it, when."""
    number, record = current_version(session, pipeline_id)
    who = f", saved by {record.saved_by} at {record.saved_at:%Y-%m-%d %H:%M} UTC" if record is not None else ""
    based = f"; this change was based on version {expected}" if expected is not None else ""
    return HTTPException(
        status_code=status.HTTP_409_CONFLICT,
        detail=f"The automation of pipeline {pipeline_id} is at version {number}{who}{based}. Read it again, then "
               "make the change on it.",
        headers={"ETag": etag(number)},
    )


@dataclass
class Saved:
    version: int
    in_flight: str
    apply_workflow_id: str | None = None


def save_version(
    session: Session, pipeline_id: int, stored: dict[str, Any], number: int, *, saved_by: str, note: str = "",
    in_flight: str = "keep", apply_workflow_id: str | None = None,
) -> Saved:
    """Replaces the pipeline's automation with `stored` (checked already) as version `number`, which must follow the
    current one; a 409 when another save made it first. Commits."""
    if number == 1 and session.get(Automation, pipeline_id) is None:
        session.add(Automation(pipeline_id=pipeline_id, version=number, config=stored))
    else:
        moved = session.execute(
            update(Automation)
            .where(col(Automation.pipeline_id) == pipeline_id, col(Automation.version) == number - 1)
            .values(version=number, config=stored, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:
            session.rollback()
            raise conflict(session, pipeline_id, number - 1)
    session.add(AutomationVersion(pipeline_id=pipeline_id, version=number, config=stored, saved_by=saved_by,
                                  note=note, in_flight=in_flight, apply_workflow_id=apply_workflow_id))
    sync_hook_secrets(session, pipeline_id, stored)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise conflict(session, pipeline_id, number - 1) from None
    session.expire_all()
    return Saved(version=number, in_flight=in_flight, apply_workflow_id=apply_workflow_id)


async def publish(
    session: Session, client: Client, settings: Settings, pipeline: Pipeline, raw: dict[str, Any], *, saved_by: str,
    note: str = "", expected: int | None = None, in_flight: InFlight = "keep",
) -> Saved:
    """Checks `raw` as a whole and saves it as the pipeline's next version (a 422 listing every problem, or a 409
    when `expected` is not the current version; nothing saved either way). With `apply`, the entries already waiting
    follow it; with `keep` (the default), they go on with the version they entered with."""
    stored = checked_automation(session, pipeline, settings, raw)
    current, _ = current_version(session, pipeline.id)
    if expected is not None and expected != current:
        raise conflict(session, pipeline.id, expected)
    number = current + 1
    apply_workflow_id = None
    if in_flight == "apply":
        apply_workflow_id = await workflow_client.start_apply(client, settings, pipeline.id, number)
    return save_version(session, pipeline.id, stored, number, saved_by=saved_by, note=note, in_flight=in_flight,
                        apply_workflow_id=apply_workflow_id)


async def restore(
    session: Session, client: Client, settings: Settings, pipeline: Pipeline, number: int, *, saved_by: str,
    note: str = "", expected: int | None = None, in_flight: InFlight = "keep",
) -> Saved:
    """Version `number`'s automation saved again, as the next version (checked as any save is: what it refers to
    may have gone since)."""
    old = get_version(session, pipeline.id, number)
    return await publish(session, client, settings, pipeline, dict(old.config), saved_by=saved_by,
                         note=note or f"restored version {number}", expected=expected, in_flight=in_flight)


def current_automation(session: Session, pipeline_id: int) -> dict[str, Any]:
    """The pipeline's automation as it is saved (empty when none was)."""
    return load_automation(session, pipeline_id)[0].to_json()


def automation_public(session: Session, settings: Settings, pipeline_id: int) -> dict[str, Any]:
    """The automation as `GET /pipelines/{id}/automation` shows it: with its version, its webhooks' URLs, and what
    the entries already waiting did when it was saved (`in_flight`, and the workflow that applied it to them)."""
    row = session.get(Automation, pipeline_id)
    config = dict(row.config) if row is not None else AutomationConfig().to_json()
    hooks = session.exec(
        select(HookSecret).where(HookSecret.pipeline_id == pipeline_id).order_by(HookSecret.stage, HookSecret.trigger_name)
    ).all()
    number = row.version if row is not None else 0
    record = session.get(AutomationVersion, (pipeline_id, number)) if number else None
    answer = {
        **config,
        "version": number,
        "hooks": {f"{hook.stage}/{hook.trigger_name}": f"{settings.effective_public_url}/hooks/{hook.secret}" for hook in hooks},
    }
    if record is not None:
        answer["in_flight"] = record.in_flight
        if record.apply_workflow_id:
            answer["apply_workflow_id"] = record.apply_workflow_id
    return answer
