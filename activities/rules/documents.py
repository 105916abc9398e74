"""Documents: create a document, send it for signing, change and read requisites.

The document rules make their document through `activities.services.document_store` (numbered, rendered and stored once
per rule run) and send signing links through `activities.services.signing`. The requisite rules read and write the
requisites of the item's contact or company.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator
from sqlmodel import Session

from activities.services.document_store import (
    DocumentOptions,
    MadeDocument,
    company_settings,
    document_line,
    make_document,
    public_url,
    requisites_of,
    seller_of,
)
from activities.keys import part_key
from activities.rule import RuleContext, RuleFailed
from activities.services.signing import DeliveryFailed, deliver, link_valid_until, refresh_signing, signing_url
from activities.transports.mail import InvalidAddress, parse_address
from activities.transports.sms import InvalidPhone, normalize_phone
from models.domain.fields import (
    EMAIL_RE,
    MAX_TEXT_LENGTH,
    AddressType,
    Identifier,
    NumberOrPlaceholder,
    OptionalText,
    RequisiteEntity,
    RequisiteTemplate,
    ShortText,
    TemplateCode,
    UserRef,
    has_placeholder,
    settings_config,
)
from models.domain.problems import Problem
from models.domain.requisites import InvalidRequisite, check_value, display_name, field_check, format_address
from models.domain.rule_types import RuleEnv, RuleType, template_problem
from models.store import add_timeline, get_by, get_or_create
from models.tables import Company, Contact, DocumentSigner, Item, Requisites, TimelineEntry, User

REQUISITE_RETURNS = (
    "template", "name", "tax_id", "registration_number", "vat_id", "first_name", "last_name", "phone", "email",
    "address", "street", "city", "zip", "region", "country",
    "bank_name", "bank_account", "bank_code", "iban", "swift",
)
"""Values `get_requisites` hands to later rules: requisite fields, the chosen address, bank details (flat)."""


def _party(session: Session, item: Item, entity: str) -> Contact | Company:
    model, party_id = (Contact, item.contact_id) if entity == "contact" else (Company, item.company_id)
    row = session.get(model, party_id) if party_id is not None else None
    if row is None:
        raise RuleFailed(f"settings.entity: the {item.entity_type} has no linked {entity}")
    return row


# -- create document -------------------------------------------------------------------------------


class DocumentLine(BaseModel):
    model_config = settings_config(
        {"name": "Sofa", "quantity": 1, "unit": "pcs", "price": "{{Deal.Amount}}", "tax": 23}
    )
    name: ShortText
    quantity: NumberOrPlaceholder = 1
    unit: Annotated[str, StringConstraints(max_length=20)] | None = None
    price: NumberOrPlaceholder
    tax: NumberOrPlaceholder = 0
    """Tax rate in percent."""


class CreateDocumentSettings(BaseModel):
    model_config = settings_config(
        {
            "template": "invoice",
            "my_company": True,
            "with_signature_and_stamp": True,
            "public_link": True,
            "wait_for_pdf": True,
            "fields": {"DocumentTitle": "Invoice for {{Deal.Title}}", "DeliveryAddress": "{{Rule.addr.address}}"},
        }
    )
    template: TemplateCode
    my_company: bool = True
    with_signature_and_stamp: bool = False
    public_link: bool = False
    wait_for_pdf: bool = False
    fields: dict[Identifier, OptionalText] = Field(default_factory=dict, max_length=100)
    """Extra document fields (placeholders allowed); `DocumentTitle` sets the document's title."""
    lines: list[DocumentLine] | None = Field(default=None, max_length=200)
    """Default: the item's products, else one line with the item's title and amount."""


