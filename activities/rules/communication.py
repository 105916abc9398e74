"""Client communication: send an email (over SMTP, with documents and tracking), send an SMS, write on a messenger
channel (Telegram, WhatsApp), call the client (a call is placed once; its status follows the provider's callbacks).

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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator
from sqlmodel import Session
from temporalio import activity

from activities.keys import effect_key
from activities.rule import RuleContext, RuleFailed
from activities.transports.calls import Call, RecordingCaller
from activities.transports.channels import (
    TEXT_LIMITS,
    ChannelMessage,
    InvalidIdentity,
    ProviderPermanentError,
    ProviderTemporaryError,
    approved_templates,
    channel_identity,
)
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
    return activity.in_activity() and ctx.attempt >= ctx.deps.settings.rule_max_attempts


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


# -- messenger channels ---------------------------------------------------------------------------


def _channel_recipient(ctx: RuleContext, session: Session, channel: str) -> tuple[str, str]:
    """`settings.to` rendered, else the contact's (or company's) identity on `channel`; and where it came from."""
    if ctx.settings.to:
        return ctx.render(ctx.settings.to).strip(), "settings.to"
    item = session.get(Item, ctx.item_id)
    for model, ident in ((Contact, item.contact_id), (Company, item.company_id)):
        party = session.get(model, ident) if ident else None
        if party is not None and (party.channels or {}).get(channel):
            return str(party.channels[channel]), f"the {model.__name__.lower()} {party.name}'s {channel} identity"
    raise RuleFailed(
        f"no recipient: the {ctx.entity}'s contact and company have no {channel} identity; add it "
        f'(PATCH /contacts/{{id}} {{"channels": {{"{channel}": …}}}}) or set settings.to'
    )


def _prepare_channel(ctx: RuleContext, session: Session, channel: str, text: str, region: str) -> tuple[int, str, bool]:
    """The message row (made once, keyed), its recipient, and whether it went out already (the provider gave it an
    id: its status may have moved on to delivered or read since)."""
    raw, source = _channel_recipient(ctx, session, channel)
    try:
        to = channel_identity(channel, raw, region)
    except InvalidIdentity as error:
        raise RuleFailed(f"{source}: {error}") from error
    message = get_by(session, Message, effect_key=ctx.effect_key)
    if message is None:
        message = Message(item_id=ctx.item_id, channel=channel, to=to, body=text, effect_key=ctx.effect_key)
    elif message.provider_id is None:
        message.to, message.body, message.status, message.error = to, text, "queued", None
    session.add(message)
    session.flush()
    return message.id, to, message.provider_id is not None


class SendChannelMessageSettings(BaseModel):
    """`text` may carry a document's link as a placeholder (`{{Rule.invoice.public_url}}`)."""

    model_config = settings_config(
        {"channel": "telegram", "text": "Hello {{Deal.Contact.Name}}, your invoice: {{Rule.invoice.public_url}}"},
        {"channel": "whatsapp", "template": "order_ready", "text": "Order ready (template order_ready)"},
    )
    channel: Literal["telegram", "whatsapp"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=TEXT_LIMITS["telegram"])]
    """With a WhatsApp template: what the item's messages show (the client reads the template's own text)."""
    template: Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")] | None = None
    """WhatsApp only: an approved template (WHATSAPP_TEMPLATES) sent instead of the text, as WhatsApp requires
    when the client has not written in the last 24 hours."""
    to: Annotated[str, StringConstraints(max_length=200)] | None = None
    """Default: the contact's (else the company's) identity on the channel. A chat id, a number, or a placeholder."""

    @field_validator("template")
    @classmethod
    def _template_on_whatsapp(cls, template: str | None, info: Any) -> str | None:
        if template is not None and info.data.get("channel") != "whatsapp":
            raise ValueError("only WhatsApp sends templates; leave it empty for Telegram")
        return template


