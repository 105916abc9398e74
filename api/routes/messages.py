"""Every email and SMS sent to a client, with its delivery status."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from sqlmodel import select

from api.deps import MAX_ID, PageDep, SessionDep, member_only, paginate
from api.errors import not_found
from api.lookups import ItemRefDep, of_item
from api.schemas import MessagePublic
from models.tables import Message

router = APIRouter(prefix="/messages", tags=["messages"], dependencies=member_only)


@router.get("", response_model=list[MessagePublic])
def list_messages(
    session: SessionDep,
    page: PageDep,
    response: Response,
    item: ItemRefDep,
    channel: Annotated[Literal["email", "sms"] | None, Query()] = None,
    status: Annotated[Literal["queued", "sent", "failed"] | None, Query()] = None,
):
    statement = of_item(select(Message), Message.item_id, item).order_by(Message.id)
    if channel is not None:
        statement = statement.where(Message.channel == channel)
    if status is not None:
        statement = statement.where(Message.status == status)
    return paginate(session, statement, page, response)


@router.get("/{message_id}", response_model=MessagePublic)
def read_message(message_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep):
    message = session.get(Message, message_id)
    if message is None:
        raise not_found("Message", message_id)
    return message
