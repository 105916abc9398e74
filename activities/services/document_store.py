"""Making a rule's document once: its number, its DOCX, its PDF (now or in the background).

A document is made once per rule run. In one transaction the rule takes the next number of its template and
year (`Sequence` row `<template>/<year>`), renders the DOCX and stores the `Document` row keyed by the rule's
effect key, so a retry or a crashed worker either finds that row (and its number) or finds nothing at all. The
PDF is rendered from the same inputs, kept on the row (`data`, and the signature and stamp images in
`render_input` until the PDF exists): before the rule returns (`wait_for_pdf`), or on a background task of the
worker process, which sets status `ready`. Documents whose background render was lost with a worker are picked
up by `resume_pending_pdfs`, which each document rule starts on its way in (and the worker when it starts).
Until the PDF exists, `GET /documents/{id}/pdf` answers 404.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import update
from sqlmodel import Session, col, select

from activities.rule import RuleContext, RuleFailed
from activities.services.documents import (
    BUILTIN_KINDS,
    BUILTIN_PREFIXES,
    DEFAULT_TITLES,
    DocumentContext,
    InvalidDocumentData,
    TemplateRejected,
    builtin_template,
    compute_totals,
    format_number,
    render_docx,
)
from activities.services.documents.money import format_money, to_decimal
from activities.services import pdf_runner
from models.domain.data_tree import entity_root
from models.domain.requisites import display_name, format_address
from models.settings import Settings
from models.store import add_timeline, get_by
from models.tables import Company, Contact, Document, DocumentTemplate, Item, Requisites, Sequence, SettingsRecord, User

log = logging.getLogger(__name__)

DEFAULT_CURRENCY = "USD"
TITLE_FIELD = "DocumentTitle"


def public_url(settings: Settings, token: str | None) -> str:
    return f"{settings.effective_public_url}/public/documents/{token}" if token else ""


def company_settings(session: Session) -> dict[str, Any]:
    record = session.get(SettingsRecord, "company")
    return dict(record.value) if record is not None and record.value else {}


def requisites_of(session: Session, owner_type: str, owner_id: int) -> Requisites | None:
    return get_by(session, Requisites, owner_type=owner_type, owner_id=owner_id)


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
    total: str | None = None
    """What the document asks, tax included, as written on it: `1476.00`."""
    currency: str | None = None


def _made(document: Document) -> MadeDocument:
    data = document.data or {}
    return MadeDocument(
        id=document.id, number=document.number, title=document.title, public_token=document.public_token,
        has_pdf=document.pdf is not None, total=data.get("total"), currency=data.get("currency"),
    )


def _template(session: Session, code: str) -> tuple[bytes, str, str, str]:
    """(template bytes, number prefix, title, kind) of a built-in or uploaded template."""
    if code in BUILTIN_KINDS:
        return builtin_template(code), BUILTIN_PREFIXES[code], DEFAULT_TITLES[code], code
    row = get_by(session, DocumentTemplate, code=code)
    if row is None:
        raise RuleFailed(f"settings.template: document template {code!r} does not exist (any more)")
    return row.content, row.prefix, row.name, code


def seller_of(company: Mapping[str, Any], *, full: bool) -> tuple[dict[str, Any], dict[str, Any]]:
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
        requisites = requisites_of(session, owner_type, party.id)
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


def document_line(name: Any, quantity: Any, price: Any, tax: Any, where: str) -> dict[str, str]:
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
    where = f"{entity_root(item.entity_type)}.products"
    if item.products:
        lines = []
        for index, product in enumerate(item.products):
            if not isinstance(product, Mapping):
                raise RuleFailed(f"{where}[{index}]: a product is an object with name, quantity, price, tax")
            lines.append(document_line(
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
    return [document_line(item.title, 1, item.amount, 0, f"{entity_root(item.entity_type)}.Amount")]


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


def _create(session: Session, ctx: RuleContext, options: DocumentOptions) -> MadeDocument:
    existing = get_by(session, Document, effect_key=ctx.effect_key)
    if existing is not None:
        return _made(existing)
    item = session.get(Item, ctx.item_id)
    content, prefix, template_title, kind = _template(session, options.template)
    company = company_settings(session)
    seller, bank = seller_of(company, full=options.my_company)
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
        at=ctx.at, key=ctx.key("document"), rule_name=ctx.rule_name, entry_no=ctx.entry_no,
        document_id=document.id, number=document.number, template=options.template,
    )
    return _made(document)


async def make_document(ctx: RuleContext, options: DocumentOptions, *, wait_for_pdf: bool) -> MadeDocument:
    """The rule's document, made once: found by the effect key, or numbered, rendered and stored."""
    pdf_runner.spawn(pdf_runner.resume_pending_pdfs(ctx.deps.database))
    made = await ctx.db(lambda session: _create(session, ctx, options))
    if not made.has_pdf:
        if wait_for_pdf:
            await asyncio.to_thread(pdf_runner.render_pending_pdf, ctx.deps.database, made.id)
            made.has_pdf = True
        else:
            pdf_runner.render_pdf_later(ctx.deps.database, made.id)
    return made
