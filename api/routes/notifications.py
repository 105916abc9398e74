"""Notifications to users (supervisors, couriers, responsibles)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlmodel import select

from api.deps import MAX_ID, PageDep, SessionDep, member_only, paginate
from api.errors import not_found
from api.schemas import NotificationPublic, NotificationUpdate
from models.tables import Notification

router = APIRouter(prefix="/notifications", tags=["notifications"], dependencies=member_only)


@router.get("", response_model=list[NotificationPublic])
def list_notifications(
    session: SessionDep,
    page: PageDep,
    response: Response,
    user_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    item_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    read: Annotated[bool | None, Query()] = None,
):
    statement = select(Notification).order_by(Notification.id)
    if user_id is not None:
        statement = statement.where(Notification.user_id == user_id)
    if item_id is not None:
        statement = statement.where(Notification.item_id == item_id)
    if read is not None:
        statement = statement.where(Notification.read == read)
    return paginate(session, statement, page, response)


@router.patch("/{notification_id}", response_model=NotificationPublic)
def update_notification(
    notification_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: NotificationUpdate, session: SessionDep
):
    notification = session.get(Notification, notification_id)
    if notification is None:
        raise not_found("Notification", notification_id)
    notification.read = body.read
    session.add(notification)
    session.commit()
    session.refresh(notification)
    return notification
