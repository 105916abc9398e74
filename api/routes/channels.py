"""What the messenger and telephony providers post back, with no API key (each signs or tokens its calls instead):
`POST /channels/telegram/webhook`, `GET|POST /channels/whatsapp/webhook`, `POST /channels/calls/status`."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import PlainTextResponse

from api.deps import ClientDep, SessionDep, SettingsDep
from api.errors import field_error
from api.usecases import channels
from api.usecases.channels import TELEGRAM_SECRET_HEADER, TWILIO_SIGNATURE_HEADER, WHATSAPP_SIGNATURE_HEADER

router = APIRouter(prefix="/channels", tags=["channels"])
ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"description": "The provider's secret or signature is missing or wrong: nothing changed"},
    404: {"description": "This provider is not configured"},
    422: {"description": "Not an update of this provider (the field is named)"},
}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise field_error(("body",), "not JSON") from None


@router.post("/telegram/webhook", responses=ANSWERS)
async def telegram_webhook(
    request: Request, session: SessionDep, client: ClientDep, settings: SettingsDep,
    token: Annotated[str | None, Header(alias=TELEGRAM_SECRET_HEADER, max_length=256)] = None,
):
    """A Telegram Bot API update (the bot's webhook, set with `secret_token`): a client's message becomes the
    `channel_reply` of the items of the contact whose Telegram chat id it comes from."""
    channels.check_telegram(settings, token)
    return await channels.telegram_update(session, client, settings, _json(await request.body()))


@router.get("/whatsapp/webhook", response_class=PlainTextResponse, responses=ANSWERS)
def whatsapp_subscription(
    settings: SettingsDep,
    mode: Annotated[str, Query(alias="hub.mode", max_length=50)] = "",
    verify_token: Annotated[str, Query(alias="hub.verify_token", max_length=256)] = "",
    challenge: Annotated[str, Query(alias="hub.challenge", max_length=256)] = "",
):
    """Meta's verification of the callback URL: the challenge, when the verify token is this service's."""
    return channels.verify_whatsapp_subscription(settings, mode, verify_token, challenge)


@router.post("/whatsapp/webhook", responses=ANSWERS)
async def whatsapp_webhook(
    request: Request, session: SessionDep, client: ClientDep, settings: SettingsDep,
    signature: Annotated[str | None, Header(alias=WHATSAPP_SIGNATURE_HEADER, max_length=256)] = None,
):
    """A WhatsApp Cloud API webhook, signed with the app secret: client messages become their `channel_reply`,
    statuses of the messages rules sent move those messages' status."""
    body = await request.body()
    channels.check_whatsapp(settings, body, signature)
    return await channels.whatsapp_update(session, client, settings, _json(body))


@router.post("/calls/status", responses=ANSWERS)
async def call_status(
    request: Request, session: SessionDep, client: ClientDep, settings: SettingsDep,
    signature: Annotated[str | None, Header(alias=TWILIO_SIGNATURE_HEADER, max_length=256)] = None,
):
    """A call's status callback (form-encoded `CallSid`, `CallStatus`, …, signed as Twilio signs): the call's
    message takes the status, and a call that ended sends `call_finished` to its item."""
    try:
        params = parse_qsl((await request.body()).decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise field_error(("body",), "not a form") from None
    channels.check_call_callback(settings, params, signature)
    return await channels.call_status(session, client, settings, dict(params))
