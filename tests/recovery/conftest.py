"""A stack that mails to the test's real SMTP server (`inbox`, opened first)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.communication.mailbox import Inbox
from tests.stacks import Stack


@pytest.fixture
async def mail_stack(inbox: Inbox, stack: Stack) -> AsyncIterator[Stack]:
    assert stack.settings.smtp_port == inbox.port
    yield stack
