"""Messenger channels: Telegram (the Bot API's `sendMessage`) and WhatsApp (the Cloud API's `messages` endpoint),
reached through the SSRF-guarded client at a configurable base URL; without a token a channel records instead of
sending. Also what both channels' identities look like, checked before anything is sent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from activities.transports.net import ResponseTooLarge, UrlRefused, safe_request
from activities.transports.sms import InvalidPhone, key_digest, normalize_phone
from models.logs import redact

CHANNELS = ("telegram", "whatsapp")
TEXT_LIMITS = {"telegram": 4096, "whatsapp": 4096}
"""The longest text each channel's API takes in one message."""
TELEGRAM_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")
"""A chat id (negative for groups) or a public channel's @username."""
RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})


class ProviderError(Exception):
    """A provider call failed; the subclasses say whether a retry can help."""


class ProviderTemporaryError(ProviderError):
    """Connection failure, timeout, 5xx or rate limiting: retrying later can succeed."""


class ProviderPermanentError(ProviderError):
    """The provider refused the request (4xx) or its URL is refused: do not retry."""


class InvalidIdentity(ValueError):
    """A channel identity that cannot be used (a malformed chat id or number)."""


def channel_identity(channel: str, raw: Any, region: str) -> str:
    """The contact's identity on `channel` as its API takes it: a Telegram chat id or @username; a WhatsApp number
    in E.164 (a number without its country code is read in `region`)."""
    text = str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
    if channel == "telegram":
        if not TELEGRAM_CHAT.match(text):
            raise InvalidIdentity(f"{text[:40]!r} is not a Telegram chat id (digits, e.g. 123456789) or @username")
        return text
    if channel == "whatsapp":
        try:
            return normalize_phone(text, region)
        except InvalidPhone as error:
            raise InvalidIdentity(str(error)) from None
    raise InvalidIdentity(f"unknown channel {channel!r}; use {', '.join(CHANNELS)}")


def raise_for_status(response: httpx.Response, provider: str) -> None:
    """A provider's answer that is no success, as the error that says whether to retry."""
    status = response.status_code
    if status >= 500 or status in RETRYABLE_CLIENT_STATUSES:
        raise ProviderTemporaryError(f"{provider} answered {status}: {response.text[:200]}")
    if status >= 300:
        raise ProviderPermanentError(f"{provider} refused the request with {status}: {response.text[:200]}")


AMBIGUOUS = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError)
"""Failures after the request may have reached the provider: it may have acted on it."""


async def call_provider(provider: str, method: str, url: str, *, allow_private: bool, once: bool = False,
                        **options: Any) -> httpx.Response:
    """One call of a provider's API, its failures sorted into temporary and permanent. With `once` (an act that must
    not happen twice, such as placing a call), a failure after the request may have reached the provider is
    permanent: the act is not tried again."""
    try:
        response = await safe_request(method, url, allow_private=allow_private, timeout=15, **options)
    except (UrlRefused, ResponseTooLarge) as error:
        raise ProviderPermanentError(redact(f"{provider} call refused: {error}")) from None
    except AMBIGUOUS as error:
        if once:
            raise ProviderPermanentError(redact(
                f"{provider} may have acted on the request ({type(error).__name__}): not sent again")) from None
        raise ProviderTemporaryError(redact(f"{provider} did not answer: {type(error).__name__}: {error}")) from None
    except httpx.HTTPError as error:
        raise ProviderTemporaryError(redact(f"{provider} unreachable: {type(error).__name__}: {error}")) from None
    raise_for_status(response, provider)
    return response


@dataclass(frozen=True)
class ChannelMessage:
    channel: str
    to: str
    """The identity from `channel_identity`."""
    text: str
    key: str
    """Stable across retries (the message's effect key)."""
    template: str | None = None
    """WhatsApp: an approved template's name (its text is the template's, not `text`)."""
    language: str | None = None


