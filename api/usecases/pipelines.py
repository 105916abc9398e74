"""Pipelines: an ordered list of stages for deals or for leads."""

from __future__ import annotations

from sqlmodel import Session

from api.schemas import PipelineCreate
from models.tables import Pipeline, Stage


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
