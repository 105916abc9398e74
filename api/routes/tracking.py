"""Email tracking: the open pixel and link redirects (no key; the message's token is the secret)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from fastapi.responses import RedirectResponse, Response
from sqlmodel import select

from api.deps import ClientDep, SessionDep, SettingsDep
from api.usecases.items import send_once
from models.domain.events import EmailOpened, LinkClicked
from models.logs import redact
from models.tables import Message

router = APIRouter(prefix="/t", tags=["tracking"])
Token = Annotated[str, Path(min_length=8, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")]
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def _message(session, token: str) -> Message:
    message = session.exec(select(Message).where(Message.tracking_token == token)).first()
    if message is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Unknown tracking link")
    return message


@router.get("/o/{token}.gif", response_class=Response, responses={200: {"content": {"image/gif": {}}}})
async def email_opened(token: Token, session: SessionDep, client: ClientDep, settings: SettingsDep):
    """The open pixel: the first load is an `email_opened` event for the message's item."""
    message = _message(session, token)
    if message.channel == "email":
        await send_once(
            session, client, settings, message.item_id, key=f"message-{message.id}-opened",
            event=EmailOpened(message_id=message.id), text=f"The client opened the email “{message.subject or ''}”",
        )
    return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store, max-age=0"})


@router.get("/c/{token}/{n}", response_class=RedirectResponse, status_code=status.HTTP_302_FOUND)
async def link_clicked(
    token: Token,
    n: Annotated[int, Path(ge=0, le=10_000)],
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
):
    """A tracked link: redirects to the message's link `n`; the first click on it is a `link_clicked` event."""
    message = _message(session, token)
    if n >= len(message.links):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Unknown tracking link")
    url = str(message.links[n])
    shown = redact(url)  # a signing or document link's token stays out of the event and the timeline
    await send_once(
        session, client, settings, message.item_id, key=f"message-{message.id}-click-{n}",
        event=LinkClicked(message_id=message.id, url=shown), text=f"The client clicked {shown}",
    )
    return RedirectResponse(url, status_code=status.HTTP_302_FOUND)
