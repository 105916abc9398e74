"""Small reads shared by several routers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query
from sqlmodel import Session, select
from sqlmodel.sql.expression import SelectOfScalar

from api.deps import MAX_ID
from api.errors import field_error, not_found
from api.schemas import PipelinePublic, StagePublic
from models.tables import Contact, Item, Pipeline, Stage

CONTACT_CHOICES = 500
"""The most contacts a form offers to choose from."""


def stages_of(session: Session, pipeline_id: int) -> list[Stage]:
    return list(session.exec(select(Stage).where(Stage.pipeline_id == pipeline_id).order_by(Stage.position)).all())


def stage_names(session: Session, pipeline_id: int) -> dict[str, str]:
    """The pipeline's stage names by code, as pages name stages."""
    return {stage.code: stage.name for stage in stages_of(session, pipeline_id)}


def contacts_by_name(session: Session) -> list[Contact]:
    """The contacts a form offers, by name (the first `CONTACT_CHOICES`)."""
    return list(session.exec(select(Contact).order_by(Contact.name, Contact.id).limit(CONTACT_CHOICES)).all())


def get_pipeline(session: Session, pipeline_id: int) -> Pipeline:
    pipeline = session.get(Pipeline, pipeline_id)
    if pipeline is None:
        raise not_found("Pipeline", pipeline_id)
    return pipeline


def pipeline_public(session: Session, pipeline: Pipeline) -> PipelinePublic:
    stages = [StagePublic.model_validate(stage) for stage in stages_of(session, pipeline.id)]
    return PipelinePublic.model_validate(pipeline, update={"stages": stages})


@dataclass(frozen=True)
class ItemRef:
    entity: str
    item_id: int


def item_ref(
    deal_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only those of this deal")] = None,
    lead_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only those of this lead")] = None,
) -> ItemRef | None:
    """The `deal_id=` or `lead_id=` filter of a list."""
    if deal_id is not None and lead_id is not None:
        raise field_error(("query", "lead_id"), "give deal_id or lead_id, not both")
    if deal_id is not None:
        return ItemRef("deal", deal_id)
    if lead_id is not None:
        return ItemRef("lead", lead_id)
    return None


ItemRefDep = Annotated[ItemRef | None, Depends(item_ref)]


def of_item(statement: SelectOfScalar, item_id_column: Any, ref: ItemRef | None) -> SelectOfScalar:
    """Restrict a statement over rows with an `item_id` to one deal or lead."""
    if ref is None:
        return statement
    return statement.join(Item, Item.id == item_id_column).where(Item.id == ref.item_id, Item.entity_type == ref.entity)
