"""Fixtures for the email and SMS rules: a real SMTP server, an optional HTTP SMS provider, and the shared
`stack` reading its SMTP_* / SMS_* settings from them (set in the environment before the stack opens)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.communication.mailbox import Inbox, SmsGateway, point_settings_at, sms_gateway, smtp_server

if TYPE_CHECKING:
    from tests.stacks import Stack


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    with smtp_server() as server:
        point_settings_at(monkeypatch, server)
        yield server


@pytest.fixture
async def sms(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SmsGateway | None]:
    """SMS settings of the test, chosen by indirect parametrization: "gateway" sends through an HTTP
    provider on loopback (yielded, to read what it received); a dict sets those SMS_* variables."""
    choice = getattr(request, "param", None)
    if choice == "gateway":
        async with sms_gateway() as gateway:
            monkeypatch.setenv("SMS_PROVIDER", "http")
            monkeypatch.setenv("SMS_HTTP_URL", gateway.url)
            monkeypatch.setenv("SMS_HTTP_AUTH_HEADER", "Bearer sms-secret")
            yield gateway
        return
    for name, value in (choice or {}).items():
        monkeypatch.setenv(name, value)
    yield None


@pytest.fixture
async def mail_stack(inbox: Inbox, sms: SmsGateway | None, stack: Stack) -> AsyncIterator[Stack]:
    """The test's stack, opened after the SMTP server and SMS settings are in place."""
    assert stack.settings.smtp_port == inbox.port
    yield stack
