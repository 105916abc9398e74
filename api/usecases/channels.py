"""What the messenger and telephony providers post back: a client's message on Telegram or WhatsApp becomes the
`channel_reply` event of the deals and leads of the contact (or company) with that identity; a call's status
callback moves its message's status and, when the call has ended, sends `call_finished` to the item that placed it.

Each provider proves itself as it documents: Telegram by the secret token given to `setWebhook`
(`X-Telegram-Bot-Api-Secret-Token`), WhatsApp by `X-Hub-Signature-256` (an HMAC-SHA256 of the body with the app
secret), the call provider by `X-Twilio-Signature`. A provider that is not configured has no webhook (404). Every
update carries the provider's own id, which is the event's id: an update delivered again changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fastapi import HTTPException, status
from sqlmodel import Session, select
from temporalio.client import Client

from activities.transports.calls import FINISHED, PROVIDER_STATUSES, twilio_signature
from activities.transports.channels import InvalidIdentity, channel_identity, secret_value
from api.errors import field_error
from api.usecases.items import send_event, send_to_party_items
from models.domain.events import CallFinished, ChannelReply
from models.settings import Settings
from models.tables import Company, Contact, Item, Message

TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WHATSAPP_SIGNATURE_HEADER = "X-Hub-Signature-256"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
CALL_STATUS_PATH = "/channels/calls/status"
DELIVERY_ORDER = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}
"""A WhatsApp message's status only moves forward: a late `sent` receipt never undoes `delivered`."""


def _not_configured(setting: str) -> HTTPException:
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND,
                         detail=f"this webhook is off: {setting} is not set")


def _refused(header: str, why: str) -> HTTPException:
    return field_error(("header", header), why, status.HTTP_401_UNAUTHORIZED)


async def _reply(session: Session, client: Client, settings: Settings, reply: ChannelReply, event_id: str,
                 ) -> dict[str, Any]:
    """The reply to the items of every contact and company with the sender's identity on the channel."""
    reached: list[dict[str, Any]] = []
    for model, owner in ((Contact, "contact"), (Company, "company")):
        parties = session.exec(select(model).where(
            model.channels[reply.channel].as_string() == reply.sender)).all()  # type: ignore[index]
        for party in parties:
            items = await send_to_party_items(session, client, settings, owner, party.id, reply, event_id=event_id)
            reached += [{"entity": item.entity_type, "id": item.id} for item in items]
    if not reached:
        return {"status": "ignored", "reason": f"no contact or company has {reply.channel} identity {reply.sender}"}
    return {"status": "accepted", "event_id": event_id, "items": reached}


# -- Telegram --------------------------------------------------------------------------------------


def check_telegram(settings: Settings, token: str | None) -> None:
    secret = secret_value(settings.telegram_webhook_secret)
    if not secret:
        raise _not_configured("TELEGRAM_WEBHOOK_SECRET")
    if not token or not hmac.compare_digest(token.encode(), secret.encode()):
        raise _refused(TELEGRAM_SECRET_HEADER, "missing or wrong: give setWebhook this service's secret_token")


async def telegram_update(session: Session, client: Client, settings: Settings, update: Any) -> dict[str, Any]:
    """A Bot API update: a message from a chat becomes that chat's client's reply."""
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        raise field_error(("body", "update_id"), "a Telegram update has an integer update_id")
    message = update.get("message")
    if not isinstance(message, dict):
        return {"status": "ignored", "reason": "not a message (only messages from clients are taken)"}
    chat = (message.get("chat") or {}).get("id") if isinstance(message.get("chat"), dict) else None
    if isinstance(chat, bool) or not isinstance(chat, int):
        raise field_error(("body", "message", "chat", "id"), "a message names its chat by an integer id")
    text = message.get("text") if isinstance(message.get("text"), str) else message.get("caption")
    reply = ChannelReply(channel="telegram", text=str(text or "")[:4096], sender=str(chat),
                         provider_id=str(message.get("message_id", "")))
    return await _reply(session, client, settings, reply, f"telegram-{update['update_id']}")


# -- WhatsApp --------------------------------------------------------------------------------------


def verify_whatsapp_subscription(settings: Settings, mode: str, token: str, challenge: str) -> str:
    """Meta's check of the callback URL: the challenge back, when the verify token is ours."""
    expected = secret_value(settings.whatsapp_verify_token)
    if not expected:
        raise _not_configured("WHATSAPP_VERIFY_TOKEN")
    if mode != "subscribe" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise field_error(("query", "hub.verify_token"), "not the verify token of this service",
                          status.HTTP_403_FORBIDDEN)
    return challenge


def check_whatsapp(settings: Settings, body: bytes, signature: str | None) -> None:
    secret = secret_value(settings.whatsapp_app_secret)
    if not secret:
        raise _not_configured("WHATSAPP_APP_SECRET")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise _refused(WHATSAPP_SIGNATURE_HEADER, "missing or wrong: the body is not signed with the app secret")


