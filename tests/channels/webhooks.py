"""What each provider posts to stageflow, built and signed as the providers document it (independently of the
service's own code):

- Telegram: an `Update` with a `message` (https://core.telegram.org/bots/api#update), and the `secret_token` of
  `setWebhook` in `X-Telegram-Bot-Api-Secret-Token`.
- WhatsApp: the Cloud API webhook's `messages` and `statuses` notifications
  (https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/payload-examples), signed in
  `X-Hub-Signature-256` as `sha256=` + the hex HMAC-SHA256 of the raw body with the app secret.
- Twilio: a call's status callback, form-encoded, signed in `X-Twilio-Signature`: Base64 of the HMAC-SHA1, keyed with
  the auth token, of the full URL followed by every POST parameter's name and value, sorted by name
  (https://www.twilio.com/docs/usage/webhooks/webhooks-security).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

from tests.channels.providers import ACCOUNT_SID, APP_SECRET, AUTH_TOKEN, CALL_FROM, TELEGRAM_SECRET


def telegram_update(update_id: int, chat_id: int, text: str) -> dict:
    return {"update_id": update_id, "message": {
        "message_id": update_id % 10_000, "date": 1765000000, "text": text,
        "from": {"id": chat_id, "is_bot": False, "first_name": "Anna"},
        "chat": {"id": chat_id, "type": "private", "first_name": "Anna"},
    }}


def telegram_headers(secret: str = TELEGRAM_SECRET) -> dict[str, str]:
    return {"X-Telegram-Bot-Api-Secret-Token": secret}


def whatsapp_message(sender: str, text: str, wamid: str) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "48221234567", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Anna"}, "wa_id": sender}],
            "messages": [{"from": sender, "id": wamid, "timestamp": "1765000000", "type": "text",
                          "text": {"body": text}}],
        }}]}]}


def whatsapp_status(wamid: str, status: str, recipient: str) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "48221234567", "phone_number_id": "106540352242922"},
            "statuses": [{"id": wamid, "status": status, "timestamp": "1765000001", "recipient_id": recipient}],
        }}]}]}


def whatsapp_signed(body: dict, secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}


def call_status(sid: str, status: str, to: str) -> list[tuple[str, str]]:
    return [("AccountSid", ACCOUNT_SID), ("ApiVersion", "2010-04-01"), ("CallSid", sid), ("CallStatus", status),
            ("Called", to), ("Caller", CALL_FROM), ("Direction", "outbound-api"), ("From", CALL_FROM), ("To", to)]


def twilio_signed(url: str, params: list[tuple[str, str]], token: str = AUTH_TOKEN) -> tuple[str, dict[str, str]]:
    data = url + "".join(name + value for name, value in sorted(params))
    signature = base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()
    return urlencode(params), {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
