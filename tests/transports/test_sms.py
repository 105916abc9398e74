"""SMS: phone normalization, and the HTTP provider against a real loopback HTTP server."""

from __future__ import annotations

import json

import pytest

from activities.transports.sms import (
    HttpSmsProvider,
    InvalidPhone,
    RecordingProvider,
    SmsConfigError,
    SmsPermanentError,
    SmsTemporaryError,
    key_digest,
    make_sms_provider,
    normalize_phone,
)
from models.settings import get_settings

TRICKY_TEXT = (
    'Hi "Anna" \\ your order {key} is ready,\nsee https://crm.example.com/d/x \u2014 '
    "\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439\u0442\u0435"
)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+48 601 234 567", "US", "+48601234567"),
        ("(202) 555-0143", "US", "+12025550143"),
        ("202.555.0143", "US", "+12025550143"),
        ("+1-202-555-0143", "PL", "+12025550143"),
        ("601 234 567", "PL", "+48601234567"),
        ("0048 601-234-567", "PL", "+48601234567"),
        ("020 7946 0018", "gb", "+442079460018"),
    ],
)
def test_normalize_phone(raw: str, region: str, e164: str) -> None:
    assert normalize_phone(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region"),
    [("12", "US"), ("call me", "US"), ("+1 555 0100", "US"), ("", "US"), ("601 234 567", "US")],
)
def test_invalid_phone_refused_naming_it(raw: str, region: str) -> None:
    with pytest.raises(InvalidPhone) as refused:
        normalize_phone(raw, region)
    assert f"invalid phone number {raw!r}" in str(refused.value)


async def test_recording_provider_id_depends_only_on_key() -> None:
    provider = RecordingProvider()
    first = await provider.send("+48601234567", "hello", "deal-1/entry-1/SMS")
    again = await provider.send("+48601234567", "hello", "deal-1/entry-1/SMS")
    other = await provider.send("+48601234567", "hello", "deal-1/entry-2/SMS")
    assert first == again == f"rec-{key_digest('deal-1/entry-1/SMS')}"
    assert other != first


async def test_http_provider_sends_escaped_json_with_auth(http_server) -> None:
    answer = b'{"id": "msg-981", "status": "queued"}'
    http_server.route = lambda request: (201, answer, {"Content-Type": "application/json"})
    provider = HttpSmsProvider(
        http_server.url + "/v1/sms",
        "POST",
        "Bearer sk_live_123",
        '{"recipient": "{to}", "body": "{text}", "meta": {"ref": "{key}", "tags": ["crm", "to:{to}"]}}',
        allow_private=True,
    )
    message_id = await provider.send("+48601234567", TRICKY_TEXT, "deal-1/entry-1/SMS")

    assert message_id == "msg-981"
    [request] = http_server.received
    assert (request.method, request.path) == ("POST", "/v1/sms")
    assert request.headers["authorization"] == "Bearer sk_live_123"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == key_digest("deal-1/entry-1/SMS")
    assert json.loads(request.body) == {
        "recipient": "+48601234567",
        "body": TRICKY_TEXT,
        "meta": {"ref": key_digest("deal-1/entry-1/SMS"), "tags": ["crm", "to:+48601234567"]},
    }


async def test_http_provider_named_header_and_default_template(http_server) -> None:
    http_server.route = lambda request: (200, b"accepted", {})
    provider = HttpSmsProvider(http_server.url + "/send", "PUT", "X-Api-Key: abc:def", None, allow_private=True)
    message_id = await provider.send("+12025550143", "Your courier is on the way", "k1")
    assert message_id == f"http-{key_digest('k1')}"
    [request] = http_server.received
    assert request.method == "PUT"
    assert request.headers["x-api-key"] == "abc:def"
    assert "authorization" not in request.headers
    assert json.loads(request.body) == {"to": "+12025550143", "text": "Your courier is on the way"}


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, SmsTemporaryError), (503, SmsTemporaryError), (429, SmsTemporaryError), (400, SmsPermanentError),
     (401, SmsPermanentError), (422, SmsPermanentError)],
)
async def test_http_provider_error_statuses(http_server, status: int, error: type[Exception]) -> None:
    http_server.route = lambda request: (status, b'{"error": "nope"}', {})
    provider = HttpSmsProvider(http_server.url + "/send", allow_private=True)
    with pytest.raises(error, match=str(status)):
        await provider.send("+12025550143", "hi", "k")


async def test_http_provider_unreachable_is_temporary(closed_port: int) -> None:
    provider = HttpSmsProvider(f"http://127.0.0.1:{closed_port}/send", allow_private=True, timeout=2)
    with pytest.raises(SmsTemporaryError, match="unreachable"):
        await provider.send("+12025550143", "hi", "k")


async def test_http_provider_private_url_refused_unless_allowed(http_server) -> None:
    provider = HttpSmsProvider(http_server.url + "/send", auth_header="Bearer secret-token")
    with pytest.raises(SmsPermanentError, match="loopback address 127.0.0.1") as refused:
        await provider.send("+12025550143", "hi", "k")
    assert http_server.received == []
    assert "secret-token" not in str(refused.value)
    assert "secret-token" not in repr(provider)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"body_template": '{"to": {to}, "text": "{text}"}'}, "SMS_HTTP_BODY_TEMPLATE must be JSON"),
        ({"body_template": '{"to": "{to}"}'}, "must contain {text}"),
        ({"method": "DELETE"}, "SMS_HTTP_METHOD"),
        ({"url": "ftp://sms.example.com/"}, "SMS_HTTP_URL must start with http"),
    ],
)
def test_http_provider_bad_configuration(kwargs: dict, message: str) -> None:
    arguments = {"url": "https://sms.example.com/send", **kwargs}
    with pytest.raises(SmsConfigError, match=message):
        HttpSmsProvider(**arguments)


def test_factory_reads_settings() -> None:
    assert isinstance(make_sms_provider(get_settings()), RecordingProvider)
    provider = make_sms_provider(get_settings(
        SMS_PROVIDER="http", SMS_HTTP_URL="https://sms.example.com/send", SMS_HTTP_METHOD="patch",
        SMS_HTTP_AUTH_HEADER="Bearer t", SMS_HTTP_BODY_TEMPLATE='{"n": "{to}", "m": "{text}"}',
        STAGEFLOW_ALLOW_PRIVATE_URLS=True,
    ))
    assert isinstance(provider, HttpSmsProvider)
    assert (provider.url, provider.method, provider.allow_private) == ("https://sms.example.com/send", "PATCH", True)
    with pytest.raises(SmsConfigError, match="SMS_HTTP_URL is required"):
        make_sms_provider(get_settings(SMS_PROVIDER="http"))
    with pytest.raises(SmsConfigError, match="SMS_PROVIDER must be"):
        make_sms_provider(get_settings(SMS_PROVIDER="carrier-pigeon"))


async def test_factory_http_provider_reaches_configured_endpoint(http_server) -> None:
    provider = make_sms_provider(get_settings(
        SMS_PROVIDER="http", SMS_HTTP_URL=http_server.url + "/hook", SMS_HTTP_AUTH_HEADER="Token abc",
        STAGEFLOW_ALLOW_PRIVATE_URLS=True,
    ))
    await provider.send("+48601234567", "hello", "k")
    [request] = http_server.received
    assert request.headers["authorization"] == "Token abc"
    assert json.loads(request.body) == {"to": "+48601234567", "text": "hello"}
