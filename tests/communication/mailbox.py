"""Real loopback servers for the client-communication tests: SMTP (aiosmtpd) and an HTTP SMS provider."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller

from scripts.local import free_port

SENDER = "Furniture Shop <shop@furniture.example>"


class Inbox:
    """aiosmtpd handler: keeps every delivered message; `refuse` makes it answer RCPT with an error."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.rcpt_reply: str | None = None
        self.refusals_left: int | None = None
        self.refused = 0
        self.port = 0

    def refuse(self, reply: str, times: int | None = None) -> None:
        """Answer every RCPT with `reply` (e.g. "550 5.1.1 no such user"), or only the next `times` ones."""
        self.rcpt_reply, self.refusals_left = reply, times

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply is not None and self.refusals_left != 0:
            self.refused += 1
            if self.refusals_left is not None:
                self.refusals_left -= 1
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.original_content, policy=default_policy))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server(handler: Any = None) -> Iterator[Any]:
    """A real SMTP server on a loopback port of its own, delivering to `handler` (an `Inbox` unless another is
    given), which learns its `port`."""
    inbox = handler if handler is not None else Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port
    try:
        yield inbox
    finally:
        controller.stop()


def point_settings_at(monkeypatch, inbox: Inbox) -> None:
    """The SMTP_* variables a stack opened afterwards in this test reads: the loopback server of `inbox`."""
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(inbox.port))
    monkeypatch.setenv("SMTP_FROM", SENDER)


def point_sms_at(monkeypatch, gateway: SmsGateway) -> None:
    """The SMS_* variables a stack opened afterwards in this test reads: the HTTP provider of `gateway`."""
    monkeypatch.setenv("SMS_PROVIDER", "http")
    monkeypatch.setenv("SMS_HTTP_URL", gateway.url)
    monkeypatch.setenv("SMS_HTTP_AUTH_HEADER", "Bearer sms-secret")


def text_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


def html_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def pdf_attachments(message: EmailMessage) -> list[tuple[str, bytes]]:
    return [
        (part.get_filename(), part.get_content())
        for part in message.iter_attachments()
        if part.get_content_type() == "application/pdf"
    ]


class SmsGateway:
    """A tiny HTTP/1.1 SMS provider on loopback: records each request body; answers from `replies`
    (status, body) in turn, then 200 with a message id."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: list[tuple[int, bytes]] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/messages"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append({"line": lines[0], "headers": headers, "json": json.loads(body or b"null")})
            status, payload = self.replies.pop(0) if self.replies else (200, b'{"id": "gw-%d"}' % len(self.requests))
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n".encode("latin-1") + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def sms_gateway() -> AsyncIterator[SmsGateway]:
    gateway = SmsGateway()
    listener = await asyncio.start_server(gateway.handle, "127.0.0.1", 0)
    gateway.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield gateway
