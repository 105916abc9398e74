"""Client communication: send an email (over SMTP, with documents and tracking), send an SMS.

Each send is recorded as a `Message` row keyed by the rule's effect key: the row is written
("queued") before anything leaves, then marked "sent". A keyed row already "sent" is never sent again,
so a retry or a reset in the Temporal UI cannot send twice. Refusals that a retry cannot cure become
`RuleFailed` (the row says "failed" with the reason); temporary failures propagate and are retried.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, field_validator
from sqlmodel import Session
from temporalio import activity

from activities.keys import effect_key
from activities.rule import RuleContext, RuleFailed
from activities.transports.mail import (
    Attachment,
    InvalidAddress,
    MailPermanentError,
    MailSettings,
    MailTemporaryError,
    add_tracking,
    build_message,
    looks_like_html,
    parse_address,
    track_plain_text,
)
from activities.transports.sms import (
    InvalidPhone,
    SmsConfigError,
    SmsPermanentError,
    SmsTemporaryError,
    normalize_phone,
)
from models.domain.fields import (
    EMAIL_RE,
    PHONE_RE,
    RuleName,
    ShortText,
    Text,
    check_recipients,
    has_placeholder,
    settings_config,
)
from models.domain.problems import Problem
from models.domain.rule_types import RuleEnv, RuleType
from models.store import get_by
from models.tables import Company, Contact, Document, Item, Message, utcnow

_TAG = re.compile(r"<[^<>]+>")
_BREAK = re.compile(r"<\s*(br|/p|/div|/li|/h[1-6]|/tr)\s*/?>", re.IGNORECASE)


class DocumentNotReady(Exception):
    """A document named in `attachments` is still being rendered; the send is retried."""


# -- shared --------------------------------------------------------------------------------------


def _client_value(session: Session, item: Item, attribute: str) -> tuple[str | None, str]:
    """The item's contact's value (else its company's), and where it came from."""
    contact = session.get(Contact, item.contact_id) if item.contact_id else None
    if contact is not None and getattr(contact, attribute):
        return getattr(contact, attribute), f"contact {contact.name}"
    company = session.get(Company, item.company_id) if item.company_id else None
    if company is not None and getattr(company, attribute):
        return getattr(company, attribute), f"company {company.name}"
    return None, ""


def _recipients(ctx: RuleContext, session: Session, attribute: str, what: str) -> tuple[list[str], str]:
    """`settings.to` rendered and split at commas, else the client's own address or number."""
    if ctx.settings.to:
        rendered = ctx.render(ctx.settings.to)
        found = [part.strip() for part in rendered.split(",") if part.strip()]
        if not found:
            raise RuleFailed(f"settings.to: {ctx.settings.to!r} gives no {what}")
        return found, "settings.to"
    item = session.get(Item, ctx.item_id)
    value, source = _client_value(session, item, attribute)
    if value is None:
        raise RuleFailed(
            f"no recipient: the {ctx.entity}'s contact and company have no {what}; add one or set settings.to"
        )
    return [value], f"the {source}'s {what}"


def _last_attempt(ctx: RuleContext) -> bool:
    try:
        return activity.info().attempt >= ctx.deps.settings.rule_max_attempts
    except RuntimeError:
        return False


async def _mark(ctx: RuleContext, message_id: int, **values: Any) -> None:
    def work(session: Session) -> None:
        message = session.get(Message, message_id)
        for name, value in values.items():
            setattr(message, name, value)
        session.add(message)

    await ctx.db(work)


async def _record_failure(ctx: RuleContext, message_id: int, error: Exception, *, permanent: bool) -> None:
    status = "failed" if permanent or _last_attempt(ctx) else "queued"
    await _mark(ctx, message_id, status=status, error=str(error)[:2000])


# -- email ---------------------------------------------------------------------------------------


@dataclass
class _Email:
    message_id: int
    done: bool = False
    recipients: list[str] = field(default_factory=list)
    subject: str = ""
    text: str = ""
    html: str = ""
    files: list[Attachment] = field(default_factory=list)


def _filename(document: Document) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", document.number or f"document-{document.id}").strip("-.")
    return f"{stem or 'document'}.pdf"


def _documents(ctx: RuleContext, session: Session) -> list[tuple[str, Document]]:
    found = []
    for index, name in enumerate(ctx.settings.attachments):
        document = get_by(session, Document, effect_key=effect_key(ctx.workflow_id, name))
        if document is None:
            raise RuleFailed(
                f"settings.attachments.{index}: rule {name!r} created no document in this stage entry "
                "(it was skipped, failed or has not run)"
            )
        if document.pdf is None:
            if document.status == "failed":
                raise RuleFailed(
                    f"settings.attachments.{index}: document {document.number} of rule {name!r} has no PDF"
                )
            raise DocumentNotReady(f"document {document.number} of rule {name!r} is still being rendered")
        found.append((name, document))
    return found


def _public_links(ctx: RuleContext, documents: list[tuple[str, Document]]) -> list[tuple[str, str]]:
    links = []
    for name, document in documents:
        if not document.public_token or document.public_revoked:
            raise RuleFailed(
                f"settings.include_public_link: document {document.number} of rule {name!r} has no public link; "
                "turn on public_link in that rule"
            )
        url = f"{ctx.deps.settings.effective_public_url}/public/documents/{document.public_token}"
        links.append((document.title or document.number, url))
    return links


def _with_links(body: str, links: list[tuple[str, str]]) -> str:
    """The body with each document link it does not already contain appended."""
    missing = [(title, url) for title, url in links if url not in body]
    if not missing:
        return body
    if looks_like_html(body):
        items = "".join(f'<p><a href="{html.escape(url)}">{html.escape(title)}</a></p>' for title, url in missing)
        closing = body.lower().rfind("</body>")
        return body + items if closing == -1 else body[:closing] + items + body[closing:]
    return body.rstrip() + "\n\n" + "\n".join(f"{title}: {url}" for title, url in missing) + "\n"


def _plain(body: str) -> str:
    if not looks_like_html(body):
        return body
    return html.unescape(_TAG.sub("", _BREAK.sub("\n", body))).strip() + "\n"


def _prepare_email(ctx: RuleContext, session: Session, subject: str, body: str, base_url: str) -> _Email:
    message = get_by(session, Message, effect_key=ctx.effect_key)
    if message is not None and message.status == "sent":
        return _Email(message_id=message.id, done=True)
    recipients, source = _recipients(ctx, session, "email", "email address")
    for address in recipients:
        try:
            parse_address(address)
        except InvalidAddress as error:
            raise RuleFailed(f"{source}: {error}") from error
    documents = _documents(ctx, session)
    if ctx.settings.include_public_link:
        body = _with_links(body, _public_links(ctx, documents))
    token = message.tracking_token if message is not None and message.tracking_token else secrets.token_urlsafe(24)
    tracked_html, links = add_tracking(body, base_url=base_url, token=token)
    text = track_plain_text(_plain(body), links, base_url=base_url, token=token)
    described = [
        {
            "rule": name,
            "document_id": document.id,
            "number": document.number,
            "filename": _filename(document),
            "size": len(document.pdf),
        }
        for name, document in documents
    ]
    values = dict(
        to=", ".join(recipients), subject=subject, body=body, status="queued", error=None, tracking_token=token,
        links=links, attachments=described,
    )
    if message is None:
        message = Message(item_id=ctx.item_id, channel="email", effect_key=ctx.effect_key, **values)
    else:
        for name, value in values.items():
            setattr(message, name, value)
    session.add(message)
    session.flush()
    files = [Attachment(_filename(document), document.pdf, "application/pdf") for _name, document in documents]
    return _Email(
        message_id=message.id, recipients=recipients, subject=subject, text=text, html=tracked_html, files=files
    )


def _mail_domain(sender: str) -> str:
    try:
        return parse_address(sender).domain or "localhost"
    except InvalidAddress as error:
        raise RuleFailed(f"the sender address (SMTP_FROM) is unusable: {error}") from error


class SendEmailSettings(BaseModel):
    """`attachments` names earlier create_document / send_for_signature rules whose PDF is attached;
    `include_public_link` also puts each of those documents' public link into the body."""

    model_config = settings_config(
        {
            "subject": "Your invoice for {{Deal.Title}}",
            "body": "Hello {{Deal.Contact.Name}}, your invoice: {{Rule.invoice.public_url}}",
            "attachments": ["invoice"],
            "include_public_link": True,
        }
    )
    subject: ShortText
    body: Text
    to: Annotated[str, StringConstraints(max_length=1000)] | None = None
    """Default: the item's contact (else company) e-mail. Addresses separated by commas, or a placeholder."""
    attachments: list[RuleName] = Field(default_factory=list, max_length=20)
    include_public_link: bool = False

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        return check_recipients(value, EMAIL_RE, "an e-mail address")



class SendEmail(RuleType[SendEmailSettings]):
    name = "send_email"
    group = "communication"
    title = "Send email"
    description = "Sends an e-mail to the client, with created documents attached or linked."
    settings = SendEmailSettings
    returns = ("message_id",)

    def check(self, settings: SendEmailSettings, env: RuleEnv) -> Iterable[Problem]:
        problems: list[Problem] = []
        for index, name in enumerate(settings.attachments):
            kind = env.earlier.get(name)
            if kind is None:
                problems.append((("attachments", index), f"{name!r} is not an earlier rule of stage {env.stage!r}"))
            elif kind not in ("create_document", "send_for_signature"):
                problems.append((("attachments", index), f"rule {name!r} is a {kind} rule; it creates no document"))
        if settings.include_public_link and not settings.attachments:
            problems.append((("include_public_link",), "name the document rules in attachments to include their links"))
        return problems

    async def run(self, ctx: RuleContext) -> dict[str, Any]:
        """Emails the client (default: the contact's address), with created documents attached or linked."""
        subject = ctx.render(ctx.settings.subject)
        body = ctx.render(ctx.settings.body)
        mail = MailSettings.from_settings(ctx.deps.settings)
        domain = _mail_domain(mail.sender)
        base_url = ctx.deps.settings.effective_public_url
        email = await ctx.db(lambda session: _prepare_email(ctx, session, subject, body, base_url))
        if email.done:
            return {"message_id": email.message_id}
        try:
            built = build_message(
                sender=mail.sender, to=email.recipients, subject=email.subject, text=email.text, html=email.html,
                attachments=email.files, message_id_key=ctx.effect_key, domain=domain,
            )
            result = await ctx.deps.transports.send_mail(mail, built)
        except (InvalidAddress, MailPermanentError) as error:
            await _record_failure(ctx, email.message_id, error, permanent=True)
            raise RuleFailed(f"the email to {', '.join(email.recipients)} was refused: {error}") from error
        except MailTemporaryError as error:
            await _record_failure(ctx, email.message_id, error, permanent=False)
            raise
        refused = "; ".join(f"{address}: {answer}" for address, answer in result.refused.items())
        await _mark(
            ctx, email.message_id, status="sent", sent_at=utcnow(), provider_id=built["Message-ID"],
            error=f"refused recipients: {refused}" if refused else None,
        )
        return {"message_id": email.message_id}

# -- SMS -----------------------------------------------------------------------------------------


@dataclass
class _Sms:
    message_id: int
    to: str
    key: str
    done: bool


def _prepare_sms(ctx: RuleContext, session: Session, text: str, region: str) -> list[_Sms]:
    raw, source = _recipients(ctx, session, "phone", "phone number")
    numbers = []
    for number in raw:
        try:
            numbers.append(normalize_phone(number, region))
        except InvalidPhone as error:
            raise RuleFailed(f"{source}: {error}") from error
    numbers = list(dict.fromkeys(numbers))
    sends = []
    for index, number in enumerate(numbers):
        key = ctx.effect_key if index == 0 else ctx.key(index)
        message = get_by(session, Message, effect_key=key)
        if message is None:
            message = Message(item_id=ctx.item_id, channel="sms", to=number, body=text, effect_key=key)
        elif message.status != "sent":
            message.to, message.body, message.status, message.error = number, text, "queued", None
        session.add(message)
        session.flush()
        sends.append(_Sms(message_id=message.id, to=message.to, key=key, done=message.status == "sent"))
    return sends


class SendSmsSettings(BaseModel):
    model_config = settings_config({"text": "Hello {{Deal.Contact.Name}}, we will call you within 30 minutes"})
    text: Annotated[str, StringConstraints(min_length=1, max_length=1600)]
    to: Annotated[str, StringConstraints(max_length=200)] | None = None
    """Default: the item's contact (else company) phone. A number, or a placeholder."""

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        return check_recipients(value, PHONE_RE, "a phone number")


class SendSms(RuleType[SendSmsSettings]):
    name = "send_sms"
    group = "communication"
    title = "Send SMS"
    description = "Sends a text message to the client."
    settings = SendSmsSettings
    returns = ("message_id",)

    def check(self, settings: SendSmsSettings, env: RuleEnv) -> Iterable[Problem]:
        """Numbers written out are read as the rule will read them: without a country code, in the region of
        STAGEFLOW_SMS_DEFAULT_REGION."""
        if settings.to is None or has_placeholder(settings.to):
            return []
        problems: list[Problem] = []
        for part in settings.to.split(","):
            try:
                normalize_phone(part.strip(), env.phone_region)
            except InvalidPhone as error:
                problems.append((("to",), f"{error}; give the number with its country code (+48 601 234 567)"))
        return problems

    async def run(self, ctx: RuleContext) -> dict[str, Any]:
        """Texts the client (default: the contact's phone) through the configured provider."""
        text = ctx.render(ctx.settings.text).strip()
        if not text:
            raise RuleFailed(f"settings.text: {ctx.settings.text!r} renders as an empty message")
        try:
            provider = ctx.deps.transports.sms_provider(ctx.deps.settings)
        except SmsConfigError as error:
            raise RuleFailed(f"the SMS provider settings are unusable: {error}") from error
        region = ctx.deps.settings.sms_default_region
        sends = await ctx.db(lambda session: _prepare_sms(ctx, session, text, region))
        for send in sends:
            if send.done:
                continue
            try:
                provider_id = await provider.send(send.to, text, send.key)
            except SmsPermanentError as error:
                await _record_failure(ctx, send.message_id, error, permanent=True)
                raise RuleFailed(f"the SMS to {send.to} was refused: {error}") from error
            except SmsTemporaryError as error:
                await _record_failure(ctx, send.message_id, error, permanent=False)
                raise
            await _mark(ctx, send.message_id, status="sent", sent_at=utcnow(), provider_id=provider_id)
        return {"message_id": sends[0].message_id}
