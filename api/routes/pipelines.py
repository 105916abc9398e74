"""Pipelines: an ordered list of stages for deals or for leads."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from sqlmodel import select

from api.deps import MAX_ID, PageDep, SessionDep, admin_only, member_only, paginate
from api.lookups import get_pipeline, pipeline_public
from api.schemas import PipelineCreate, PipelinePublic
from api.usecases import pipelines
from models.tables import Pipeline

router = APIRouter(prefix="/pipelines", tags=["pipelines"], dependencies=member_only)
PipelineId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", response_model=PipelinePublic, status_code=status.HTTP_201_CREATED, dependencies=admin_only)
def create_pipeline(body: PipelineCreate, session: SessionDep):
    return pipeline_public(session, pipelines.create_pipeline(session, body))


@router.get("", response_model=list[PipelinePublic])
def list_pipelines(
    session: SessionDep,
    page: PageDep,
    response: Response,
    entity_type: Annotated[Literal["deal", "lead"] | None, Query()] = None,
):
    statement = select(Pipeline).order_by(Pipeline.id)
    if entity_type is not None:
        statement = statement.where(Pipeline.entity_type == entity_type)
    return [pipeline_public(session, pipeline) for pipeline in paginate(session, statement, page, response)]


@router.get("/{pipeline_id}", response_model=PipelinePublic)
def read_pipeline(pipeline_id: PipelineId, session: SessionDep):
    return pipeline_public(session, get_pipeline(session, pipeline_id))
