"""CRM activities: to-dos on an item (call, meeting, other)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlmodel import select

from api.deps import MAX_ID, PageDep, SessionDep, member_only, paginate
from api.lookups import ItemRefDep, of_item
from api.schemas import ActivityPublic, ActivityUpdate
from api.usecases import tasks
from models.tables import CrmActivity

router = APIRouter(prefix="/activities", tags=["activities"], dependencies=member_only)
ActivityId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("", response_model=list[ActivityPublic])
def list_activities(
    session: SessionDep,
    page: PageDep,
    response: Response,
    item: ItemRefDep,
    completed: Annotated[bool | None, Query()] = None,
):
    statement = of_item(select(CrmActivity), CrmActivity.item_id, item).order_by(CrmActivity.id)
    if completed is not None:
        statement = statement.where(CrmActivity.completed == completed)
    return paginate(session, statement, page, response)


@router.get("/{activity_id}", response_model=ActivityPublic)
def read_activity(activity_id: ActivityId, session: SessionDep):
    return tasks.get_crm_activity(session, activity_id)


@router.patch("/{activity_id}", response_model=ActivityPublic)
def update_activity(activity_id: ActivityId, body: ActivityUpdate, session: SessionDep):
    return tasks.set_crm_activity_completed(session, tasks.get_crm_activity(session, activity_id), body.completed)
