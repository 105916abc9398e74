"""Email: building messages, sending them over SMTP, and open/click tracking."""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from typing import Any
from urllib.parse import quote

import aiosmtplib


class MailError(Exception):
    """Sending failed; see the subclasses for whether a retry can help."""


class MailTemporaryError(MailError):
    """Connection failure, timeout or a 4xx answer: retrying later can succeed."""


class MailPermanentError(MailError):
    """A 5xx answer (recipient, sender or message refused; authentication failed): do not retry."""


class InvalidAddress(ValueError):
    """An email address that cannot be used."""


@dataclass(frozen=True)
class MailSettings:
    host: str = "localhost"
    port: int = 8025
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "stageflow@localhost"
    starttls: bool = False
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> MailSettings:
        """From the service settings (SMTP_* variables)."""
        password = settings.smtp_password
        if password is not None and hasattr(password, "get_secret_value"):
            password = password.get_secret_value()
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=password or None,
            sender=settings.smtp_from,
            starttls=settings.smtp_starttls,
        )


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes = field(repr=False)
    mime: str = "application/octet-stream"


@dataclass(frozen=True)
class SendResult:
    """The server's final answer, and recipients it refused while accepting others."""

    response: str
    refused: dict[str, str] = field(default_factory=dict)


def message_id_for(key: str, domain: str) -> str:
    """A Message-ID that depends only on ``key``, so a resend carries the same id."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()}@{domain}>"


def parse_address(raw: str) -> Address:
    """One address ("Name <a@b.c>" or "a@b.c"); raises InvalidAddress naming it."""
    if not isinstance(raw, str):
        raise InvalidAddress(f"invalid email address {raw!r}: expected text")
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    if "\n" in raw or "\r" in raw:
        raise InvalidAddress(f"invalid email address {shown!r}")
    parsed = getaddresses([raw])
    if len(parsed) != 1:
        raise InvalidAddress(f"invalid email address {shown!r}: expected exactly one address")
    name, addr = parsed[0]
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain.strip(".") or " " in addr:
        raise InvalidAddress(f"invalid email address {shown!r}")
    try:
        return Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise InvalidAddress(f"invalid email address {shown!r}: {exc}") from exc


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_message(
    *,
    sender: str,
    to: str | Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    attachments: Sequence[Attachment] = (),
    message_id_key: str,
    domain: str,
) -> EmailMessage:
    """A complete message: text part, optional HTML alternative, attachments, stable Message-ID.

    Line breaks in the subject (e.g. from a placeholder) become spaces.
    """
    recipients = [to] if isinstance(to, str) else list(to)
    if not recipients:
        raise InvalidAddress("no recipient email address")
    message = EmailMessage()
    message["From"] = parse_address(sender)
    message["To"] = [parse_address(address) for address in recipients]
    message["Subject"] = _one_line(subject)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id_for(message_id_key, domain)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in attachments:
        maintype, _, subtype = attachment.mime.partition("/")
        message.add_attachment(
            attachment.content,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return message


def _response_error(code: int, what: str) -> MailError:
    error_type = MailPermanentError if 500 <= code < 600 else MailTemporaryError
    return error_type(what)


def _classify(exc: aiosmtplib.SMTPException) -> MailError:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusals = exc.recipients
        details = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in refusals)
        permanent = any(500 <= r.code < 600 for r in refusals)
        error_type = MailPermanentError if permanent else MailTemporaryError
        return error_type(f"recipients refused ({details})")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _response_error(exc.code, f"sender {exc.sender} refused: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _response_error(exc.code, f"SMTP authentication failed: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _response_error(exc.code, f"SMTP server answered {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return MailPermanentError(f"SMTP server does not support what the settings ask: {exc.message}")
    return MailTemporaryError(f"SMTP connection failed: {exc}")


async def send_message(settings: MailSettings, message: EmailMessage) -> SendResult:
    """Send over SMTP; raises MailTemporaryError (retry) or MailPermanentError (don't)."""
    try:
        refused, response = await aiosmtplib.send(
            message,
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password,
            start_tls=settings.starttls,
            timeout=settings.timeout,
        )
    except aiosmtplib.SMTPException as exc:
        raise _classify(exc) from exc
    except OSError as exc:
        raise MailTemporaryError(f"SMTP connection to {settings.host}:{settings.port} failed: {exc}") from exc
    return SendResult(response=response, refused={rcpt: str(answer) for rcpt, answer in refused.items()})


# --- tracking --------------------------------------------------------------

_LINK = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"']*)\2""", re.IGNORECASE)
_TAG = re.compile(r"<[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>")
_TRAILING = ".,;:!?"


