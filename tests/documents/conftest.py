"""Fixtures for the documents rules: a real SMTP server, and a loopback HTTP SMS provider that keeps what
it receives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.communication.mailbox import Inbox, smtp_server
from tests.stacks import Stack, open_stack, stack_settings


class SmsInbox:
    """An SMS provider's HTTP API on loopback: keeps each JSON body it receives."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = next(
                int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:")
            )
            self.received.append(json.loads(await reader.readexactly(length)))
            body = json.dumps({"id": f"sms-{len(self.received)}"}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def sms_inbox() -> AsyncIterator[SmsInbox]:
    inbox = SmsInbox()
    server = await asyncio.start_server(inbox.handle, "127.0.0.1", 0)
    inbox.port = server.sockets[0].getsockname()[1]
    async with server:
        yield inbox


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_server() as server:
        yield server


@pytest.fixture
async def mail_stack(
    dev_env: WorkflowEnvironment, tmp_path: Path, inbox: Inbox, sms_inbox: SmsInbox
) -> AsyncIterator[Stack]:
    """A stack that mails to `inbox` and sends SMS through `sms_inbox`."""
    settings = stack_settings(
        tmp_path, smtp_host="127.0.0.1", smtp_port=inbox.port, smtp_from="Meble <shop@meble.example>",
        sms_provider="http", sms_http_url=sms_inbox.url, sms_default_region="PL",
    )
    async with AsyncExitStack() as exit_stack:
        stack = await open_stack(exit_stack, dev_env, settings)
        yield stack
