"""An item's work: tasks (made by rules or anyone) and CRM activities (calls, meetings). A task's new status is
recorded on the item's timeline and is a `task_status` event for the item's triggers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select
from temporalio.client import Client

from api.errors import Problems, not_found
from api.usecases.items import tell
from models.domain.events import TaskStatusChanged
from models.settings import Settings
from models.tables import CrmActivity, Item, Task, TimelineEntry, User, utcnow


def get_task(session: Session, task_id: int) -> Task:
    task = session.get(Task, task_id)
    if task is None:
        raise not_found("Task", task_id)
    return task


def _status_key_prefix(task_id: int) -> str:
    return f"task-{task_id}-status-"


def _status_changes(session: Session, task_id: int) -> list[TimelineEntry]:
    """The status changes made through the API, oldest first (their timeline entries are keyed by number)."""
    prefix = _status_key_prefix(task_id)
    entries = session.exec(select(TimelineEntry).where(col(TimelineEntry.key).startswith(prefix))).all()
    return sorted(entries, key=lambda entry: int(entry.key.removeprefix(prefix)))


async def update_task(
    session: Session, client: Client, settings: Settings, task: Task, changes: dict[str, Any],
) -> Task:
    """A person's or a client system's change of the task (`TaskUpdate` fields that were sent): checked, then
    `change_task`."""
    problems = Problems()
    for index, user_id in enumerate(changes.get("observers") or []):
        if session.get(User, user_id) is None:
            problems.add(("body", "observers", index), f"user {user_id} does not exist")
    problems.raise_if_any()
    return await change_task(session, client, settings, task, changes)


async def change_task(
    session: Session, client: Client, settings: Settings, task: Task, changes: dict[str, Any],
    at: datetime | None = None,
) -> Task:
    """Writes `changes` (checked already). A new status is recorded on the item's timeline (at `at`, default now)
    and sent to the item as a `task_status` event; repeating the same status sends that change again under the
    same event id, so an event lost to an outage is delivered and a delivered one is not doubled."""
    moment = at or utcnow()
    previous = task.status
    task.sqlmodel_update(changes)
    status_changed = task.status != previous
    if status_changed:
        task.completed_at = moment if task.status == "completed" else None
    task.updated_at = moment
    session.add(task)
    changes_so_far = _status_changes(session, task.id) if task.item_id is not None else []
    if status_changed and task.item_id is not None:
        number = len(changes_so_far) + 1
        entry = TimelineEntry(
            item_id=task.item_id,
            at=moment,
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
            await tell(client, settings, item, TaskStatusChanged.of(task), event_id=f"task-{task.id}-{task.status}-{number}")
    return task


def get_crm_activity(session: Session, activity_id: int) -> CrmActivity:
    crm_activity = session.get(CrmActivity, activity_id)
    if crm_activity is None:
        raise not_found("Activity", activity_id)
    return crm_activity


def set_crm_activity_completed(session: Session, crm_activity: CrmActivity, completed: bool) -> CrmActivity:
    """A CRM activity marked done (or open again)."""
    if crm_activity.completed != completed:
        crm_activity.completed = completed
        crm_activity.completed_at = utcnow() if completed else None
        session.add(crm_activity)
        session.commit()
        session.refresh(crm_activity)
    return crm_activity