def _trim_link(link: str) -> str:
    """Drop sentence punctuation and unbalanced closing brackets that end a link in prose."""
    while link and (link[-1] in _TRAILING or (link[-1] == ")" and link.count(")") > link.count("("))):
        link = link[:-1]
    return link


def looks_like_html(body: str) -> bool:
    return _TAG.search(body) is not None


def click_url(base_url: str, token: str, n: int) -> str:
    return f"{base_url.rstrip('/')}/t/c/{quote(token, safe='')}/{n}"


def open_pixel_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/t/o/{quote(token, safe='')}.gif"


class _LinkTable:
    """Numbers distinct links in order of first appearance."""

    def __init__(self, base_url: str, token: str, links: list[str] | None = None) -> None:
        self.base_url, self.token = base_url, token
        self.links: list[str] = links if links is not None else []

    def tracked(self, link: str) -> str:
        if link not in self.links:
            self.links.append(link)
        return click_url(self.base_url, self.token, self.links.index(link))


def _track_text_to_html(text: str, table: _LinkTable) -> str:
    parts: list[str] = []
    position = 0
    for match in _LINK.finditer(text):
        link = _trim_link(match.group(0))
        parts.append(html.escape(text[position : match.start()]))
        parts.append(f'<a href="{html.escape(table.tracked(link))}">{html.escape(link)}</a>')
        position = match.start() + len(link)
    parts.append(html.escape(text[position:]))
    return "".join(parts).replace("\r\n", "\n").replace("\n", "<br>\n")


def _track_html(body: str, table: _LinkTable) -> str:
    def replace(match: re.Match[str]) -> str:
        link = html.unescape(match.group(3))
        return f"{match.group(1)}{match.group(2)}{html.escape(table.tracked(link))}{match.group(2)}"

    return _HREF.sub(replace, body)


def _append_pixel(body: str, pixel: str) -> str:
    closing = body.lower().rfind("</body>")
    if closing == -1:
        return body + pixel
    return body[:closing] + pixel + body[closing:]


def add_tracking(html_or_text: str, *, base_url: str, token: str) -> tuple[str, list[str]]:
    """The HTML body with tracked links and an open pixel, and the original links.

    Link ``n`` of the result points to ``{base_url}/t/c/{token}/{n}``, which
    should redirect to ``links[n]``; the pixel is ``{base_url}/t/o/{token}.gif``.
    An HTML body keeps its markup: only ``href`` values are rewritten. A plain
    text body is escaped, its line breaks become ``<br>`` and its links become
    anchors that show the original link.
    """
    table = _LinkTable(base_url, token)
    if looks_like_html(html_or_text):
        tracked = _track_html(html_or_text, table)
    else:
        tracked = _track_text_to_html(html_or_text, table)
    pixel = f'<img src="{html.escape(open_pixel_url(base_url, token))}" width="1" height="1" alt="">'
    return _append_pixel(tracked, pixel), table.links


def track_plain_text(text: str, links: list[str], *, base_url: str, token: str) -> str:
    """The plain-text part with each link replaced by its click URL; everything else unchanged.

    ``links`` is the list returned by add_tracking for the same body; links
    found only here are appended to it, so one numbering serves both parts.
    """
    table = _LinkTable(base_url, token, links)

    def replace(match: re.Match[str]) -> str:
        link = _trim_link(match.group(0))
        return table.tracked(link) + match.group(0)[len(link) :]

    return _LINK.sub(replace, text)