class SendChannelMessage(RuleType[SendChannelMessageSettings]):
    name = "send_channel_message"
    group = "communication"
    title = "Send message to a channel"
    description = "Writes to the client on Telegram or WhatsApp: a text, or an approved WhatsApp template."
    settings = SendChannelMessageSettings
    returns = ("message_id", "provider_id")

    def check(self, settings: SendChannelMessageSettings, env: RuleEnv) -> Iterable[Problem]:
        problems: list[Problem] = []
        if settings.template is not None and settings.template not in env.channel_templates:
            approved = ", ".join(env.channel_templates) or "none (set WHATSAPP_TEMPLATES)"
            problems.append((("template",), f"{settings.template!r} is not an approved template; approved: {approved}"))
        if settings.to is not None and not has_placeholder(settings.to):
            try:
                channel_identity(settings.channel, settings.to, env.phone_region)
            except InvalidIdentity as error:
                problems.append((("to",), str(error)))
        return problems

    async def run(self, ctx: RuleContext) -> dict[str, Any]:
        """Sends through the channel's provider (or records, when the channel has no token)."""
        settings = ctx.settings
        text = ctx.render(settings.text).strip()
        if not text:
            raise RuleFailed(f"settings.text: {settings.text!r} renders as an empty message")
        if len(text) > TEXT_LIMITS[settings.channel]:
            raise RuleFailed(f"settings.text: the message is {len(text)} characters once its placeholders are "
                             f"filled; {settings.channel} takes {TEXT_LIMITS[settings.channel]}")
        region = ctx.deps.settings.sms_default_region
        message_id, to, done = await ctx.db(lambda session: _prepare_channel(ctx, session, settings.channel, text,
                                                                            region))
        if done:
            sent = await ctx.db(lambda session: session.get(Message, message_id).provider_id)
            return {"message_id": message_id, "provider_id": sent}
        language = approved_templates(ctx.deps.settings).get(settings.template or "")
        try:
            sender = ctx.deps.transports.channel_sender(ctx.deps.settings, settings.channel)
            provider_id = await sender.send(ChannelMessage(channel=settings.channel, to=to, text=text,
                                                           key=ctx.effect_key, template=settings.template,
                                                           language=language))
        except ProviderPermanentError as error:
            await _record_failure(ctx, message_id, error, permanent=True)
            raise RuleFailed(f"the {settings.channel} message to {to} was refused: {error}") from error
        except ProviderTemporaryError as error:
            await _record_failure(ctx, message_id, error, permanent=False)
            raise
        await _mark(ctx, message_id, status="sent", sent_at=utcnow(), provider_id=provider_id)
        return {"message_id": message_id, "provider_id": provider_id}


# -- calls ----------------------------------------------------------------------------------------


def _prepare_call(ctx: RuleContext, session: Session, text: str, region: str) -> tuple[int, str, str | None]:
    """The call's message row (made once, keyed), the number, and the provider's id if the call was placed."""
    raw, source = _recipients(ctx, session, "phone", "phone number")
    try:
        to = normalize_phone(raw[0], region)
    except InvalidPhone as error:
        raise RuleFailed(f"{source}: {error}") from error
    message = get_by(session, Message, effect_key=ctx.effect_key)
    if message is None:
        message = Message(item_id=ctx.item_id, channel="call", to=to, body=text, effect_key=ctx.effect_key)
    elif message.provider_id is None:
        message.to, message.body, message.status, message.error = to, text, "queued", None
    session.add(message)
    session.flush()
    return message.id, to, message.provider_id


class CallClientSettings(BaseModel):
    model_config = settings_config({"text": "Hello {{Deal.Contact.Name}}, your order {{Deal.Title}} is ready."})
    text: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    """What the call says (read out by the provider's voice)."""
    to: Annotated[str, StringConstraints(max_length=200)] | None = None
    """Default: the item's contact (else company) phone. A number, or a placeholder."""

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        return check_recipients(value, PHONE_RE, "a phone number")


class CallClient(RuleType[CallClientSettings]):
    name = "call_client"
    group = "communication"
    title = "Call the client"
    description = ("Phones the client through the telephony provider and reads the text out; how the call ends "
                   "(answered, no answer, busy) comes back to the call-finished trigger.")
    settings = CallClientSettings
    returns = ("message_id", "call_id")

    def check(self, settings: CallClientSettings, env: RuleEnv) -> Iterable[Problem]:
        if settings.to is None or has_placeholder(settings.to):
            return []
        try:
            normalize_phone(settings.to.split(",")[0].strip(), env.phone_region)
        except InvalidPhone as error:
            return [(("to",), f"{error}; give the number with its country code (+48 601 234 567)")]
        return []

    async def run(self, ctx: RuleContext) -> dict[str, Any]:
        """Places the call once (a retried run finds it placed); its status follows from the provider's callbacks."""
        text = ctx.render(ctx.settings.text).strip()
        if not text:
            raise RuleFailed(f"settings.text: {ctx.settings.text!r} renders as an empty text")
        region = ctx.deps.settings.sms_default_region
        message_id, to, placed = await ctx.db(lambda session: _prepare_call(ctx, session, text, region))
        if placed is not None:
            return {"message_id": message_id, "call_id": placed}
        callback = f"{ctx.deps.settings.effective_public_url}/channels/calls/status"
        try:
            caller = ctx.deps.transports.caller(ctx.deps.settings)
            call_id = await caller.place(Call(to=to, text=text, key=ctx.effect_key, status_callback=callback))
        except ProviderPermanentError as error:
            await _record_failure(ctx, message_id, error, permanent=True)
            raise RuleFailed(f"the call to {to} was refused: {error}") from error
        except ProviderTemporaryError as error:
            await _record_failure(ctx, message_id, error, permanent=False)
            raise
        recorded = isinstance(caller, RecordingCaller)
        await _mark(ctx, message_id, status="sent" if recorded else "queued", sent_at=utcnow(), provider_id=call_id)
        return {"message_id": message_id, "call_id": call_id}