def _options_for(
    ctx: RuleContext, settings: CreateDocumentSettings | SendForSignatureSettings, **extra: Any
) -> DocumentOptions:
    fields = {name: ctx.render(value) for name, value in settings.fields.items()}
    lines = None
    if settings.lines is not None:
        lines = [
            document_line(
                ctx.render(line.name),
                ctx.render_value(line.quantity),
                ctx.render_value(line.price),
                ctx.render_value(line.tax),
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


def _document_results(ctx: RuleContext, made: MadeDocument) -> dict[str, Any]:
    base = ctx.deps.settings.effective_public_url
    return {
        "document_id": made.id,
        "number": made.number,
        "title": made.title,
        "public_url": public_url(ctx.deps.settings, made.public_token),
        "pdf_url": f"{base}/documents/{made.id}/pdf",
        "total": made.total,
        "currency": made.currency,
    }


class CreateDocument(RuleType[CreateDocumentSettings]):
    name = "create_document"
    group = "documents"
    title = "Create document"
    description = (
        "Creates a document (invoice, offer, contract …) from a template as DOCX and PDF, optionally with "
        "my company's requisites, signature and stamp, extra fields and a public link for the client."
    )
    settings = CreateDocumentSettings
    returns = ("document_id", "number", "title", "public_url", "pdf_url", "total", "currency")
    private_returns = ("public_url",)

    def check(self, settings: CreateDocumentSettings, env: RuleEnv) -> Iterable[Problem]:
        return template_problem(settings.template, env)

    async def run(self, ctx: RuleContext[CreateDocumentSettings]) -> dict[str, Any]:
        settings = ctx.settings
        options = _options_for(ctx, settings, my_company=settings.my_company)
        made = await make_document(ctx, options, wait_for_pdf=settings.wait_for_pdf)
        return _document_results(ctx, made)


# -- send for signature ----------------------------------------------------------------------------


class SendForSignatureSettings(BaseModel):
    """The company's signer is a user (`signer_user_id`, who needs an e-mail address) or a typed
    `signer_name` with `signer_email`; the client is the item's contact (else company), reached by
    `client_channel`. Both get a one-time signing link."""

    model_config = settings_config(
        {"template": "contract", "signer_user_id": 1, "client_channel": "email"},
        {"template": "contract", "signer_name": "{{Constants.Director}}", "signer_email": "director@shop.example",
         "client_channel": "sms", "fields": {"DocumentTitle": "Contract for {{Deal.Title}}"},
         "link_expires_days": 14},
    )
    template: TemplateCode
    signer_user_id: UserRef | None = None
    signer_name: ShortText | None = None
    signer_email: Annotated[str, StringConstraints(max_length=200)] | None = None
    client_channel: Literal["email", "sms"] = "email"
    with_signature_and_stamp: bool = False
    public_link: bool = False
    fields: dict[Identifier, OptionalText] = Field(default_factory=dict, max_length=100)
    lines: list[DocumentLine] | None = Field(default=None, max_length=200)
    link_expires_days: int = Field(default=30, ge=1, le=365)
    """How many days the signing links stay open; after that they answer 404 like an unknown link."""

    @field_validator("signer_email")
    @classmethod
    def _signer_email(cls, value: str | None) -> str | None:
        if value is None or has_placeholder(value):
            return value
        if not EMAIL_RE.match(value.strip()):
            raise ValueError(f"{value.strip()!r} is not an e-mail address; give one or a placeholder")
        return value.strip()

    @model_validator(mode="after")
    def _one_signer(self) -> SendForSignatureSettings:
        if (self.signer_user_id is None) == (self.signer_name is None):
            raise ValueError("give the company's signer: signer_user_id or signer_name (one of them)")
        if self.signer_name is not None and self.signer_email is None:
            raise ValueError("signer_name needs signer_email: the signing link goes to that address")
        if self.signer_user_id is not None and self.signer_email is not None:
            raise ValueError("signer_email goes with signer_name; a user signer gets the link at the user's e-mail")
        return self


@dataclass
class SignerSpec:
    role: str  # company | client
    name: str
    channel: str  # email | sms
    address: str


def _signer_specs(
    session: Session, ctx: RuleContext, settings: SendForSignatureSettings, signer_user: int | None,
    signer_name: str | None, signer_email: str | None,
) -> list[SignerSpec]:
    """The company's signer and the client, with where their links go; RuleFailed names what is missing."""
    if signer_user is not None:
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


def _open_signing(
    session: Session, ctx: RuleContext, document_id: int, specs: list[SignerSpec], expires_at: datetime
) -> list[DocumentSigner]:
    signers = []
    for position, spec in enumerate(specs):
        signer, _ = get_or_create(
            session, DocumentSigner, ctx.key("signer", spec.role),
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
        at=ctx.at, key=ctx.key("signing"), rule_name=ctx.rule_name, entry_no=ctx.entry_no,
        document_id=made.id, number=made.number,
    )


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



class SendForSignature(RuleType[SendForSignatureSettings]):
    name = "send_for_signature"
    group = "documents"
    title = "Send document for signing"
    description = (
        "Creates the document from a template and sends it for signing by the company's signer and the client."
    )
    settings = SendForSignatureSettings
    returns = ("document_id", "number", "signing_url", "public_url")
    private_returns = ("signing_url", "public_url")
    user_fields = ("signer_user_id",)

    def check(self, settings: SendForSignatureSettings, env: RuleEnv) -> Iterable[Problem]:
        return template_problem(settings.template, env)

    async def run(self, ctx: RuleContext[SendForSignatureSettings]) -> dict[str, Any]:
        settings = ctx.settings
        signer_user = ctx.user_id(settings.signer_user_id, "signer_user_id") if settings.signer_user_id else None
        signer_name = ctx.render(settings.signer_name) if settings.signer_name else None
        signer_email = ctx.render(settings.signer_email) if settings.signer_email else None
        specs = await ctx.db(
            lambda session: _signer_specs(session, ctx, settings, signer_user, signer_name, signer_email)
        )
        options = _options_for(ctx, settings, signer_name=specs[0].name)
        made = await make_document(ctx, options, wait_for_pdf=True)
        expires_at = ctx.at + timedelta(days=settings.link_expires_days)
        signers = await ctx.db(lambda session: _open_signing(session, ctx, made.id, specs, expires_at))
        seller = await ctx.db(lambda session: seller_of(company_settings(session), full=False)[0]["name"])
        links = {}
        for signer in signers:
            link = signing_url(ctx.deps.settings, signer.token)
            links[signer.role] = link
            subject, text = _link_text(signer, made, seller, link)
            try:
                await deliver(
                    ctx.deps.settings, ctx.deps.database, key=part_key(signer.effect_key, "link"),
                    item_id=ctx.item_id, channel=signer.channel, to=signer.address, subject=subject, text=text,
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


# -- change requisites -----------------------------------------------------------------------------


_REQUISITE_KEY = re.compile(r"^(?:address\.|bank\.)?[a-z][a-z0-9_]{0,63}$")


class ChangeRequisitesSettings(BaseModel):
    """`fields` keys: a requisite field (`tax_id`), `address.<field>` (of `address_type`) or `bank.<field>`."""

    model_config = settings_config(
        {
            "entity": "company",
            "template": "organization",
            "address_type": "actual",
            "fields": {"tax_id": "{{Deal.Fields.tax_id}}", "address.city": "{{Variables.City}}"},
        }
    )
    entity: RequisiteEntity
    template: RequisiteTemplate
    address_type: AddressType | None = None
    fields: dict[str, Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)] | float | int | bool | None] = Field(
        min_length=1, max_length=100
    )

    @field_validator("fields")
    @classmethod
    def _keys(cls, fields: dict[str, Any]) -> dict[str, Any]:
        for key in fields:
            if not _REQUISITE_KEY.match(key):
                raise ValueError(
                    f"{key!r} is not a requisite field; use a lower-case name (tax_id), address.<name> or bank.<name>"
                )
        return fields

    @model_validator(mode="after")
    def _address(self) -> ChangeRequisitesSettings:
        if self.address_type is None and any(key.startswith("address.") for key in self.fields):
            raise ValueError("address.<field> values need address_type (legal, actual or other)")
        return self


class ChangeRequisites(RuleType[ChangeRequisitesSettings]):
    name = "change_requisites"
    group = "documents"
    title = "Change requisites"
    description = "Changes requisites of the item's contact or company: fields, an address, bank details."
    settings = ChangeRequisitesSettings
    returns = ("changed",)
    local = True

    def check(self, settings: ChangeRequisitesSettings, env: RuleEnv) -> Iterable[Problem]:
        problems: list[Problem] = []
        for key, value in settings.fields.items():
            try:
                field_check(settings.template, key)
                if not has_placeholder(value):
                    check_value(settings.template, key, value)
            except KeyError as error:
                problems.append((("fields", key), str(error.args[0])))
            except InvalidRequisite as error:
                problems.append((("fields", key), f"{key}: {error}"))
        return problems

    async def run(self, ctx: RuleContext[ChangeRequisitesSettings]) -> dict[str, Any]:
        settings = ctx.settings
        values: dict[str, Any] = {}
        for key, raw in settings.fields.items():
            value = ctx.render_value(raw) if isinstance(raw, str) else raw
            try:
                values[key] = check_value(settings.template, key, value)
            except KeyError as error:
                raise RuleFailed(f"settings.fields.{key}: {error.args[0]}") from None
            except InvalidRequisite as error:
                raise RuleFailed(f"settings.fields.{key}: {error}") from None
        record_key = ctx.key("requisites")

        def work(session: Session) -> dict[str, Any]:
            done = get_by(session, TimelineEntry, key=record_key)
            if done is not None:
                return {"changed": list(done.data.get("changed") or [])}
            party = _party(session, ctx.item, settings.entity)
            row = requisites_of(session, settings.entity, party.id)
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


# -- get requisites --------------------------------------------------------------------------------


class GetRequisitesSettings(BaseModel):
    model_config = settings_config(
        {"entity": "contact", "template": None, "address_type": "actual", "fields": ["passport"]}
    )
    entity: RequisiteEntity
    template: RequisiteTemplate | None = None
    address_type: AddressType = "legal"
    fields: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] = Field(
        default_factory=list, max_length=100
    )
    """Further requisite field names to hand on, besides the standard ones."""


class GetRequisites(RuleType[GetRequisitesSettings]):
    name = "get_requisites"
    group = "documents"
    title = "Get requisites values"
    description = "Reads requisite fields of the item's contact or company and hands them to later rules."
    settings = GetRequisitesSettings
    returns = REQUISITE_RETURNS
    returns_from_settings = True
    auxiliary = True
    local = True

    def result_names(self, settings: GetRequisitesSettings | None = None) -> tuple[str, ...]:
        if settings is None:
            return self.returns
        return tuple(dict.fromkeys((*REQUISITE_RETURNS, *settings.fields)))

    async def run(self, ctx: RuleContext[GetRequisitesSettings]) -> dict[str, Any]:
        settings = ctx.settings

        def work(session: Session) -> dict[str, Any]:
            party = _party(session, ctx.item, settings.entity)
            row = requisites_of(session, settings.entity, party.id)
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
