"""GET /timeline: every item's history across the CRM, oldest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlmodel import col, select

from api.deps import MAX_ID, PageDep, SessionDep, member_only, paginate
from api.schemas import TimelinePublic
from models.domain.timing import as_utc
from models.tables import Item, TimelineEntry

router = APIRouter(tags=["timeline"], dependencies=member_only)


@router.get("/timeline", response_model=list[TimelinePublic])
def timeline(
    session: SessionDep,
    page: PageDep,
    response: Response,
    kind: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    author_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    item_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    pipeline_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Entries of this pipeline's items")] = None,
    entity: Annotated[Literal["deal", "lead"] | None, Query(description="Entries of deals or of leads")] = None,
    since: Annotated[datetime | None, Query(description="Entries at or after this time (ISO 8601)")] = None,
):
    statement = select(TimelineEntry).order_by(col(TimelineEntry.at), col(TimelineEntry.id))
    if kind is not None:
        statement = statement.where(TimelineEntry.kind == kind)
    if author_id is not None:
        statement = statement.where(TimelineEntry.author_id == author_id)
    if item_id is not None:
        statement = statement.where(TimelineEntry.item_id == item_id)
    if pipeline_id is not None or entity is not None:
        items = select(Item.id)
        if pipeline_id is not None:
            items = items.where(Item.pipeline_id == pipeline_id)
        if entity is not None:
            items = items.where(Item.entity_type == entity)
        statement = statement.where(col(TimelineEntry.item_id).in_(items))
    if since is not None:
        statement = statement.where(col(TimelineEntry.at) >= as_utc(since))
    return paginate(session, statement, page, response)
