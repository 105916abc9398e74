"""Calls to the client: a telephony provider that speaks Twilio's Calls API places the call and reads the text
out (TwiML `<Say>`), and posts the call's progress to a status callback signed with `X-Twilio-Signature`. The
provider is chosen like the SMS provider: `record` places nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from activities.transports.channels import ProviderPermanentError, call_provider, secret_value
from activities.transports.sms import key_digest

PROVIDER_STATUSES = {
    "queued": "queued", "initiated": "queued", "ringing": "ringing", "in-progress": "answered",
    "completed": "answered", "busy": "busy", "no-answer": "no-answer", "failed": "failed", "canceled": "failed",
}
"""The provider's `CallStatus` → the message's status."""
FINISHED = {"completed": "answered", "busy": "missed", "no-answer": "missed", "failed": "missed", "canceled": "missed"}
"""The provider's final statuses → the call's outcome, as the `call_finished` trigger filters it."""
CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")


@dataclass(frozen=True)
class Call:
    to: str
    """E.164."""
    text: str
    """What the call says."""
    key: str
    status_callback: str
    """The URL the provider posts the call's progress to."""


class Caller(Protocol):
    async def place(self, call: Call) -> str:
        """Places the call; the provider's id for it (its `CallSid`)."""
        ...


class RecordingCaller:
    """Places nothing: the stored Message row is the record."""

    async def place(self, call: Call) -> str:
        return f"rec-{key_digest(call.key)}"


def twiml(text: str, language: str) -> str:
    """The call's script: the text, spoken."""
    return f'<Response><Say language="{escape(language)}">{escape(text)}</Say></Response>'


class TwilioCaller:
    """`POST {api}/2010-04-01/Accounts/{AccountSid}/Calls.json`, form-encoded `To`, `From`, `Twiml`,
    `StatusCallback`, `StatusCallbackEvent` (each event once), `StatusCallbackMethod`; HTTP Basic auth with the
    account SID and auth token. The provider answers `{"sid": "CA…", "status": "queued", …}`."""

    def __init__(self, api_url: str, account_sid: str, auth_token: str, from_number: str, language: str, *,
                 allow_private: bool) -> None:
        self.api_url, self.account_sid, self._token = api_url.rstrip("/"), account_sid, auth_token
        self.from_number, self.language, self.allow_private = from_number, language, allow_private

    def __repr__(self) -> str:
        return f"TwilioCaller(api_url={self.api_url!r}, account_sid={self.account_sid!r})"

    def form(self, call: Call) -> list[tuple[str, str]]:
        return [("To", call.to), ("From", self.from_number), ("Twiml", twiml(call.text, self.language)),
                ("StatusCallback", call.status_callback), ("StatusCallbackMethod", "POST"),
                *(("StatusCallbackEvent", event) for event in CALLBACK_EVENTS)]

    async def place(self, call: Call) -> str:
        credentials = base64.b64encode(f"{self.account_sid}:{self._token}".encode()).decode()
        response = await call_provider(
            "The call provider", "POST", f"{self.api_url}/2010-04-01/Accounts/{self.account_sid}/Calls.json",
            allow_private=self.allow_private, once=True, content=urlencode(self.form(call)),
            headers={"Authorization": f"Basic {credentials}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            return str(response.json()["sid"])
        except (ValueError, KeyError, TypeError):
            raise ProviderPermanentError(f"the call provider did not place the call: {response.text[:200]}") from None


def make_caller(settings: Any) -> Caller:
    """The caller chosen by CALLS_PROVIDER (`record` or `twilio`)."""
    kind = (settings.calls_provider or "record").strip().lower()
    if kind == "record":
        return RecordingCaller()
    if kind != "twilio":
        raise ProviderPermanentError(f"CALLS_PROVIDER must be 'record' or 'twilio' (got {settings.calls_provider!r})")
    missing = [name for name, value in (("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
                                        ("TWILIO_AUTH_TOKEN", secret_value(settings.twilio_auth_token)),
                                        ("TWILIO_FROM", settings.twilio_from)) if not value]
    if missing:
        raise ProviderPermanentError(f"CALLS_PROVIDER=twilio needs {', '.join(missing)}")
    return TwilioCaller(settings.twilio_api_url, settings.twilio_account_sid, secret_value(settings.twilio_auth_token),
                        settings.twilio_from, settings.call_voice_language, allow_private=settings.allow_private_urls)


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """What Twilio puts in `X-Twilio-Signature`: the HMAC-SHA1 (keyed with the auth token) of the URL followed by
    each parameter's name and value, sorted by name, in Base64."""
    data = url + "".join(f"{name}{value}" for name, value in sorted(params, key=lambda pair: pair[0]))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()
