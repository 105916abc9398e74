"""Pipelines: an ordered list of stages for deals or for leads, which an admin renames, extends, reorders and
prunes. Removing a stage moves the items in it first (as a user's move would, each entering the target stage) and
takes the stage's own rules and triggers out of the automation as a new version; a stage that other automation
still names (a rule that moves items to it, a copy into it) is refused with what names it."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, status
from sqlmodel import Session, select
from temporalio.client import Client

from api.errors import field_error, not_found
from api.lookups import stages_of
from api.schemas import PipelineCreate, StageAdd, StageUpdate
from api.usecases import automation, items
from models.domain.validation import AutomationInvalid, validate_automation
from models.settings import Settings
from models.tables import Automation, Item, Pipeline, Stage


def create_pipeline(session: Session, body: PipelineCreate) -> Pipeline:
    """A pipeline with its stages in the order given."""
    pipeline = Pipeline(entity_type=body.entity_type, name=body.name)
    session.add(pipeline)
    session.flush()
    for position, stage in enumerate(body.stages):
        session.add(Stage(pipeline_id=pipeline.id, position=position, **stage.model_dump()))
    session.commit()
    session.refresh(pipeline)
    return pipeline


def rename_pipeline(session: Session, pipeline: Pipeline, name: str) -> Pipeline:
    pipeline.name = name
    session.add(pipeline)
    session.commit()
    session.refresh(pipeline)
    return pipeline


def get_stage(session: Session, pipeline: Pipeline, code: str) -> Stage:
    stage = session.exec(select(Stage).where(Stage.pipeline_id == pipeline.id, Stage.code == code)).first()
    if stage is None:
        raise not_found(f"Stage of pipeline {pipeline.id}", code)
    return stage


def _place(stages: list[Stage], stage: Stage, position: int | None) -> None:
    """Puts `stage` at `position` (the end when None) among `stages` and numbers them all again."""
    others = [other for other in stages if other.id != stage.id]
    where = len(others) if position is None else min(max(position, 0), len(others))
    others.insert(where, stage)
    for number, each in enumerate(others):
        each.position = number


def add_stage(session: Session, pipeline: Pipeline, body: StageAdd) -> Stage:
    """A new stage, at `position` (0 first; default last). A code the pipeline has already is a 409."""
    stages = stages_of(session, pipeline.id)
    if any(stage.code == body.code for stage in stages):
        raise field_error(("body", "code"), f"pipeline {pipeline.id} has a stage {body.code} already",
                          status.HTTP_409_CONFLICT)
    stage = Stage(pipeline_id=pipeline.id, code=body.code, name=body.name, semantic=body.semantic)
    _place(stages, stage, body.position)
    session.add_all([*stages, stage])
    session.commit()
    session.refresh(stage)
    return stage


def change_stage(session: Session, pipeline: Pipeline, code: str, body: StageUpdate) -> Stage:
    """A stage renamed, given another semantic or moved to another position; its code stays."""
    stage = get_stage(session, pipeline, code)
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes:
        stage.name = changes["name"]
    if "semantic" in changes:
        stage.semantic = changes["semantic"]
    stages = stages_of(session, pipeline.id)
    if "position" in changes:
        _place(stages, stage, changes["position"])
    session.add_all(stages)
    session.commit()
    session.refresh(stage)
    return stage


def _without_stage(config: dict[str, Any], code: str) -> dict[str, Any]:
    return {**config, "stages": {key: value for key, value in (config.get("stages") or {}).items() if key != code}}


def _references(session: Session, settings: Settings, pipeline: Pipeline, code: str) -> list[str]:
    """What would still name the stage once it is gone: each problem of each pipeline's automation (this one without
    the stage's own rules and triggers) checked against the pipelines without it."""
    found: list[str] = []
    for row in session.exec(select(Automation).order_by(Automation.pipeline_id)).all():
        owner = session.get(Pipeline, row.pipeline_id)
        if owner is None:
            continue
        context = automation.validation_context(session, owner, settings)
        context.saving = False
        codes = dict(context.pipelines)
        entity, stage_codes = codes[pipeline.id]
        codes[pipeline.id] = (entity, [other for other in stage_codes if other != code])
        context.pipelines = codes
        config = row.config
        if owner.id == pipeline.id:
            context.stage_codes = [other for other in context.stage_codes if other != code]
            config = _without_stage(config, code)
        try:
            validate_automation(config, context)
        except AutomationInvalid as invalid:
            for error in invalid.errors:
                where = ".".join(str(part) for part in (error.get("loc") or []) if part != "body")
                found.append(f"pipeline {owner.name} ({owner.id}): {where}: {error.get('msg')}")
    return found


async def remove_stage(
    session: Session, client: Client, settings: Settings, pipeline: Pipeline, code: str, move_items_to: str | None,
    *, saved_by: str,
) -> None:
    """The stage removed: the items in it moved to `move_items_to` first (a 409 naming how many there are when no
    target is given), its rules and triggers taken out of the automation as a new version. Refused (409) for the
    pipeline's last stage, and while other automation still names the stage."""
    stage = get_stage(session, pipeline, code)
    stages = stages_of(session, pipeline.id)
    if len(stages) == 1:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT,
                            detail=f"stage {stage.name} ({code}) is the only stage of pipeline {pipeline.name} "
                                   f"({pipeline.id}); a pipeline keeps one")
    if move_items_to is not None and (move_items_to == code or move_items_to not in {s.code for s in stages}):
        raise field_error(("query", "move_items_to"),
                          f"give another stage of pipeline {pipeline.id} than {stage.name} ({code}) "
                          f"(its stages: {', '.join(f'{s.name} ({s.code})' for s in stages)})")
    references = _references(session, settings, pipeline, code)
    if references:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT,
                            detail=[{"type": "value_error", "loc": ["path", "code"],
                                     "msg": f"automation still names stage {stage.name} ({code}): {reference}"}
                                    for reference in references])
    inside = list(session.exec(
        select(Item).where(Item.pipeline_id == pipeline.id, Item.stage == code).order_by(Item.id)
    ).all())
    archived = [item for item in inside if item.archived_at is not None]
    if archived:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=(
            f"{len(archived)} archived {pipeline.entity_type}{'' if len(archived) == 1 else 's'} "
            f"({', '.join(str(item.id) for item in archived[:10])}) {'is' if len(archived) == 1 else 'are'} in stage "
            f"{stage.name} ({code}): restore {'it' if len(archived) == 1 else 'them'} first, then remove the stage"))
    if inside and move_items_to is None:
        raise field_error(("query", "move_items_to"),
                          f"{len(inside)} {pipeline.entity_type}{' is' if len(inside) == 1 else 's are'} in stage "
                          f"{stage.name} ({code}): say which stage {'it goes' if len(inside) == 1 else 'they go'} to",
                          status.HTTP_409_CONFLICT)
    for item in inside:
        await items.move_item(session, client, settings, item, move_items_to)
    row = session.get(Automation, pipeline.id)
    if row is not None and code in (row.config.get("stages") or {}):
        number = row.version + 1
        automation.save_version(session, pipeline.id, _without_stage(row.config, code), number, saved_by=saved_by,
                                note=f"stage {code} removed")
    session.delete(session.get(Stage, stage.id))
    session.flush()
    remaining = stages_of(session, pipeline.id)
    for number, each in enumerate(remaining):
        each.position = number
    session.add_all(remaining)
    session.commit()
