"""What a document says, whatever its format: its context (kind, number, parties, lines, images), the view of it
that the DOCX templates and the PDF layouts share, and the standard templates' kinds and titles.

Party dictionaries (`seller`, `buyer`) use the keys name, tax_id, legal_address, actual_address, email, phone;
`bank` uses bank_name, account, swift. Nested values (an address as a dict) are joined with ", ".
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypedDict

from reportlab.lib.utils import ImageReader

from activities.services.documents.errors import InvalidDocumentData
from activities.services.documents.money import (
    LineTotal,
    Totals,
    format_money,
    format_plain,
)

TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "templates"
FONTS_DIR = TEMPLATES_DIR / "fonts"
BUILTIN_KINDS = ("invoice", "offer", "contract")
DEFAULT_TITLES = {"invoice": "Invoice", "offer": "Commercial offer", "contract": "Contract"}
BUILTIN_PREFIXES = {"invoice": "INV", "offer": "OFF", "contract": "CTR"}
"""The number prefix of each standard template's documents."""
SIGNATURE_WIDTH_MM = 40
STAMP_WIDTH_MM = 35
IMAGE_MAX_HEIGHT_MM = 30


class LineInput(TypedDict):
    name: str
    quantity: Any
    unit_price: Any
    tax_rate: Any


class SignatureEntry(TypedDict, total=False):
    signer: str
    role: str
    signed_at: datetime | str
    code_hash: str


@dataclass
class DocumentContext:
    kind: str
    number: str
    issued_on: date
    currency: str
    title: str = ""
    seller: dict[str, Any] = field(default_factory=dict)
    buyer: dict[str, Any] = field(default_factory=dict)
    bank: dict[str, Any] = field(default_factory=dict)
    lines: list[LineInput] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    signature_png: bytes | None = None
    stamp_png: bytes | None = None
    signer_name: str | None = None


def format_number(prefix: str, year: int, seq: int) -> str:
    """Document number as shown on documents: INV-2026-0001."""
    return f"{prefix}-{year}-{seq:04d}"


def document_title(ctx: DocumentContext) -> str:
    return ctx.title.strip() or DEFAULT_TITLES.get(ctx.kind, "Document")


def issued_date(ctx: DocumentContext) -> date:
    return ctx.issued_on.date() if isinstance(ctx.issued_on, datetime) else ctx.issued_on


def flat_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ", ".join(flat_value(v) for v in value.values() if flat_value(v))
    if isinstance(value, (list, tuple)):
        return ", ".join(flat_value(v) for v in value if flat_value(v))
    return str(value)


def flat_dict(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): flat_value(value) for key, value in values.items()}


def party_phrase(party: Mapping[str, str]) -> str:
    parts = [party.get("name", "")]
    if party.get("tax_id"):
        parts.append(f"tax ID {party['tax_id']}")
    if party.get("legal_address"):
        parts.append(party["legal_address"])
    return ", ".join(p for p in parts if p)


def contract_clauses(ctx: DocumentContext, totals: Totals) -> list[str]:
    seller, buyer, bank = flat_dict(ctx.seller), flat_dict(ctx.buyer), flat_dict(ctx.bank)
    payment_to = ", ".join(
        p
        for p in (bank.get("bank_name"), bank.get("account") and f"account {bank['account']}",
                  bank.get("swift") and f"SWIFT {bank['swift']}")
        if p
    )
    return [
        f"1. Parties. This contract is made on {issued_date(ctx).isoformat()} between {party_phrase(seller)} "
        f"(the Seller) and {party_phrase(buyer)} (the Buyer).",
        "2. Subject. The Seller supplies to the Buyer the goods and services listed in Schedule 1.",
        f"3. Price. The total price is {format_money(totals.total)} {ctx.currency}, "
        f"including tax of {format_money(totals.tax)} {ctx.currency}.",
        f"4. Payment. The Buyer pays the price by bank transfer to {payment_to or 'the Seller'}, "
        f"quoting {ctx.number}.",
        "5. Final provisions. Changes to this contract require written form. "
        "The contract is made in two copies, one for each party.",
    ]


def line_view(no: int, line: LineTotal) -> dict[str, str]:
    return {
        "no": str(no),
        "name": line.name,
        "quantity": format_plain(line.quantity),
        "unit_price": format_money(line.unit_price),
        "tax_rate": format_plain(line.tax_rate),
        "net": format_money(line.net),
        "tax": format_money(line.tax),
        "total": format_money(line.total),
    }


def template_context(ctx: DocumentContext, totals: Totals) -> dict[str, Any]:
    """Plain strings, lists and dicts for the template; `signature` and `stamp` are filled by the renderer."""
    return {
        "kind": ctx.kind,
        "title": document_title(ctx),
        "number": ctx.number,
        "issued_on": issued_date(ctx).isoformat(),
        "currency": ctx.currency,
        "seller": flat_dict(ctx.seller),
        "buyer": flat_dict(ctx.buyer),
        "bank": flat_dict(ctx.bank),
        "lines": [line_view(i, line) for i, line in enumerate(totals.lines, start=1)],
        "subtotal": format_money(totals.subtotal),
        "tax": format_money(totals.tax),
        "total": format_money(totals.total),
        "clauses": contract_clauses(ctx, totals) if ctx.kind == "contract" else [],
        "extra": {str(k): flat_value(v) for k, v in ctx.extra.items()},
        "signer_name": ctx.signer_name or "",
        "signature": None,
        "stamp": None,
    }


def checked_image(data: bytes | None, where: str) -> bytes | None:
    if data is None:
        return None
    if not data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8")):
        raise InvalidDocumentData(f"{where}: not a PNG, JPEG or GIF image")
    try:
        ImageReader(io.BytesIO(data)).getSize()
    except Exception as exc:
        raise InvalidDocumentData(f"{where}: the image cannot be read ({type(exc).__name__})") from None
    return data
