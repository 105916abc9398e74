"""Pipelines: an ordered list of stages for deals or for leads, renamed, extended, reordered and pruned."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import MAX_ID, AdminDep, ClientDep, PageDep, SessionDep, SettingsDep, admin_only, member_only, paginate
from api.lookups import get_pipeline, pipeline_public
from api.schemas import PipelineCreate, PipelinePublic, PipelineUpdate, StageAdd, StageCode, StagePublic, StageUpdate
from api.usecases import pipelines
from models.tables import Pipeline
from sqlmodel import select

router = APIRouter(prefix="/pipelines", tags=["pipelines"], dependencies=member_only)
PipelineId = Annotated[int, Path(ge=1, le=MAX_ID)]
Code = Annotated[StageCode, Path()]


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


@router.patch("/{pipeline_id}", response_model=PipelinePublic, dependencies=admin_only)
def update_pipeline(pipeline_id: PipelineId, body: PipelineUpdate, session: SessionDep):
    """Rename the pipeline."""
    return pipeline_public(session, pipelines.rename_pipeline(session, get_pipeline(session, pipeline_id), body.name))


@router.post("/{pipeline_id}/stages", response_model=StagePublic, status_code=status.HTTP_201_CREATED,
             dependencies=admin_only)
def add_stage(pipeline_id: PipelineId, body: StageAdd, session: SessionDep):
    """A new stage, at `position` (0 first; default last). A code the pipeline has already is a 409."""
    return pipelines.add_stage(session, get_pipeline(session, pipeline_id), body)


@router.patch("/{pipeline_id}/stages/{code}", response_model=StagePublic, dependencies=admin_only)
def update_stage(pipeline_id: PipelineId, code: Code, body: StageUpdate, session: SessionDep):
    """Rename a stage, change its semantic or move it to another position; its code stays."""
    return pipelines.change_stage(session, get_pipeline(session, pipeline_id), code, body)


@router.delete("/{pipeline_id}/stages/{code}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_stage(
    pipeline_id: PipelineId, code: Code, session: SessionDep, client: ClientDep, settings: SettingsDep,
    caller: AdminDep,
    move_items_to: Annotated[StageCode | None, Query(description="The stage the items in this one move to, as a "
                                                                 "user's move: their new stage's rules start")] = None,
):
    """Remove a stage: the items in it move to `move_items_to` first (a 409 naming how many there are when it is not
    given); its rules and triggers leave the automation as a new version. The last stage of a pipeline, and a stage
    other automation still names, are refused with a 409."""
    await pipelines.remove_stage(session, client, settings, get_pipeline(session, pipeline_id), code, move_items_to,
                                 saved_by=caller.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
