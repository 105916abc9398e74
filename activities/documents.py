"""Documents rules: create a document, send it for signing, change and read requisites.

A document is made once per rule run. In one transaction the rule takes the next number of its
template and year (`Sequence` row `<template>/<year>`), renders the DOCX and stores the `Document` row
keyed by the rule's effect key, so a retry or a crashed worker either finds that row (and its number)
or finds nothing at all. The PDF is rendered from the same inputs, kept on the row (`data`, and the
signature and stamp images in `render_input` until the PDF exists):

- `wait_for_pdf: true`: the rule renders the PDF before it returns, so the next after-previous rule
  starts once the PDF exists. A retry after a crash between the DOCX and the PDF renders the PDF.
- `wait_for_pdf: false`: the rule returns once the DOCX is stored (status `rendering`); the PDF is
  rendered on a background task of the worker process, which sets status `ready`. Documents whose
  background render was lost with a worker are picked up by `resume_pending_pdfs`, which each
  documents rule starts on its way in (and which a worker may call when it starts).

Until the PDF exists, `GET /documents/{id}/pdf` answers 404.

Signing links and one-time codes: each signer gets an unguessable link (`/sign/<token>`); codes are
sent by `api.routes.signing` and kept only as salted hashes (never in logs, the timeline, messages
or workflow inputs).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from activities import placeholders
from activities.docrender import (
    BUILTIN_KINDS,
    DEFAULT_TITLES,
    DocumentContext,
    InvalidDocumentData,
    TemplateRejected,
    builtin_template,
    compute_totals,
    format_money,
    format_number,
    render_docx,
    render_pdf,
    sha256_hex,
    to_decimal,
)
from activities.engine import RuleContext, RuleFailed
from activities.mail import (
    InvalidAddress,
    MailPermanentError,
    MailSettings,
    build_message,
    parse_address,
    send_message,
)
from activities.requisites import (
    InvalidRequisite,
    check_value,
    display_name,
    format_address,
)
from activities.sms import (
    InvalidPhone,
    SmsConfigError,
    SmsPermanentError,
    make_sms_provider,
    normalize_phone,
)
from activities.store import add_timeline, get_by, get_or_create
from activities.context import entity_key
from models.db import session_scope
from models.rule_types import (
    REQUISITE_RETURNS,
    ChangeRequisitesSettings,
    CreateDocumentSettings,
    GetRequisitesSettings,
    SendForSignatureSettings,
)
from models.settings import Settings
from models.tables import (
    Company,
    Contact,
    Document,
    DocumentSigner,
    DocumentTemplate,
    Item,
    Message,
    Requisites,
    Sequence,
    SettingsRecord,
    TimelineEntry,
    User,
)

log = logging.getLogger(__name__)

BUILTIN_PREFIXES = {"invoice": "INV", "offer": "OFF", "contract": "CTR"}
DEFAULT_CURRENCY = "USD"
TITLE_FIELD = "DocumentTitle"
PDF_RETRY_DELAYS = (0.5, 2.0, 5.0)
PENDING_PDF_AGE = timedelta(seconds=10)
SIGNER_STATUSES = ("pending", "sent", "viewed", "signed")


# -- shared helpers ------------------------------------------------------------------------------


def utc(value: datetime | None) -> datetime | None:
    """Datetimes read back from SQLite are naive UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def public_url(settings: Settings, token: str | None) -> str:
    return f"{settings.effective_public_url}/public/documents/{token}" if token else ""


def signing_url(settings: Settings, token: str) -> str:
    return f"{settings.effective_public_url}/sign/{token}"


def _company_settings(session: Session) -> dict[str, Any]:
    record = session.get(SettingsRecord, "company")
    return dict(record.value) if record is not None and record.value else {}


def _party(session: Session, item: Item, entity: str) -> Contact | Company:
    model, party_id = (Contact, item.contact_id) if entity == "contact" else (Company, item.company_id)
    row = session.get(model, party_id) if party_id is not None else None
    if row is None:
        raise RuleFailed(f"settings.entity: the {item.entity_type} has no linked {entity}")
    return row


def _requisites(session: Session, owner_type: str, owner_id: int) -> Requisites | None:
    return get_by(session, Requisites, owner_type=owner_type, owner_id=owner_id)