class ChannelSender(Protocol):
    async def send(self, message: ChannelMessage) -> str:
        """Sends one message; the provider's id for it."""
        ...


class RecordingSender:
    """Sends nothing: the stored Message row is the record."""

    async def send(self, message: ChannelMessage) -> str:
        return f"rec-{key_digest(message.key)}"


def secret_value(value: Any) -> str | None:
    """A setting's secret as text (None when unset or empty)."""
    if value is not None and hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return value or None


class TelegramSender:
    """`POST {api}/bot{token}/sendMessage` with `{"chat_id", "text"}`; Telegram answers `{"ok": true, "result":
    {"message_id": …}}`."""

    def __init__(self, api_url: str, token: str, *, allow_private: bool) -> None:
        self.api_url, self._token, self.allow_private = api_url.rstrip("/"), token, allow_private

    def __repr__(self) -> str:
        return f"TelegramSender(api_url={self.api_url!r})"

    async def send(self, message: ChannelMessage) -> str:
        response = await call_provider(
            "Telegram", "POST", f"{self.api_url}/bot{self._token}/sendMessage", allow_private=self.allow_private,
            json={"chat_id": message.to, "text": message.text, "disable_web_page_preview": False},
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            raise ProviderPermanentError(f"Telegram did not take the message: {response.text[:200]}")
        return str((answer.get("result") or {}).get("message_id", ""))


class WhatsAppSender:
    """`POST {api}/{phone number id}/messages`, `Authorization: Bearer {token}`, a text message or a template;
    WhatsApp answers `{"messages": [{"id": "wamid…"}]}`."""

    def __init__(self, api_url: str, token: str, phone_number_id: str, *, allow_private: bool) -> None:
        self.api_url, self._token, self.phone_number_id = api_url.rstrip("/"), token, phone_number_id
        self.allow_private = allow_private

    def __repr__(self) -> str:
        return f"WhatsAppSender(api_url={self.api_url!r}, phone_number_id={self.phone_number_id!r})"

    @staticmethod
    def body(message: ChannelMessage) -> dict[str, Any]:
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                                "to": message.to.lstrip("+")}
        if message.template:
            body.update(type="template", template={"name": message.template,
                                                   "language": {"code": message.language or "en_US"}})
        else:
            body.update(type="text", text={"preview_url": True, "body": message.text})
        return body

    async def send(self, message: ChannelMessage) -> str:
        response = await call_provider(
            "WhatsApp", "POST", f"{self.api_url}/{self.phone_number_id}/messages", allow_private=self.allow_private,
            headers={"Authorization": f"Bearer {self._token}"}, json=self.body(message),
        )
        try:
            sent = response.json()["messages"][0]["id"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ProviderPermanentError(f"WhatsApp did not take the message: {response.text[:200]}") from None
        return str(sent)


def make_channel_sender(settings: Any, channel: str) -> ChannelSender:
    """The sender of `channel` the settings configure; a channel without its token records."""
    if channel == "telegram" and secret_value(settings.telegram_bot_token):
        return TelegramSender(settings.telegram_api_url, secret_value(settings.telegram_bot_token),
                              allow_private=settings.allow_private_urls)
    if channel == "whatsapp" and secret_value(settings.whatsapp_token):
        if not settings.whatsapp_phone_number_id:
            raise ProviderPermanentError("WHATSAPP_PHONE_NUMBER_ID is required with WHATSAPP_TOKEN")
        return WhatsAppSender(settings.whatsapp_api_url, secret_value(settings.whatsapp_token),
                              settings.whatsapp_phone_number_id, allow_private=settings.allow_private_urls)
    return RecordingSender()


def approved_templates(settings: Any) -> dict[str, str]:
    """The WhatsApp templates rules may name (`WHATSAPP_TEMPLATES`, `name:language,…`), with their languages."""
    found: dict[str, str] = {}
    for part in (settings.whatsapp_templates or "").split(","):
        name, _, language = part.strip().partition(":")
        if name:
            found[name] = language or "en_US"
    return found
