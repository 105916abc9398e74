"""Fixtures for the employee monitoring rules: a real SMTP server and a stack whose SMTP settings reach it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.communication.mailbox import smtp_server
from tests.stacks import Stack, open_stack, stack_settings

SENDER = "CRM <crm@shop.example>"


class Inbox:
    """aiosmtpd handler keeping every delivered message. `refuse` (e.g. "550 no such user") refuses every
    recipient; `busy` answers "451" to that many recipients first, as a server under load would."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse: str | None = None
        self.busy = 0
        self.port = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse is not None:
            return self.refuse
        if self.busy > 0:
            self.busy -= 1
            return "451 4.3.2 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.original_content, policy=default_policy))
        return "250 Message accepted for delivery"


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_server(Inbox()) as server:
        yield server


@pytest.fixture
async def mail_stack(dev_env: WorkflowEnvironment, tmp_path: Path, inbox: Inbox) -> AsyncIterator[Stack]:
    settings = stack_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=inbox.port, smtp_from=SENDER)
    async with AsyncExitStack() as exit_stack:
        yield await open_stack(exit_stack, dev_env, settings)
