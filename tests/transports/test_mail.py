"""Email through a real SMTP server (aiosmtpd on loopback), read back as the recipient sees it."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from activities.transports.mail import (
    Attachment,
    InvalidAddress,
    MailPermanentError,
    MailSettings,
    MailTemporaryError,
    add_tracking,
    build_message,
    message_id_for,
    send_message,
    track_plain_text,
)
from scripts.local import free_port

PDF_BYTES = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"
BASE = "https://crm.example.com"


class Inbox:
    """aiosmtpd handler: keeps delivered messages; ``rcpt_reply`` can refuse recipients."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.rcpt_reply: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply is not None and not address.startswith("ok"):
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.original_content, policy=default_policy))
        return "250 Message accepted for delivery"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"crm", b"pa55word")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, MailSettings]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, MailSettings(host="127.0.0.1", port=controller.port, sender="shop@example.com", timeout=5)
    finally:
        controller.stop()


@pytest.fixture
def smtp_with_auth() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=free_port(), authenticator=_authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def _invoice_mail(key: str = "deal-7/entry-1/Send invoice", to: str = "Anna Nowak <anna@client.example>"):
    body = "Dear Anna,\nyour invoice: https://crm.example.com/d/abc123.\nPay at https://pay.example.com/i?id=7&x=1\n"
    html, links = add_tracking(body, base_url=BASE, token="tok42")
    text = track_plain_text(body, links, base_url=BASE, token="tok42")
    message = build_message(
        sender="Furniture Shop <shop@example.com>",
        to=to,
        subject="Invoice for\nSofa \u201cLux\u201d",
        text=text,
        html=html,
        attachments=[Attachment("invoice-7.pdf", PDF_BYTES, "application/pdf")],
        message_id_key=key,
        domain="crm.example.com",
    )
    return message, links


async def test_message_with_attachment_and_tracking_arrives(smtp) -> None:
    inbox, settings = smtp
    message, links = _invoice_mail()
    result = await send_message(settings, message)

    assert result.refused == {}
    [received] = inbox.messages
    assert inbox.envelopes == [("shop@example.com", ["anna@client.example"])]
    assert received["Subject"] == "Invoice for Sofa \u201cLux\u201d"
    assert received["To"] == "Anna Nowak <anna@client.example>"
    assert received["Message-ID"] == message_id_for("deal-7/entry-1/Send invoice", "crm.example.com")

    assert links == ["https://crm.example.com/d/abc123", "https://pay.example.com/i?id=7&x=1"]
    text = received.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text == (
        "Dear Anna,\nyour invoice: https://crm.example.com/t/c/tok42/0.\n"
        "Pay at https://crm.example.com/t/c/tok42/1\n"
    )
    html = received.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert '<a href="https://crm.example.com/t/c/tok42/0">https://crm.example.com/d/abc123</a>.' in html
    assert '<a href="https://crm.example.com/t/c/tok42/1">https://pay.example.com/i?id=7&amp;x=1</a>' in html
    assert html.rstrip().endswith('<img src="https://crm.example.com/t/o/tok42.gif" width="1" height="1" alt="">')

    [attachment] = list(received.iter_attachments())
    assert attachment.get_filename() == "invoice-7.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == PDF_BYTES


async def test_resend_carries_the_same_message_id(smtp) -> None:
    inbox, settings = smtp
    await send_message(settings, _invoice_mail("deal-7/entry-1/Send invoice")[0])
    await send_message(settings, _invoice_mail("deal-7/entry-1/Send invoice")[0])
    await send_message(settings, _invoice_mail("deal-7/entry-2/Send invoice")[0])
    ids = [m["Message-ID"] for m in inbox.messages]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].startswith("<") and ids[0].endswith("@crm.example.com>")


async def test_server_down_is_temporary() -> None:
    settings = MailSettings(host="127.0.0.1", port=free_port(), timeout=2)
    with pytest.raises(MailTemporaryError, match="SMTP"):
        await send_message(settings, _invoice_mail()[0])


async def test_recipient_refused_with_550_is_permanent(smtp) -> None:
    inbox, settings = smtp
    inbox.rcpt_reply = "550 5.1.1 No such user here"
    with pytest.raises(MailPermanentError, match="anna@client.example: 550"):
        await send_message(settings, _invoice_mail()[0])
    assert inbox.messages == []