def _whatsapp_text(message: dict[str, Any]) -> str:
    kind = message.get("type")
    part = message.get(kind) if isinstance(kind, str) else None
    if isinstance(part, dict):
        for key in ("body", "text", "caption"):
            if isinstance(part.get(key), str):
                return part[key]
    return ""


async def whatsapp_update(session: Session, client: Client, settings: Settings, update: Any) -> dict[str, Any]:
    """A Cloud API webhook: each client message becomes their reply; each status of a message a rule sent moves that
    message's status."""
    if not isinstance(update, dict) or not isinstance(update.get("entry"), list):
        raise field_error(("body", "entry"), "a WhatsApp webhook carries a list of entries")
    answers: list[dict[str, Any]] = []
    for entry in update["entry"]:
        for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            for message in value.get("messages") or []:
                if not isinstance(message, dict) or not isinstance(message.get("id"), str):
                    continue
                try:
                    sender = channel_identity("whatsapp", "+" + str(message.get("from", "")).lstrip("+"), "ZZ")
                except InvalidIdentity:
                    answers.append({"status": "ignored", "reason": "the message names no valid sender"})
                    continue
                reply = ChannelReply(channel="whatsapp", text=_whatsapp_text(message)[:4096], sender=sender,
                                     provider_id=message["id"])
                answers.append(await _reply(session, client, settings, reply, f"whatsapp-{message['id']}"))
            for delivery in value.get("statuses") or []:
                if isinstance(delivery, dict):
                    answers.append(_whatsapp_status(session, delivery))
    return {"status": "accepted" if answers else "ignored", "updates": answers}


def _whatsapp_status(session: Session, delivery: dict[str, Any]) -> dict[str, Any]:
    message = session.exec(select(Message).where(
        Message.channel == "whatsapp", Message.provider_id == str(delivery.get("id")))).first()
    state = str(delivery.get("status") or "")
    if message is None or state not in ("sent", "delivered", "read", "failed"):
        return {"status": "ignored", "reason": "no message of this service has that id, or the status is unknown"}
    if state == "failed":
        errors = delivery.get("errors") or [{}]
        message.status, message.error = "failed", str((errors[0] or {}).get("title") or "failed")[:2000]
    elif DELIVERY_ORDER.get(state, 0) > DELIVERY_ORDER.get(message.status, 0):
        message.status = state
    session.add(message)
    session.commit()
    return {"status": "accepted", "message_id": message.id, "message_status": message.status}


# -- calls -----------------------------------------------------------------------------------------


def check_call_callback(settings: Settings, params: list[tuple[str, str]], signature: str | None) -> None:
    token = secret_value(settings.twilio_auth_token)
    if (settings.calls_provider or "").lower() != "twilio" or not token:
        raise _not_configured("CALLS_PROVIDER=twilio with TWILIO_AUTH_TOKEN")
    url = settings.effective_public_url + CALL_STATUS_PATH
    if not signature or not hmac.compare_digest(signature.encode(), twilio_signature(token, url, params).encode()):
        raise _refused(TWILIO_SIGNATURE_HEADER, f"missing or wrong for {url} and these parameters")


def _rule_of(message: Message) -> str | None:
    """The rule that placed the call, from its key (`<entry workflow id>/<rule>`)."""
    parts = (message.effect_key or "").split("/", 2)
    return parts[2] if len(parts) == 3 else None


async def call_status(session: Session, client: Client, settings: Settings, params: dict[str, str]) -> dict[str, Any]:
    """The call's message takes the status; a final one sends `call_finished` (answered or missed) to its item."""
    sid, state = params.get("CallSid", ""), params.get("CallStatus", "")
    if not sid:
        raise field_error(("body", "CallSid"), "a status callback names its call")
    if state not in PROVIDER_STATUSES:
        raise field_error(("body", "CallStatus"), f"unknown call status {state!r}")
    message = session.exec(select(Message).where(Message.channel == "call", Message.provider_id == sid)).first()
    if message is None:
        return {"status": "ignored", "reason": f"no call of this service has id {sid}"}
    if message.status not in ("answered", "no-answer", "busy", "failed") or state in FINISHED:
        message.status = PROVIDER_STATUSES[state]
        if state in FINISHED and state != "completed":
            message.error = f"the call ended {state}"
        session.add(message)
        session.commit()
    answer: dict[str, Any] = {"status": "accepted", "message_id": message.id, "call_status": message.status}
    if state in FINISHED and message.item_id is not None:
        item = session.get(Item, message.item_id)
        event = CallFinished(outcome=FINISHED[state], status=state, message_id=message.id, rule_name=_rule_of(message))
        try:
            await send_event(client, settings, item, event, event_id=f"call-{sid}-finished")
        except HTTPException as refused:
            answer["event"] = f"not sent: {refused.detail}"
        else:
            answer["event"] = event.type
    return answer


