"""Tasks made by rules (or anyone): a status change is a `task_status` event for the linked item."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlmodel import Session, col, select

from api.deps import MAX_ID, ClientDep, PageDep, SessionDep, SettingsDep, member_only, paginate
from api.errors import Problems, not_found
from api.lookups import ItemRefDep, of_item
from api.schemas import TaskPublic, TaskStatus, TaskUpdate
from models.tables import Item, Task, TimelineEntry, User, utcnow
from workflows import client as workflow_client

router = APIRouter(prefix="/tasks", tags=["tasks"], dependencies=member_only)
TaskId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _status_key_prefix(task_id: int) -> str:
    return f"task-{task_id}-status-"


def _status_changes(session: Session, task_id: int) -> list[TimelineEntry]:
    """The status changes made through the API, oldest first (their timeline entries are keyed by number)."""
    prefix = _status_key_prefix(task_id)
    entries = session.exec(select(TimelineEntry).where(col(TimelineEntry.key).startswith(prefix))).all()
    return sorted(entries, key=lambda entry: int(entry.key.removeprefix(prefix)))


def _event_data(task: Task) -> dict:
    return {
        "task_id": task.id,
        "status": task.status,
        "title": task.title,
        "responsible_id": task.responsible_id,
        "rule_name": task.rule_name,
        "pipeline_id": task.pipeline_id,
        "stage": task.stage,
    }


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
    task = session.get(Task, task_id)
    if task is None:
        raise not_found("Task", task_id)
    return task


@router.patch("/{task_id}", response_model=TaskPublic)
async def update_task(task_id: TaskId, body: TaskUpdate, session: SessionDep, client: ClientDep, settings: SettingsDep):
    """Change a task. A new status is recorded on the item's timeline and sent to the item as a
    `task_status` event; repeating the same status sends that change again under the same event id,
    so an event lost to an outage is delivered and a delivered one is not doubled."""
    task = session.get(Task, task_id)
    if task is None:
        raise not_found("Task", task_id)
    changes = body.model_dump(exclude_unset=True)
    problems = Problems()
    for index, user_id in enumerate(changes.get("observers") or []):
        if session.get(User, user_id) is None:
            problems.add(("body", "observers", index), f"user {user_id} does not exist")
    problems.raise_if_any()

    previous = task.status
    task.sqlmodel_update(changes)
    status_changed = task.status != previous
    if status_changed:
        task.completed_at = utcnow() if task.status == "completed" else None
    task.updated_at = utcnow()
    session.add(task)
    changes_so_far = _status_changes(session, task.id) if task.item_id is not None else []
    if status_changed and task.item_id is not None:
        number = len(changes_so_far) + 1
        entry = TimelineEntry(
            item_id=task.item_id,
            kind="task_status",
            text=f"Task “{task.title}” is now {task.status.replace('_', ' ')} (was {previous.replace('_', ' ')})",
            key=f"{_status_key_prefix(task.id)}{number}",
            data={"task_id": task.id, "status": task.status, "from": previous},
        )
        session.add(entry)
        changes_so_far.append(entry)
    session.commit()
    session.refresh(task)

    if "status" in changes and task.item_id is not None and changes_so_far:
        latest = changes_so_far[-1]
        item = session.get(Item, task.item_id)
        if latest.data.get("status") == task.status and item is not None and item.stage is not None:
            number = len(changes_so_far)
            await workflow_client.send_event(
                client, settings, item, "task_status", _event_data(task), event_id=f"task-{task.id}-{task.status}-{number}"
            )
    return task
