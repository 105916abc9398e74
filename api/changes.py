"""What a change of an item's data or of a task does, wherever it comes from (the API, a simulation's script):
written to the database, then told to the item's workflow as the events its triggers and delays listen to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select
from temporalio.client import Client

from api.errors import Problems
from models.domain.timing import CUSTOM_FIELD_PREFIX
from models.settings import Settings
from models.tables import Company, Contact, Item, Task, TimelineEntry, User, utcnow
from workflows import client as workflow_client


def check_references(session: Session, problems: Problems, values: dict[str, Any], where: tuple = ("body",)) -> None:
    """Adds a problem for each of responsible_id, contact_id, company_id, by_user_id naming a missing row."""
    for field, model, what in (
        ("responsible_id", User, "user"),
        ("by_user_id", User, "user"),
        ("contact_id", Contact, "contact"),
        ("company_id", Company, "company"),
    ):
        ident = values.get(field)
        if ident is not None and session.get(model, ident) is None:
            problems.add((*where, field), f"{what} {ident} does not exist")


async def change_item(
    session: Session, client: Client, settings: Settings, item: Item, changes: dict[str, Any],
    by_user_id: int | None = None,
) -> list[str]:
    """Writes `changes` (checked already; `fields` merged, a null removing one) and sends `field_changed`
    (and `responsible_changed`) to the item; the names of the fields that changed."""
    changes = dict(changes)
    changed: list[str] = []
    custom = changes.pop("fields", None)
    if custom:
        merged = dict(item.fields)
        for name, value in custom.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        changed += sorted(
            f"{CUSTOM_FIELD_PREFIX}{name}" for name in set(custom) if item.fields.get(name) != merged.get(name)
        )
        item.fields = merged
    previous_responsible = item.responsible_id
    for name, value in changes.items():
        if getattr(item, name) != value:
            changed.append(name)
            setattr(item, name, value)
    if changed:
        item.updated_at = utcnow()
        session.add(item)
        session.commit()
        session.refresh(item)
    if changed and item.stage is not None:
        await workflow_client.send_event(
            client, settings, item, "field_changed", {"fields": changed, "by_user_id": by_user_id}, event_id=None
        )
        if "responsible_id" in changed:
            await workflow_client.send_event(
                client,
                settings,
                item,
                "responsible_changed",
                {"from": previous_responsible, "to": item.responsible_id, "by_user_id": by_user_id},
                event_id=None,
            )
    return changed


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
            await workflow_client.send_event(
                client, settings, item, "task_status", _event_data(task), event_id=f"task-{task.id}-{task.status}-{number}"
            )
    return task
