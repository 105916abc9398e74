"""Tasks made by rules (or anyone): a status change is a `task_status` event for the linked item."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlmodel import select

from api.deps import MAX_ID, ClientDep, PageDep, SessionDep, SettingsDep, member_only, paginate
from api.lookups import ItemRefDep, of_item
from api.schemas import TaskPublic, TaskStatus, TaskUpdate
from api.usecases import tasks
from models.tables import Task

router = APIRouter(prefix="/tasks", tags=["tasks"], dependencies=member_only)
TaskId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("", response_model=list[TaskPublic])
def list_tasks(
    session: SessionDep,
    page: PageDep,
    response: Response,
    item: ItemRefDep,
    status: Annotated[TaskStatus | None, Query()] = None,
    responsible_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
):
    statement = of_item(select(Task), Task.item_id, item).order_by(Task.id)
    if status is not None:
        statement = statement.where(Task.status == status)
    if responsible_id is not None:
        statement = statement.where(Task.responsible_id == responsible_id)
    return paginate(session, statement, page, response)


@router.get("/{task_id}", response_model=TaskPublic)
def read_task(task_id: TaskId, session: SessionDep):
    return tasks.get_task(session, task_id)


@router.patch("/{task_id}", response_model=TaskPublic)
async def update_task(task_id: TaskId, body: TaskUpdate, session: SessionDep, client: ClientDep, settings: SettingsDep):
    """Change a task. A new status is recorded on the item's timeline and sent to the item as a
    `task_status` event; repeating the same status sends that change again under the same event id,
    so an event lost to an outage is delivered and a delivered one is not doubled."""
    task = tasks.get_task(session, task_id)
    return await tasks.update_task(session, client, settings, task, body.model_dump(exclude_unset=True))