async def test_recipient_deferred_with_450_is_temporary(smtp) -> None:
    inbox, settings = smtp
    inbox.rcpt_reply = "450 4.2.1 Mailbox busy, try later"
    with pytest.raises(MailTemporaryError, match="450"):
        await send_message(settings, _invoice_mail()[0])
    assert inbox.messages == []


async def test_partly_refused_recipients_are_reported_not_raised(smtp) -> None:
    inbox, settings = smtp
    inbox.rcpt_reply = "550 5.1.1 No such user here"
    message = build_message(
        sender="shop@example.com", to=["ok@client.example", "gone@client.example"], subject="Hi", text="Hello",
        message_id_key="k", domain="crm.example.com",
    )
    result = await send_message(settings, message)
    assert list(result.refused) == ["gone@client.example"]
    assert "550" in result.refused["gone@client.example"]
    assert inbox.envelopes == [("shop@example.com", ["ok@client.example"])]


async def test_login_with_credentials(smtp_with_auth) -> None:
    inbox, port = smtp_with_auth
    good = MailSettings(host="127.0.0.1", port=port, username="crm", password="pa55word", timeout=5)
    await send_message(good, _invoice_mail()[0])
    assert len(inbox.messages) == 1

    bad = MailSettings(host="127.0.0.1", port=port, username="crm", password="wrong", timeout=5)
    with pytest.raises(MailPermanentError, match="authentication failed: 535") as failed:
        await send_message(bad, _invoice_mail()[0])
    assert "wrong" not in str(failed.value)
    assert len(inbox.messages) == 1


def test_password_never_in_repr() -> None:
    settings = MailSettings(username="crm", password="pa55word")
    assert "pa55word" not in repr(settings)
    assert "pa55word" not in str(settings)


def test_settings_from_service_settings() -> None:
    from models.settings import get_settings

    service = get_settings(SMTP_HOST="mail.example.com", SMTP_PORT=2525, SMTP_USERNAME="crm",
                           SMTP_PASSWORD="pa55word", SMTP_FROM="shop@example.com", SMTP_STARTTLS=True)
    settings = MailSettings.from_settings(service)
    assert (settings.host, settings.port, settings.username, settings.password, settings.sender, settings.starttls) == (
        "mail.example.com", 2525, "crm", "pa55word", "shop@example.com", True
    )


@pytest.mark.parametrize(
    "address",
    ["", "no-at-sign", "@client.example", "anna@", "two@a.example, three@b.example", "x@y.com\r\nBcc: z@w.com"],
)
def test_bad_recipient_refused_naming_it(address: str) -> None:
    with pytest.raises(InvalidAddress, match="invalid email address|no recipient"):
        build_message(
            sender="shop@example.com", to=address, subject="s", text="t", message_id_key="k", domain="d.example"
        )


def test_default_local_sender_accepted() -> None:
    message = build_message(
        sender="stageflow@localhost", to="anna@client.example", subject="s", text="t", message_id_key="k",
        domain="localhost",
    )
    assert message["From"] == "stageflow@localhost"


def test_html_body_keeps_markup_and_rewrites_only_links() -> None:
    body = (
        '<html><body><p>Hi <b>Anna</b>, see <a href="https://crm.example.com/d/x?a=1&amp;b=2">your document</a>'
        " or <a href='http://shop.example.com/'>our shop</a>"
        ' (<a href="mailto:shop@example.com">mail</a>) and again'
        ' <a href="https://crm.example.com/d/x?a=1&amp;b=2">here</a>.</p></body></html>'
    )
    html, links = add_tracking(body, base_url=BASE + "/", token="t/1")
    assert links == ["https://crm.example.com/d/x?a=1&b=2", "http://shop.example.com/"]
    assert html == (
        '<html><body><p>Hi <b>Anna</b>, see <a href="https://crm.example.com/t/c/t%2F1/0">your document</a>'
        " or <a href='https://crm.example.com/t/c/t%2F1/1'>our shop</a>"
        ' (<a href="mailto:shop@example.com">mail</a>) and again'
        ' <a href="https://crm.example.com/t/c/t%2F1/0">here</a>.</p>'
        '<img src="https://crm.example.com/t/o/t%2F1.gif" width="1" height="1" alt=""></body></html>'
    )


def test_plain_text_without_links_gets_only_escaping_and_pixel() -> None:
    html, links = add_tracking("Price < 5 & size > 3\nBye", base_url=BASE, token="t")
    assert links == []
    assert html == (
        "Price &lt; 5 &amp; size &gt; 3<br>\nBye"
        '<img src="https://crm.example.com/t/o/t.gif" width="1" height="1" alt="">'
    )