# -- create_document -----------------------------------------------------------------------------


@dataclass
class DocumentOptions:
    template: str
    my_company: bool = True
    with_signature_and_stamp: bool = False
    public_link: bool = False
    fields: dict[str, str] = field(default_factory=dict)
    lines: list[dict[str, Any]] | None = None
    signer_name: str | None = None


@dataclass
class MadeDocument:
    id: int
    number: str
    title: str
    public_token: str | None
    has_pdf: bool


def _made(document: Document) -> MadeDocument:
    return MadeDocument(
        id=document.id, number=document.number, title=document.title, public_token=document.public_token,
        has_pdf=document.pdf is not None,
    )


def _template(session: Session, code: str) -> tuple[bytes, str, str, str]:
    """(template bytes, number prefix, title, kind) of a built-in or uploaded template."""
    if code in BUILTIN_KINDS:
        return builtin_template(code), BUILTIN_PREFIXES[code], DEFAULT_TITLES[code], code
    row = get_by(session, DocumentTemplate, code=code)
    if row is None:
        raise RuleFailed(f"settings.template: document template {code!r} does not exist (any more)")
    return row.content, row.prefix, row.name, code


def _seller(company: Mapping[str, Any], *, full: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """My company as the document's seller, and its bank details."""
    requisites = company.get("requisites") or {}
    fields = requisites.get("fields") or {}
    addresses = requisites.get("addresses") or {}
    name = str(company.get("name") or "").strip() or display_name(fields)
    if not full:
        return {"name": name}, {}
    if not name:
        raise RuleFailed("settings.my_company: my company has no name or requisites yet; set them with PUT /settings/company")
    seller = {
        "name": name,
        "tax_id": fields.get("tax_id") or fields.get("vat_id"),
        "legal_address": format_address(addresses.get("legal")),
        "actual_address": format_address(addresses.get("actual")),
        "email": fields.get("email"),
        "phone": fields.get("phone"),
    }
    bank_source = {**(requisites.get("bank") or {}), **(company.get("bank") or {})}
    bank = {
        "bank_name": bank_source.get("bank_name"),
        "account": bank_source.get("iban") or bank_source.get("bank_account") or bank_source.get("account"),
        "swift": bank_source.get("swift") or bank_source.get("bic"),
    }
    return seller, bank


def _buyer(session: Session, item: Item) -> dict[str, Any]:
    """The client: the item's company, else its contact, with their requisites."""
    for owner_type, model, owner_id in (("company", Company, item.company_id), ("contact", Contact, item.contact_id)):
        party = session.get(model, owner_id) if owner_id is not None else None
        if party is None:
            continue
        requisites = _requisites(session, owner_type, party.id)
        fields = requisites.fields if requisites else {}
        addresses = requisites.addresses if requisites else {}
        return {
            "name": display_name(fields, party.name),
            "tax_id": fields.get("tax_id") or fields.get("vat_id"),
            "legal_address": format_address(addresses.get("legal")),
            "actual_address": format_address(addresses.get("actual")),
            "email": fields.get("email") or party.email,
            "phone": fields.get("phone") or party.phone,
        }
    return {}


def _images(company: Mapping[str, Any]) -> dict[str, str]:
    missing = [label for key, label in (("signature_image", "signature"), ("stamp_image", "stamp"))
               if not company.get(key)]
    if missing:
        raise RuleFailed(
            f"settings.with_signature_and_stamp: my company has no {' and no '.join(missing)} image; "
            "upload it with PUT /settings/company"
        )
    return {"signature_png": company["signature_image"], "stamp_png": company["stamp_image"]}


def _line(name: Any, quantity: Any, price: Any, tax: Any, where: str) -> dict[str, str]:
    text = str(name or "").strip()
    if not text:
        raise RuleFailed(f"{where}.name: a name is required")
    try:
        amount = to_decimal(1 if quantity is None else quantity, f"{where}.quantity")
        unit_price = to_decimal(price, f"{where}.price")
        rate = to_decimal(0 if tax in (None, "") else tax, f"{where}.tax")
    except InvalidDocumentData as error:
        raise RuleFailed(str(error)) from None
    if not 0 <= rate <= 100:
        raise RuleFailed(f"{where}.tax: {rate} is not a tax rate between 0 and 100")
    return {"name": text, "quantity": str(amount), "unit_price": str(unit_price), "tax_rate": str(rate)}


def _item_lines(item: Item) -> list[dict[str, str]]:
    where = f"{entity_key(item.entity_type)}.products"
    if item.products:
        lines = []
        for index, product in enumerate(item.products):
            if not isinstance(product, Mapping):
                raise RuleFailed(f"{where}[{index}]: a product is an object with name, quantity, price, tax")
            lines.append(_line(
                product.get("name") or product.get("title"),
                product.get("quantity", product.get("qty")),
                product.get("price", product.get("unit_price")),
                product.get("tax", product.get("tax_rate")),
                f"{where}[{index}]",
            ))
        return lines
    if item.amount is None:
        raise RuleFailed(
            f"settings.lines: the {item.entity_type} has no products and no amount; give lines in the settings"
        )
    return [_line(item.title, 1, item.amount, 0, f"{entity_key(item.entity_type)}.Amount")]


def _issued_on(session: Session, at: datetime) -> date:
    """The issue date in the company's time zone (its business calendar)."""
    record = session.get(SettingsRecord, "calendar")
    zone = (record.value or {}).get("timezone") if record is not None else None
    try:
        return at.astimezone(ZoneInfo(zone or "UTC")).date()
    except (ZoneInfoNotFoundError, ValueError):
        return at.astimezone(timezone.utc).date()


def _next_number(session: Session, key: str) -> int:
    """The next value of a sequence; the row stays locked until the transaction ends."""
    updated = session.execute(
        update(Sequence).where(col(Sequence.key) == key).values(value=col(Sequence.value) + 1)
    )
    if updated.rowcount == 0:
        session.add(Sequence(key=key, value=1))
        session.flush()
        return 1
    return session.exec(select(Sequence.value).where(Sequence.key == key)).one()


def _context_from(document: Document) -> DocumentContext:
    """The render inputs stored on the row: the PDF matches the DOCX made with them."""
    data = document.data
    images = document.render_input or {}
    return DocumentContext(
        kind=data["kind"],
        number=document.number,
        issued_on=date.fromisoformat(data["issued_on"]),
        currency=data["currency"],
        title=document.title,
        seller=dict(data.get("seller") or {}),
        buyer=dict(data.get("buyer") or {}),
        bank=dict(data.get("bank") or {}),
        lines=[dict(line) for line in data.get("lines") or []],
        extra=dict(data.get("extra") or {}),
        signature_png=base64.b64decode(images["signature_png"]) if images.get("signature_png") else None,
        stamp_png=base64.b64decode(images["stamp_png"]) if images.get("stamp_png") else None,
        signer_name=data.get("signer_name"),
    )


def _create(session: Session, ctx: RuleContext, options: DocumentOptions) -> MadeDocument:
    existing = get_by(session, Document, effect_key=ctx.effect_key)
    if existing is not None:
        return _made(existing)
    item = session.get(Item, ctx.item_id)
    content, prefix, template_title, kind = _template(session, options.template)
    company = _company_settings(session)
    seller, bank = _seller(company, full=options.my_company)
    images = _images(company) if options.with_signature_and_stamp else {}
    lines = options.lines if options.lines is not None else _item_lines(item)
    extra = dict(options.fields)
    title = extra.pop(TITLE_FIELD, "").strip() or template_title
    issued_on = _issued_on(session, ctx.at)
    signer_name = options.signer_name or company.get("signer_name")
    if not signer_name and company.get("signer_user_id"):
        signer = session.get(User, company["signer_user_id"])
        signer_name = signer.name if signer else None
    document_ctx = DocumentContext(
        kind=kind, number="", issued_on=issued_on, currency=item.currency or DEFAULT_CURRENCY, title=title,
        seller=seller, buyer=_buyer(session, item), bank=bank, lines=lines, extra=extra,
        signature_png=base64.b64decode(images["signature_png"]) if images else None,
        stamp_png=base64.b64decode(images["stamp_png"]) if images else None,
        signer_name=signer_name,
    )
    try:
        totals = compute_totals(lines)
    except InvalidDocumentData as error:
        raise RuleFailed(str(error)) from None
    sequence = _next_number(session, f"{options.template}/{issued_on.year}")
    document_ctx.number = format_number(prefix, issued_on.year, sequence)
    try:
        docx = render_docx(content, document_ctx)
    except (TemplateRejected, InvalidDocumentData) as error:
        raise RuleFailed(f"settings.template: {options.template}: {error}") from None
    document = Document(
        item_id=item.id,
        template=options.template,
        number=document_ctx.number,
        title=title,
        status="rendering",
        docx=docx,
        public_token=secrets.token_urlsafe(32) if options.public_link else None,
        effect_key=ctx.effect_key,
        data={
            "kind": kind,
            "issued_on": issued_on.isoformat(),
            "currency": document_ctx.currency,
            "seller": seller,
            "buyer": document_ctx.buyer,
            "bank": bank,
            "lines": lines,
            "extra": extra,
            "signer_name": signer_name,
            "subtotal": format_money(totals.subtotal),
            "tax": format_money(totals.tax),
            "total": format_money(totals.total),
            "with_signature_and_stamp": options.with_signature_and_stamp,
            "rule": ctx.rule_name,
        },
        render_input=images,
    )
    session.add(document)
    session.flush()
    add_timeline(
        session, item.id, "document_created", f"Document {document.number} ({title}) created by rule {ctx.rule_name}",
        at=ctx.at, key=f"{ctx.effect_key}/document", rule_name=ctx.rule_name, entry_no=ctx.entry_no,
        document_id=document.id, number=document.number, template=options.template,
    )
    return _made(document)


def render_pending_pdf(engine: Engine, document_id: int) -> bool:
    """Render and store the document's PDF unless it exists. True when this call stored it."""
    with session_scope(engine) as session:
        document = session.get(Document, document_id)
        if document is None or document.pdf is not None or document.docx is None:
            return False
        document_ctx = _context_from(document)
    pdf = render_pdf(document_ctx)
    with session_scope(engine) as session:
        stored = session.execute(
            update(Document)
            .where(col(Document.id) == document_id, col(Document.pdf).is_(None))
            .values(pdf=pdf, sha256=sha256_hex(pdf), status="ready", render_input={})
        )
        return stored.rowcount == 1


_in_flight: set[int] = set()
_tasks: set[asyncio.Task] = set()


def _spawn(work: Any) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def render_pdf_later(engine: Engine, document_id: int) -> None:
    """Render the PDF on a background task of this process (once per document at a time)."""
    if document_id in _in_flight:
        return
    _in_flight.add(document_id)
    _spawn(_render_in_background(engine, document_id))


async def _render_in_background(engine: Engine, document_id: int) -> None:
    try:
        for pause in (*PDF_RETRY_DELAYS, None):
            try:
                await asyncio.to_thread(render_pending_pdf, engine, document_id)
                return
            except Exception as error:
                log.warning("PDF of document %s failed: %s", document_id, error)
                if pause is None:
                    await asyncio.to_thread(_mark_failed, engine, document_id, f"{type(error).__name__}: {error}")
                    return
                await asyncio.sleep(pause)
    finally:
        _in_flight.discard(document_id)


def _mark_failed(engine: Engine, document_id: int, error: str) -> None:
    with session_scope(engine) as session:
        document = session.get(Document, document_id)
        if document is not None and document.pdf is None:
            document.status = "failed"
            document.data = {**document.data, "error": error[:500]}
            session.add(document)


def _pending_pdfs(engine: Engine) -> list[int]:
    older_than = datetime.now(timezone.utc) - PENDING_PDF_AGE
    with session_scope(engine) as session:
        return list(session.exec(
            select(Document.id).where(
                Document.status == "rendering",
                col(Document.docx).is_not(None),
                col(Document.pdf).is_(None),
                col(Document.created_at) < older_than,
            )
        ).all())


async def resume_pending_pdfs(engine: Engine) -> int:
    """Start rendering the PDFs whose background render was lost (a worker stopped). Returns how many."""
    ids = [document_id for document_id in await asyncio.to_thread(_pending_pdfs, engine) if document_id not in _in_flight]
    for document_id in ids:
        render_pdf_later(engine, document_id)
    return len(ids)


def _options_for(ctx: RuleContext, settings: CreateDocumentSettings | SendForSignatureSettings, **extra: Any) -> DocumentOptions:
    fields = {name: ctx.render(value) for name, value in settings.fields.items()}
    lines = None
    if settings.lines is not None:
        lines = [
            _line(
                ctx.render(line.name),
                placeholders.render_value(line.quantity, ctx.data),
                placeholders.render_value(line.price, ctx.data),
                placeholders.render_value(line.tax, ctx.data),
                f"settings.lines[{index}]",
            )
            for index, line in enumerate(settings.lines)
        ]
    return DocumentOptions(
        template=settings.template,
        with_signature_and_stamp=settings.with_signature_and_stamp,
        public_link=settings.public_link,
        fields=fields,
        lines=lines,
        **extra,
    )


async def make_document(ctx: RuleContext, options: DocumentOptions, *, wait_for_pdf: bool) -> MadeDocument:
    """The rule's document, made once: found by the effect key, or numbered, rendered and stored."""
    _spawn(resume_pending_pdfs(ctx.deps.engine))
    made = await ctx.db(lambda session: _create(session, ctx, options))
    if not made.has_pdf:
        if wait_for_pdf:
            await asyncio.to_thread(render_pending_pdf, ctx.deps.engine, made.id)
            made.has_pdf = True
        else:
            render_pdf_later(ctx.deps.engine, made.id)
    return made


def _document_results(ctx: RuleContext, made: MadeDocument) -> dict[str, Any]:
    base = ctx.deps.settings.effective_public_url
    return {
        "document_id": made.id,
        "number": made.number,
        "title": made.title,
        "public_url": public_url(ctx.deps.settings, made.public_token),
        "pdf_url": f"{base}/documents/{made.id}/pdf",
    }


async def create_document(ctx: RuleContext) -> dict[str, Any]:
    settings = CreateDocumentSettings.model_validate(ctx.settings)
    options = _options_for(ctx, settings, my_company=settings.my_company)
    made = await make_document(ctx, options, wait_for_pdf=settings.wait_for_pdf)
    return _document_results(ctx, made)


# -- messages ------------------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """The message was refused for good (address, provider, configuration); the Message row says why."""


def _mail_domain(sender: str) -> str:
    return sender.rpartition("@")[2].strip("> ") or "stageflow.local"


async def deliver(
    settings: Settings,
    engine: Engine,
    *,
    key: str,
    item_id: int | None,
    channel: str,
    to: str,
    subject: str,
    text: str,
    recorded_text: str | None = None,
) -> int:
    """Send one e-mail or SMS once per key: the Message row is queued first, then sent, then marked.

    `recorded_text` is what the Message row keeps when the sent text must not be stored (one-time
    codes). Raises DeliveryFailed for permanent refusals; temporary failures propagate for a retry.
    """

    def queue(session: Session) -> tuple[int, str]:
        row, _ = get_or_create(
            session, Message, key, item_id=item_id, channel=channel, to=to,
            subject=subject if channel == "email" else None, body=recorded_text or text, status="queued",
        )
        return row.id, row.status

    def mark(message_id: int, status: str, *, provider_id: str | None = None, error: str | None = None) -> None:
        with session_scope(engine) as session:
            row = session.get(Message, message_id)
            row.status, row.error = status, error
            if provider_id is not None:
                row.provider_id, row.sent_at = provider_id, datetime.now(timezone.utc)
            session.add(row)

    def run_queue() -> tuple[int, str]:
        with session_scope(engine) as session:
            return queue(session)

    message_id, status = await asyncio.to_thread(run_queue)
    if status == "sent":
        return message_id
    try:
        if channel == "email":
            mail = MailSettings.from_settings(settings)
            message = build_message(
                sender=mail.sender, to=to, subject=subject, text=text, message_id_key=key,
                domain=_mail_domain(mail.sender),
            )
            await send_message(mail, message)
            provider_id = str(message["Message-ID"])
        else:
            provider_id = await make_sms_provider(settings).send(to, text, key)
    except (MailPermanentError, SmsPermanentError, InvalidAddress, SmsConfigError) as error:
        await asyncio.to_thread(mark, message_id, "failed", error=str(error)[:500])
        raise DeliveryFailed(str(error)) from error
    await asyncio.to_thread(mark, message_id, "sent", provider_id=provider_id)
    return message_id


# -- send_for_signature --------------------------------------------------------------------------


@dataclass
class SignerSpec:
    role: str  # company | client
    name: str
    channel: str  # email | sms
    address: str


def _signer_specs(
    session: Session, ctx: RuleContext, settings: SendForSignatureSettings, signer_user: Any,
    signer_name: str | None, signer_email: str | None,
) -> list[SignerSpec]:
    """The company's signer and the client, with where their links go; RuleFailed names what is missing."""
    if settings.signer_user_id is not None:
        if isinstance(signer_user, bool) or not isinstance(signer_user, int):
            try:
                signer_user = int(str(signer_user).strip())
            except ValueError:
                raise RuleFailed(f"settings.signer_user_id: {signer_user!r} is not a user id") from None
        user = session.get(User, signer_user)
        if user is None:
            raise RuleFailed(f"settings.signer_user_id: user {signer_user} does not exist")
        if not user.email:
            raise RuleFailed(f"settings.signer_user_id: user {user.name} has no e-mail address for the signing link")
        signer_name, signer_email = user.name, user.email
    if not signer_name or not signer_name.strip():
        raise RuleFailed("settings.signer_name: the signer's name is empty")
    try:
        parse_address(signer_email or "")
    except InvalidAddress as error:
        raise RuleFailed(f"settings.signer_email: {error}") from None
    company = SignerSpec("company", signer_name.strip(), "email", signer_email.strip())

    item = ctx.item
    party: Contact | Company | None = None
    for model, party_id in ((Contact, item.contact_id), (Company, item.company_id)):
        party = session.get(model, party_id) if party_id is not None else None
        if party is not None:
            break
    if party is None:
        raise RuleFailed(f"the {item.entity_type} has no contact or company to sign as the client")
    kind = "contact" if isinstance(party, Contact) else "company"
    if settings.client_channel == "email":
        if not party.email:
            raise RuleFailed(f"settings.client_channel: the {kind} {party.name} has no e-mail address")
        try:
            parse_address(party.email)
        except InvalidAddress as error:
            raise RuleFailed(f"settings.client_channel: the {kind}'s e-mail: {error}") from None
        address = party.email
    else:
        if not party.phone:
            raise RuleFailed(f"settings.client_channel: the {kind} {party.name} has no phone number")
        try:
            address = normalize_phone(party.phone, ctx.deps.settings.sms_default_region)
        except InvalidPhone as error:
            raise RuleFailed(f"settings.client_channel: the {kind}'s phone: {error}") from None
    return [company, SignerSpec("client", party.name, settings.client_channel, address)]


def signing_summary(session: Session, document_id: int) -> dict[str, Any]:
    """Document.signing: the overall status and each signer's status with times (no tokens, no codes)."""
    signers = session.exec(
        select(DocumentSigner).where(DocumentSigner.document_id == document_id).order_by(DocumentSigner.position)
    ).all()
    statuses = [signer.status for signer in signers]
    if statuses and all(status == "signed" for status in statuses):
        overall = "signed"
    elif "signed" in statuses:
        overall = "partially_signed"
    else:
        overall = max(statuses, key=SIGNER_STATUSES.index) if statuses else "pending"

    def iso(value: datetime | None) -> str | None:
        return utc(value).isoformat() if value is not None else None

    signed_times = [utc(signer.signed_at) for signer in signers if signer.signed_at is not None]
    return {
        "status": overall,
        "signed_at": iso(max(signed_times)) if overall == "signed" else None,
        "signers": [
            {
                "id": signer.id,
                "role": signer.role,
                "name": signer.name,
                "channel": signer.channel,
                "to": signer.address,
                "status": signer.status,
                "sent_at": iso(signer.sent_at),
                "viewed_at": iso(signer.viewed_at),
                "signed_at": iso(signer.signed_at),
                "link_expires_at": iso(signer.link_expires_at),
                "link_revoked_at": iso(signer.link_revoked_at),
            }
            for signer in signers
        ],
    }


def refresh_signing(session: Session, document_id: int) -> dict[str, Any]:
    session.flush()
    summary = signing_summary(session, document_id)
    document = session.get(Document, document_id)
    document.signing = summary
    session.add(document)
    return summary


def revoke_signing(session: Session, document: Document, at: datetime) -> int:
    """Closes every signing link of the document that is still open; signatures given stay. How many it closed."""
    signers = session.exec(select(DocumentSigner).where(
        DocumentSigner.document_id == document.id, col(DocumentSigner.link_revoked_at).is_(None)
    )).all()
    for signer in signers:
        signer.link_revoked_at = at
        session.add(signer)
    if signers and document.item_id is not None:
        add_timeline(
            session, document.item_id, "document_signing_revoked",
            f"Signing links of document {document.number} revoked", at=at,
            key=f"document-{document.id}/signing-revoked", document_id=document.id,
        )
    refresh_signing(session, document.id)
    return len(signers)


def _open_signing(
    session: Session, ctx: RuleContext, document_id: int, specs: list[SignerSpec], expires_at: datetime
) -> list[DocumentSigner]:
    signers = []
    for position, spec in enumerate(specs):
        signer, _ = get_or_create(
            session, DocumentSigner, f"{ctx.effect_key}/signer/{spec.role}",
            document_id=document_id, item_id=ctx.item_id, position=position, role=spec.role, name=spec.name,
            channel=spec.channel, address=spec.address, token=secrets.token_urlsafe(32), link_expires_at=expires_at,
        )
        signers.append(signer)
    refresh_signing(session, document_id)
    return signers


def _record_sent(session: Session, ctx: RuleContext, made: MadeDocument, signers: list[DocumentSigner]) -> None:
    names = ", ".join(f"{signer.name} ({signer.role})" for signer in signers)
    add_timeline(
        session, ctx.item_id, "document_sent_for_signing", f"Document {made.number} sent for signing to {names}",
        at=ctx.at, key=f"{ctx.effect_key}/signing", rule_name=ctx.rule_name, entry_no=ctx.entry_no,
        document_id=made.id, number=made.number,
    )


def link_valid_until(signer: DocumentSigner) -> str:
    return utc(signer.link_expires_at).strftime("%Y-%m-%d %H:%M UTC")


def _link_text(signer: DocumentSigner, document: MadeDocument, seller: str, link: str) -> tuple[str, str]:
    what = f"{document.title} {document.number}"
    subject = f"Please sign {what}"
    until = link_valid_until(signer)
    if signer.channel == "sms":
        return subject, f"{seller or 'We'} ask you to sign {what} by {until}: {link}"
    text = (
        f"Hello {signer.name},\n\n"
        f"{seller or 'We'} ask you to sign {what}.\n"
        f"Open this personal link to read the document and sign it with a one-time code:\n{link}\n"
        f"The link is valid until {until}.\n\n"
        "Please do not forward this link."
    )
    return subject, text


def _mark_sent(session: Session, signer_id: int, at: datetime) -> None:
    signer = session.get(DocumentSigner, signer_id)
    if signer.status == "pending":
        signer.status, signer.sent_at = "sent", at
        session.add(signer)
    refresh_signing(session, signer.document_id)


async def send_for_signature(ctx: RuleContext) -> dict[str, Any]:
    settings = SendForSignatureSettings.model_validate(ctx.settings)
    signer_user = placeholders.render_value(settings.signer_user_id, ctx.data) if settings.signer_user_id else None
    signer_name = ctx.render(settings.signer_name) if settings.signer_name else None
    signer_email = ctx.render(settings.signer_email) if settings.signer_email else None
    specs = await ctx.db(
        lambda session: _signer_specs(session, ctx, settings, signer_user, signer_name, signer_email)
    )
    options = _options_for(ctx, settings, signer_name=specs[0].name)
    made = await make_document(ctx, options, wait_for_pdf=True)
    expires_at = ctx.at + timedelta(days=settings.link_expires_days)
    signers = await ctx.db(lambda session: _open_signing(session, ctx, made.id, specs, expires_at))
    seller = await ctx.db(lambda session: _seller(_company_settings(session), full=False)[0]["name"])
    links = {}
    for signer in signers:
        link = signing_url(ctx.deps.settings, signer.token)
        links[signer.role] = link
        subject, text = _link_text(signer, made, seller, link)
        try:
            await deliver(
                ctx.deps.settings, ctx.deps.engine, key=f"{signer.effect_key}/link", item_id=ctx.item_id,
                channel=signer.channel, to=signer.address, subject=subject, text=text,
            )
        except DeliveryFailed as error:
            raise RuleFailed(f"the signing link for {signer.name} ({signer.role}) was refused: {error}") from None
        await ctx.db(lambda session, signer_id=signer.id: _mark_sent(session, signer_id, ctx.at))
    await ctx.db(lambda session: _record_sent(session, ctx, made, signers))
    return {
        "document_id": made.id,
        "number": made.number,
        "signing_url": links["client"],
        "public_url": public_url(ctx.deps.settings, made.public_token),
    }


# -- requisites ----------------------------------------------------------------------------------


async def change_requisites(ctx: RuleContext) -> dict[str, Any]:
    settings = ChangeRequisitesSettings.model_validate(ctx.settings)
    values: dict[str, Any] = {}
    for key, raw in settings.fields.items():
        value = placeholders.render_value(raw, ctx.data) if isinstance(raw, str) else raw
        try:
            values[key] = check_value(settings.template, key, value)
        except KeyError as error:
            raise RuleFailed(f"settings.fields.{key}: {error.args[0]}") from None
        except InvalidRequisite as error:
            raise RuleFailed(f"settings.fields.{key}: {error}") from None
    record_key = f"{ctx.effect_key}/requisites"

    def work(session: Session) -> dict[str, Any]:
        done = get_by(session, TimelineEntry, key=record_key)
        if done is not None:
            return {"changed": list(done.data.get("changed") or [])}
        party = _party(session, ctx.item, settings.entity)
        row = _requisites(session, settings.entity, party.id)
        if row is None:
            row = Requisites(owner_type=settings.entity, owner_id=party.id, template=settings.template)
        elif row.template != settings.template:
            raise RuleFailed(
                f"settings.template: the {settings.entity} {party.name} has {row.template} requisites, "
                f"not {settings.template}"
            )
        fields, bank = dict(row.fields or {}), dict(row.bank or {})
        addresses = {kind: dict(address or {}) for kind, address in (row.addresses or {}).items()}
        changed = []
        for key, value in values.items():
            group, _, name = key.rpartition(".")
            if group == "address":
                target = addresses.setdefault(settings.address_type, {})
            else:
                target = bank if group == "bank" else fields
            before = target.get(name)
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
            if before != value:
                changed.append(key)
        row.fields, row.bank, row.addresses, row.updated_at = fields, bank, addresses, ctx.at
        session.add(row)
        add_timeline(
            session, ctx.item_id, "requisites_changed",
            f"Requisites of {settings.entity} {party.name} changed: {', '.join(changed) or 'no field changed'}",
            at=ctx.at, key=record_key, rule_name=ctx.rule_name, entry_no=ctx.entry_no,
            entity=settings.entity, party_id=party.id, changed=changed,
        )
        return {"changed": changed}

    return await ctx.db(work)


async def get_requisites(ctx: RuleContext) -> dict[str, Any]:
    settings = GetRequisitesSettings.model_validate(ctx.settings)

    def work(session: Session) -> dict[str, Any]:
        party = _party(session, ctx.item, settings.entity)
        row = _requisites(session, settings.entity, party.id)
        if row is not None and settings.template is not None and row.template != settings.template:
            raise RuleFailed(
                f"settings.template: the {settings.entity} {party.name} has {row.template} requisites, "
                f"not {settings.template}"
            )
        fields = dict(row.fields or {}) if row else {}
        address = dict((row.addresses or {}).get(settings.address_type) or {}) if row else {}
        bank = dict(row.bank or {}) if row else {}
        result: dict[str, Any] = dict.fromkeys(REQUISITE_RETURNS)
        result.update({name: fields.get(name) for name in ("tax_id", "registration_number", "vat_id",
                                                            "first_name", "last_name")})
        result.update({name: address.get(name) for name in ("street", "city", "zip", "region", "country")})
        result.update({name: bank.get(name) for name in ("bank_name", "bank_account", "bank_code", "iban", "swift")})
        result.update(
            template=row.template if row else None,
            name=display_name(fields, party.name),
            email=fields.get("email") or party.email,
            phone=fields.get("phone") or party.phone,
            address=format_address(address),
        )
        for name in settings.fields:
            if name not in REQUISITE_RETURNS:
                result[name] = fields.get(name)
        return result

    return await ctx.db(work)
