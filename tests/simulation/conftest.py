"""Fixtures for simulations: a real SMTP server and an HTTP SMS gateway the stack would send through, so a test can
show that a simulation sends nothing; and the furniture shop loaded with its real delays."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from scripts.demo import SHOP_DELAYS, load_shop
from tests.communication.mailbox import Inbox, SmsGateway, point_settings_at, sms_gateway, smtp_server

if TYPE_CHECKING:
    from tests.stacks import Stack


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    with smtp_server() as server:
        point_settings_at(monkeypatch, server)
        yield server


@pytest.fixture
async def gateway(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SmsGateway]:
    async with sms_gateway() as server:
        monkeypatch.setenv("SMS_PROVIDER", "http")
        monkeypatch.setenv("SMS_HTTP_URL", server.url)
        monkeypatch.setenv("SMS_HTTP_AUTH_HEADER", "Bearer sms-secret")
        yield server


@pytest.fixture
async def shop_stack(inbox: Inbox, gateway: SmsGateway, stack: Stack) -> AsyncIterator[Stack]:
    """The test's stack, opened after the SMTP server and the SMS gateway are in place, with the shop loaded."""
    assert stack.settings.smtp_port == inbox.port and stack.settings.sms_provider == "http"
    stack.extras["shop"] = await load_shop(stack.http, SHOP_DELAYS)
    yield stack
