"""Fixtures for simulations: an HTTP SMS gateway beside the SMTP server (`inbox`) the stack would send through, so a test can
show that a simulation sends nothing; and the furniture shop loaded with its real delays."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from scripts.demo import SHOP_DELAYS, load_shop
from tests.communication.mailbox import Inbox, SmsGateway, point_sms_at, sms_gateway

if TYPE_CHECKING:
    from tests.stacks import Stack


@pytest.fixture
async def gateway(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SmsGateway]:
    async with sms_gateway() as server:
        point_sms_at(monkeypatch, server)
        yield server


@pytest.fixture
async def shop_stack(inbox: Inbox, gateway: SmsGateway, stack: Stack) -> AsyncIterator[Stack]:
    """The test's stack, opened after the SMTP server and the SMS gateway are in place, with the shop loaded."""
    assert stack.settings.smtp_port == inbox.port and stack.settings.sms_provider == "http"
    stack.extras["shop"] = await load_shop(stack.http, SHOP_DELAYS)
    yield stack
