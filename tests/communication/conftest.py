"""Fixtures for the email and SMS rules: an optional HTTP SMS provider beside the SMTP server (`inbox`, in
tests/conftest.py), and the shared `stack` reading its SMTP_* / SMS_* settings from them (set in the environment before the stack opens)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from tests.communication.mailbox import Inbox, SmsGateway, point_sms_at, sms_gateway

if TYPE_CHECKING:
    from tests.stacks import Stack


@pytest.fixture
async def sms(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SmsGateway | None]:
    """SMS settings of the test, chosen by indirect parametrization: "gateway" sends through an HTTP
    provider on loopback (yielded, to read what it received); a dict sets those SMS_* variables."""
    choice = getattr(request, "param", None)
    if choice == "gateway":
        async with sms_gateway() as gateway:
            point_sms_at(monkeypatch, gateway)
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
