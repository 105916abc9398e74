"""SMS: phone number normalization and the providers that send messages."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Protocol

import httpx
import phonenumbers

from activities.transports.net import Resolver, ResponseTooLarge, UrlRefused, safe_request, validate_url_syntax

DEFAULT_BODY_TEMPLATE = '{"to": "{to}", "text": "{text}"}'
HTTP_METHODS = ("POST", "PUT", "PATCH")
RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})
_PLACEHOLDER = re.compile(r"\{(to|text|key)\}")
_HEADER_LINE = re.compile(r"^([A-Za-z0-9!#$%&'*+.^_`|~-]+):\s*(.+)$")


class InvalidPhone(ValueError):
    """A phone number that cannot be normalized to E.164."""


class SmsError(Exception):
    """Sending failed; see the subclasses for whether a retry can help."""


class SmsTemporaryError(SmsError):
    """Connection failure, timeout, 5xx or rate limiting: retrying later can succeed."""


class SmsPermanentError(SmsError):
    """The provider refused the message (4xx) or its URL is refused: do not retry."""


class SmsConfigError(ValueError):
    """The SMS_* settings are unusable."""


def normalize_phone(raw: str, default_region: str) -> str:
    """The number in E.164 ("+48601234567"); numbers without a country code use ``default_region``."""
    shown = repr(raw if len(str(raw)) <= 40 else str(raw)[:37] + "...")
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidPhone(f"invalid phone number {shown}: empty")
    try:
        number = phonenumbers.parse(raw, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"invalid phone number {shown}: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"invalid phone number {shown}: not a valid number (default region {default_region})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def key_digest(key: str) -> str:
    """A short, header-safe stand-in for an idempotency key."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class SmsProvider(Protocol):
    async def send(self, to_e164: str, text: str, key: str) -> str:
        """Send one message; returns the provider's message id. ``key`` is stable across retries."""
        ...


class RecordingProvider:
    """Sends nothing: the stored Message row is the record. Its id depends only on the key."""

    async def send(self, to_e164: str, text: str, key: str) -> str:
        return f"rec-{key_digest(key)}"


def parse_auth_header(raw: str) -> tuple[str, str]:
    """``"X-Api-Key: abc"`` names its header; anything else (``"Bearer abc"``) is an Authorization value."""
    match = _HEADER_LINE.match(raw.strip())
    if match:
        return match.group(1), match.group(2).strip()
    return "Authorization", raw.strip()


def _substitute(value: Any, replacements: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda match: replacements[match.group(1)], value)
    if isinstance(value, list):
        return [_substitute(item, replacements) for item in value]
    if isinstance(value, dict):
        return {_substitute(k, replacements): _substitute(v, replacements) for k, v in value.items()}
    return value


def render_body(template: Any, *, to: str, text: str, key: str) -> bytes:
    """The JSON body: placeholders {to}, {text}, {key} replaced inside the template's strings.

    Substitution happens on the parsed JSON, so quotes, backslashes and line
    breaks in the text can never break or extend the document.
    """
    replacements = {"to": to, "text": text, "key": key}
    return json.dumps(_substitute(template, replacements), ensure_ascii=False).encode()


def _parse_template(body_template: str | None) -> Any:
    source = body_template or DEFAULT_BODY_TEMPLATE
    try:
        template = json.loads(source)
    except json.JSONDecodeError as exc:
        raise SmsConfigError(
            f"SMS_HTTP_BODY_TEMPLATE must be JSON with {{to}} and {{text}} inside strings ({exc.msg})"
        ) from exc
    if "{text}" not in json.dumps(template, ensure_ascii=False):
        raise SmsConfigError("SMS_HTTP_BODY_TEMPLATE must contain {text} inside a string")
    return template


def _message_id(response: httpx.Response, key: str) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for name in ("id", "message_id", "messageId", "sid"):
            if isinstance(data.get(name), (str, int)) and not isinstance(data.get(name), bool):
                return str(data[name])
    return f"http-{key_digest(key)}"


class HttpSmsProvider:
    """Sends through a provider's HTTP API, via the SSRF-guarded client.

    ``auth_header`` is either a full header line ("X-Api-Key: abc") or the
    value of the Authorization header ("Bearer abc"). The request also carries
    ``Idempotency-Key`` (a digest of the send key; ``{key}`` in the template
    gives the same value).
    """

    def __init__(
        self,
        url: str,
        method: str = "POST",
        auth_header: str | None = None,
        body_template: str | None = None,
        *,
        allow_private: bool = False,
        timeout: float = 10,
        resolver: Resolver | None = None,
    ) -> None:
        error = validate_url_syntax(url)
        if error is not None:
            raise SmsConfigError(f"SMS_HTTP_URL {error}")
        if method.upper() not in HTTP_METHODS:
            raise SmsConfigError(f"SMS_HTTP_METHOD must be one of {', '.join(HTTP_METHODS)} (got {method!r})")
        self.url, self.method = url, method.upper()
        self._auth = parse_auth_header(auth_header) if auth_header else None
        self._template = _parse_template(body_template)
        self.allow_private, self.timeout, self._resolver = allow_private, timeout, resolver

    def __repr__(self) -> str:
        return f"HttpSmsProvider(method={self.method!r}, allow_private={self.allow_private})"

    def _headers(self, digest: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": digest}
        if self._auth is not None:
            headers[self._auth[0]] = self._auth[1]
        return headers

    async def send(self, to_e164: str, text: str, key: str) -> str:
        digest = key_digest(key)
        try:
            response = await safe_request(
                self.method, self.url, allow_private=self.allow_private, headers=self._headers(digest),
                content=render_body(self._template, to=to_e164, text=text, key=digest),
                timeout=self.timeout, resolver=self._resolver,
            )
        except (UrlRefused, ResponseTooLarge) as exc:
            raise SmsPermanentError(f"SMS provider call refused: {exc}") from exc
        except httpx.HTTPError as exc:
            raise SmsTemporaryError(f"SMS provider unreachable: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status >= 500 or status in RETRYABLE_CLIENT_STATUSES:
            raise SmsTemporaryError(f"SMS provider answered {status}: {response.text[:200]}")
        if status >= 300:
            raise SmsPermanentError(f"SMS provider refused the message with {status}: {response.text[:200]}")
        return _message_id(response, key)


def _secret(value: Any) -> str | None:
    if value is not None and hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return value or None


def make_sms_provider(settings: Any) -> SmsProvider:
    """The provider chosen by SMS_PROVIDER ("record" or "http")."""
    kind = (settings.sms_provider or "record").strip().lower()
    if kind == "record":
        return RecordingProvider()
    if kind != "http":
        raise SmsConfigError(f"SMS_PROVIDER must be 'record' or 'http' (got {settings.sms_provider!r})")
    if not settings.sms_http_url:
        raise SmsConfigError("SMS_HTTP_URL is required when SMS_PROVIDER=http")
    return HttpSmsProvider(
        settings.sms_http_url,
        settings.sms_http_method or "POST",
        _secret(settings.sms_http_auth_header),
        settings.sms_http_body_template,
        allow_private=bool(getattr(settings, "allow_private_urls", False)),
    )
