"""Document rendering: DOCX from docxtpl templates in a Jinja sandbox, PDF layouts with reportlab, signed PDFs.

One job, rendering, and so one module despite its length. Pure functions over a `DocumentContext`; no database,
no Temporal. The standard templates live in
`templates/` (rebuilt by `templates/build_templates.py`), the PDF fonts in `templates/fonts/`.

Party dictionaries (`seller`, `buyer`) use the keys name, tax_id, legal_address, actual_address, email,
phone; `bank` uses bank_name, account, swift. Nested values (an address as a dict) are joined with ", ".
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, TypedDict
from xml.sax.saxutils import escape

from docx.shared import Mm as DocxMm
from docxtpl import DocxTemplate, InlineImage
from jinja2 import BaseLoader, TemplateError, TemplateNotFound, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup
from pypdf import PdfReader, PdfWriter
from pypdf.errors import PdfReadError
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
FONTS_DIR = TEMPLATES_DIR / "fonts"
BUILTIN_KINDS = ("invoice", "offer", "contract")
DEFAULT_TITLES = {"invoice": "Invoice", "offer": "Commercial offer", "contract": "Contract"}

MAX_TEMPLATE_BYTES = 10 * 1024 * 1024
MAX_TEMPLATE_UNPACKED_BYTES = 50 * 1024 * 1024
MAX_OUTPUT_CHARS = 20 * 1024 * 1024
MAX_SEQUENCE_LEN = 100_000
MAX_POWER_BITS = 100_000
COMPILED_CACHE_SIZE = 128
FORBIDDEN_TAGS = frozenset({"include", "import", "from", "extends"})

CENT = Decimal("0.01")
SIGNATURE_WIDTH_MM = 40
STAMP_WIDTH_MM = 35
IMAGE_MAX_HEIGHT_MM = 30


class TemplateRejected(Exception):
    """A document template is unusable or unsafe; the message says why."""


class InvalidDocumentData(ValueError):
    """The document data is unusable; the message starts with the field at fault."""


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


@dataclass(frozen=True)
class LineTotal:
    name: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal
    net: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True)
class Totals:
    lines: tuple[LineTotal, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal


# --- numbers and totals -------------------------------------------------------------------------


def to_decimal(value: Any, where: str) -> Decimal:
    if value is None or isinstance(value, bool):
        raise InvalidDocumentData(f"{where}: a number is required")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidDocumentData(f"{where}: {value!r} is not a number") from None
    if not number.is_finite():
        raise InvalidDocumentData(f"{where}: {value!r} is not a finite number")
    return number


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def format_money(value: Decimal) -> str:
    return f"{value:.2f}"


def format_plain(value: Decimal) -> str:
    """A quantity or rate without trailing zeros: 2, 0.5, 23, 8.5."""
    return format(value.normalize(), "f")


def line_total(line: Mapping[str, Any], index: int) -> LineTotal:
    where = f"lines[{index}]"
    if not isinstance(line, Mapping):
        raise InvalidDocumentData(f"{where}: an object with name, quantity, unit_price, tax_rate is required")
    name = str(line.get("name") or "").strip()
    if not name:
        raise InvalidDocumentData(f"{where}.name: a name is required")
    quantity = to_decimal(line.get("quantity"), f"{where}.quantity")
    unit_price = to_decimal(line.get("unit_price"), f"{where}.unit_price")
    tax_rate = to_decimal(line.get("tax_rate", 0), f"{where}.tax_rate")
    if not Decimal(0) <= tax_rate <= Decimal(100):
        raise InvalidDocumentData(f"{where}.tax_rate: {format_plain(tax_rate)} is not between 0 and 100")
    net = money(quantity * unit_price)
    tax = money(net * tax_rate / Decimal(100))
    return LineTotal(name, quantity, unit_price, tax_rate, net, tax, net + tax)


def compute_totals(lines: Sequence[Mapping[str, Any]]) -> Totals:
    """Per-line net, tax and total rounded half-up to cents, and their sums."""
    computed = tuple(line_total(line, i) for i, line in enumerate(lines))
    subtotal = sum((line.net for line in computed), Decimal("0.00"))
    tax = sum((line.tax for line in computed), Decimal("0.00"))
    return Totals(computed, subtotal, tax, subtotal + tax)


def format_number(prefix: str, year: int, seq: int) -> str:
    """Document number as shown on documents: INV-2026-0001."""
    return f"{prefix}-{year}-{seq:04d}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the view of a document shared by DOCX and PDF ----------------------------------------------


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


# --- the Jinja sandbox ---------------------------------------------------------------------------

SAFE_TYPES = (str, int, float, Decimal, dict, list, tuple, date, Markup, type(None))


class NoLoader(BaseLoader):
    """Templates may not load other templates or files."""

    def get_source(self, environment: Any, template: str) -> tuple[str, str | None, Any]:
        raise TemplateNotFound(template, "document templates cannot load other templates")


class NoTemplateLoading(Extension):
    """Rejects include, import, from-import and extends before anything is compiled."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        previous: Token | None = None
        for token in stream:
            if previous is not None and previous.type == "block_begin" and token.type == "name":
                if token.value in FORBIDDEN_TAGS:
                    raise SecurityError(f"'{{% {token.value} %}}' is not allowed in document templates")
            previous = token
            yield token


def bounded_concat(parts: Iterable[str]) -> str:
    chunks: list[str] = []
    size = 0
    for part in parts:
        size += len(part)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError(f"the rendered document exceeds {MAX_OUTPUT_CHARS} characters")
        chunks.append(part)
    return "".join(chunks)


class DocumentSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox that raises on unsafe attributes, allows attribute access only on plain data
    and Jinja's own helpers, and bounds sequence repetition, powers and output size."""

    intercepted_binops = frozenset({"*", "**"})
    concat = staticmethod(bounded_concat)

    def __init__(self) -> None:
        super().__init__(loader=NoLoader(), autoescape=True, extensions=[NoTemplateLoading])
        self.compiled = lru_cache(maxsize=COMPILED_CACHE_SIZE)(super().from_string)

    def from_string(self, source: Any, globals: Any = None, template_class: Any = None) -> Any:
        """Compiled templates are cached by source text: a template's parts are compiled once."""
        if isinstance(source, str) and globals is None and template_class is None:
            return self.compiled(source)
        return super().from_string(source, globals, template_class)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        return isinstance(obj, SAFE_TYPES) or type(obj).__module__.startswith("jinja2.")

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} is not allowed")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            check_repetition(left, right)
            check_repetition(right, left)
        elif operator == "**":
            check_power(left, right)
        return super().call_binop(context, operator, left, right)


def check_repetition(sequence: Any, times: Any) -> None:
    if isinstance(sequence, (str, list, tuple)) and isinstance(times, int):
        if len(sequence) * times > MAX_SEQUENCE_LEN:
            raise SecurityError(f"repeating a value to more than {MAX_SEQUENCE_LEN} items is not allowed")


def check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int):
        if max(base.bit_length(), 1) * abs(exponent) > MAX_POWER_BITS:
            raise SecurityError("the power is too large")


@lru_cache(maxsize=1)
def sandbox() -> DocumentSandbox:
    """The one sandbox environment, shared by all renders (Jinja environments are thread-safe)."""
    return DocumentSandbox()


def rejection(exc: Exception) -> TemplateRejected:
    if isinstance(exc, SecurityError):
        return TemplateRejected(f"template rejected: {exc}")
    if isinstance(exc, TemplateNotFound):
        return TemplateRejected("template rejected: document templates cannot load other templates or files")
    if isinstance(exc, TemplateSyntaxError):
        return TemplateRejected(f"template syntax error: {exc.message}{near(exc)}")
    if isinstance(exc, TemplateError):
        return TemplateRejected(f"template error: {exc.message}{near(exc)}")
    return TemplateRejected(f"template failed to render: {type(exc).__name__}: {str(exc)[:300]}")


def near(exc: Exception) -> str:
    lines = getattr(exc, "docx_context", None)
    if lines is None:
        return ""
    text = " ".join(" ".join(lines).split())
    return f" (near: {text[:160]!r})" if text else ""


# --- DOCX ----------------------------------------------------------------------------------------


def open_template(template_bytes: bytes) -> DocxTemplate:
    if len(template_bytes) > MAX_TEMPLATE_BYTES:
        raise TemplateRejected(f"template is larger than {MAX_TEMPLATE_BYTES // (1024 * 1024)} MB")
    try:
        with zipfile.ZipFile(io.BytesIO(template_bytes)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise TemplateRejected("template is not a valid .docx file (not a zip archive)") from None
    if unpacked > MAX_TEMPLATE_UNPACKED_BYTES:
        raise TemplateRejected("template is not a valid .docx file (unpacks to more than 50 MB)")
    tpl = DocxTemplate(io.BytesIO(template_bytes))
    try:
        tpl.init_docx()
    except Exception as exc:
        raise TemplateRejected(f"template is not a valid .docx file ({str(exc)[:200]})") from None
    return tpl


def inline_image(tpl: DocxTemplate, data: bytes | None, width_mm: int) -> InlineImage | None:
    if data is None:
        return None
    return InlineImage(tpl, io.BytesIO(data), width=DocxMm(width_mm))


def render_docx(template_bytes: bytes, ctx: DocumentContext) -> bytes:
    """Render a docxtpl template in the sandbox; raises TemplateRejected for unsafe or broken templates."""
    totals = compute_totals(ctx.lines)
    signature = checked_image(ctx.signature_png, "signature_png")
    stamp = checked_image(ctx.stamp_png, "stamp_png")
    tpl = open_template(template_bytes)
    context = template_context(ctx, totals)
    context["signature"] = inline_image(tpl, signature, SIGNATURE_WIDTH_MM)
    context["stamp"] = inline_image(tpl, stamp, STAMP_WIDTH_MM)
    try:
        tpl.render(context, sandbox(), autoescape=True)
    except Exception as exc:
        raise rejection(exc) from None
    set_core_properties(tpl, ctx)
    out = io.BytesIO()
    tpl.save(out)
    return out.getvalue()


def set_core_properties(tpl: DocxTemplate, ctx: DocumentContext) -> None:
    props = tpl.docx.core_properties
    issued = datetime.combine(issued_date(ctx), time(0, 0))
    props.title = f"{document_title(ctx)} {ctx.number}"
    props.subject = ctx.kind
    props.author = flat_value(ctx.seller.get("name"))
    props.created = issued
    props.modified = issued


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A small opaque PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")


def sample_context(with_images: bool) -> DocumentContext:
    """Representative data used to try out an uploaded template."""
    return DocumentContext(
        kind="contract",
        title="Sample",
        number="DOC-2026-0001",
        issued_on=date(2026, 1, 15),
        currency="EUR",
        seller={"name": "Seller Ltd", "tax_id": "PL1234567890", "legal_address": "1 Main St, Warsaw",
                "actual_address": "2 Side St, Warsaw", "email": "office@seller.example", "phone": "+48 22 000 00 00"},
        buyer={"name": "Buyer LLC", "tax_id": "DE123456789", "legal_address": "3 High St, Berlin",
               "actual_address": "4 Low St, Berlin", "email": "buyer@buyer.example", "phone": "+49 30 000 000"},
        bank={"bank_name": "Sample Bank", "account": "PL61109010140000071219812874", "swift": "WBKPPLPP"},
        lines=[{"name": "Sample item", "quantity": 2, "unit_price": "10.00", "tax_rate": 23}],
        extra={"Note": "sample"} if with_images else {},
        signature_png=solid_png(8, 4, (20, 40, 160)) if with_images else None,
        stamp_png=solid_png(6, 6, (200, 30, 30)) if with_images else None,
        signer_name="Sample Signer" if with_images else None,
    )


def check_template(template_bytes: bytes) -> None:
    """Validate an uploaded template: a readable .docx that renders in the sandbox with and without
    the optional parts (images, extra fields). Raises TemplateRejected."""
    for with_images in (True, False):
        render_docx(template_bytes, sample_context(with_images))


def builtin_template(kind: str) -> bytes:
    if kind not in BUILTIN_KINDS:
        raise InvalidDocumentData(f"template: {kind!r} is not a built-in template ({', '.join(BUILTIN_KINDS)})")
    return (TEMPLATES_DIR / f"{kind}.docx").read_bytes()


# --- PDF -----------------------------------------------------------------------------------------

FONT = "DejaVuSans"
FONT_BOLD = "DejaVuSans-Bold"
PAGE_WIDTH = A4[0] - 36 * mm
LINE_COL_WIDTHS = [11 * mm, 55 * mm, 16 * mm, 24 * mm, 18 * mm, 25 * mm, 25 * mm]
LINE_HEADERS = ["No.", "Item", "Qty", "Unit price", "Tax %", "Net", "Total"]


@lru_cache(maxsize=1)
def register_fonts() -> None:
    pdfmetrics.registerFont(TTFont(FONT, str(FONTS_DIR / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, str(FONTS_DIR / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)


@lru_cache(maxsize=1)
def pdf_styles() -> dict[str, ParagraphStyle]:
    register_fonts()
    body = ParagraphStyle("body", fontName=FONT, fontSize=9.5, leading=12.5)
    return {
        "body": body,
        "small": ParagraphStyle("small", parent=body, fontSize=8.5, leading=11),
        "bold": ParagraphStyle("bold", parent=body, fontName=FONT_BOLD),
        "right": ParagraphStyle("right", parent=body, alignment=TA_RIGHT),
        "right_bold": ParagraphStyle("right_bold", parent=body, fontName=FONT_BOLD, alignment=TA_RIGHT),
        "title": ParagraphStyle("title", parent=body, fontName=FONT_BOLD, fontSize=18, leading=22, spaceAfter=4),
        "heading": ParagraphStyle("heading", parent=body, fontName=FONT_BOLD, fontSize=11, leading=14,
                                  spaceBefore=8, spaceAfter=3),
    }


def para(text: str, style: str = "body") -> Paragraph:
    return Paragraph(escape(text), pdf_styles()[style])


def labelled(label: str, value: str, style: str = "body") -> Paragraph:
    return Paragraph(f"<b>{escape(label)}:</b> {escape(value)}", pdf_styles()[style])


def grid(data: list[list[Any]], widths: list[float], header: bool = False) -> Table:
    table = Table(data, colWidths=widths, repeatRows=1 if header else 0)
    style = [
        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTNAME", (0, 0), (-1, -1), FONT),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.92, 0.92, 0.92)))
    table.setStyle(TableStyle(style))
    return table


def pdf_header(ctx: DocumentContext) -> list[Flowable]:
    return [
        para(document_title(ctx), "title"),
        labelled("No.", ctx.number),
        labelled("Date", issued_date(ctx).isoformat()),
        Spacer(1, 4 * mm),
    ]


def party_cell(role: str, party: Mapping[str, str]) -> list[Flowable]:
    cell: list[Flowable] = [para(role, "heading"), para(party.get("name", ""), "bold")]
    for label, key in (("Tax ID", "tax_id"), ("Legal address", "legal_address"),
                       ("Actual address", "actual_address"), ("Email", "email"), ("Phone", "phone")):
        if party.get(key):
            cell.append(labelled(label, party[key]))
    return cell


def pdf_parties(ctx: DocumentContext) -> list[Flowable]:
    seller, buyer = flat_dict(ctx.seller), flat_dict(ctx.buyer)
    table = grid([[party_cell("Seller", seller), party_cell("Buyer", buyer)]], [PAGE_WIDTH / 2] * 2)
    return [table, Spacer(1, 3 * mm)]


def pdf_bank(ctx: DocumentContext) -> list[Flowable]:
    bank = flat_dict(ctx.bank)
    if not any(bank.values()):
        return []
    return [
        para("Bank details", "heading"),
        labelled("Bank", bank.get("bank_name", "")),
        labelled("Account / IBAN", bank.get("account", "")),
        labelled("SWIFT", bank.get("swift", "")),
    ]


def pdf_lines(ctx: DocumentContext, totals: Totals) -> list[Flowable]:
    rows: list[list[Any]] = [[para(h, "bold") for h in LINE_HEADERS]]
    for i, line in enumerate(totals.lines, start=1):
        view = line_view(i, line)
        rows.append([para(view["no"]), para(view["name"])] + [
            para(view[key], "right") for key in ("quantity", "unit_price", "tax_rate", "net", "total")
        ])
    return [grid(rows, LINE_COL_WIDTHS, header=True), Spacer(1, 2 * mm), pdf_totals(ctx, totals)]


def pdf_totals(ctx: DocumentContext, totals: Totals) -> Table:
    rows = [
        [para("Subtotal", "right"), para(f"{format_money(totals.subtotal)} {ctx.currency}", "right")],
        [para("Tax", "right"), para(f"{format_money(totals.tax)} {ctx.currency}", "right")],
        [para("Total", "right_bold"), para(f"{format_money(totals.total)} {ctx.currency}", "right_bold")],
    ]
    table = Table(rows, colWidths=[PAGE_WIDTH - 50 * mm, 50 * mm])
    table.setStyle(TableStyle([("LINEABOVE", (0, 2), (-1, 2), 0.8, colors.black)]))
    return table


def pdf_body(ctx: DocumentContext, totals: Totals) -> list[Flowable]:
    if ctx.kind == "contract":
        clauses = [para(c) for c in contract_clauses(ctx, totals)]
        return [*clauses, para("Schedule 1: goods and services", "heading"), *pdf_lines(ctx, totals), *pdf_bank(ctx)]
    if ctx.kind == "offer":
        intro = para(f"Dear {flat_value(ctx.buyer.get('name'))}, we are pleased to offer the following goods and services:")
        return [intro, Spacer(1, 2 * mm), *pdf_lines(ctx, totals), *pdf_bank(ctx)]
    body = [*pdf_bank(ctx), Spacer(1, 3 * mm), *pdf_lines(ctx, totals)]
    if ctx.kind == "invoice":
        body.append(para(f"Please pay {format_money(totals.total)} {ctx.currency} to the account above, "
                         f"quoting {ctx.number}."))
    return body


def pdf_extra(ctx: DocumentContext) -> list[Flowable]:
    if not ctx.extra:
        return []
    return [para("Additional information", "heading")] + [
        labelled(str(k), flat_value(v)) for k, v in ctx.extra.items()
    ]


def pdf_image(data: bytes, width_mm: int) -> Image:
    width, height = ImageReader(io.BytesIO(data)).getSize()
    scale = min(width_mm * mm / width, IMAGE_MAX_HEIGHT_MM * mm / height)
    return Image(io.BytesIO(data), width=width * scale, height=height * scale)


def pdf_signature(ctx: DocumentContext) -> list[Flowable]:
    signer = ctx.signer_name or flat_value(ctx.seller.get("name"))
    block: list[Flowable] = [Spacer(1, 6 * mm), labelled("For the seller", signer)]
    images = [pdf_image(data, width) for data, width in
              ((ctx.signature_png, SIGNATURE_WIDTH_MM), (ctx.stamp_png, STAMP_WIDTH_MM)) if data is not None]
    if images:
        block.append(Table([images], colWidths=[45 * mm] * len(images), hAlign="LEFT"))
    if ctx.kind == "contract":
        block += [Spacer(1, 4 * mm), labelled("For the buyer", flat_value(ctx.buyer.get("name"))),
                  para("Signature: ______________________")]
    return block


def build_pdf(story: list[Flowable], title: str, author: str, footer: str) -> bytes:
    register_fonts()
    out = io.BytesIO()

    def on_page(canvas: Canvas, doc: SimpleDocTemplate) -> None:
        canvas.setFont(FONT, 7.5)
        canvas.drawString(18 * mm, 10 * mm, f"{footer} — page {doc.page}")

    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                            bottomMargin=18 * mm, title=title, author=author, subject=footer,
                            creator="stageflow", invariant=True)
    doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return out.getvalue()


def render_pdf(ctx: DocumentContext) -> bytes:
    """The document as PDF with real text, laid out per kind (invoice, offer, contract, other)."""
    totals = compute_totals(ctx.lines)
    checked_image(ctx.signature_png, "signature_png")
    checked_image(ctx.stamp_png, "stamp_png")
    story = [*pdf_header(ctx), *pdf_parties(ctx), *pdf_body(ctx, totals), *pdf_extra(ctx), *pdf_signature(ctx)]
    title = f"{document_title(ctx)} {ctx.number}"
    return build_pdf(story, title, flat_value(ctx.seller.get("name")), title)


# --- signed PDF ----------------------------------------------------------------------------------


def format_signed_at(value: datetime | str, where: str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise InvalidDocumentData(f"{where}: a time is required")


def signature_block(index: int, entry: SignatureEntry) -> list[Flowable]:
    where = f"signatures[{index}]"
    signer = str(entry.get("signer") or "").strip()
    if not signer:
        raise InvalidDocumentData(f"{where}.signer: a name is required")
    signed_at = format_signed_at(entry.get("signed_at"), f"{where}.signed_at")
    role = str(entry.get("role") or "").strip()
    block: list[Flowable] = [
        para(f"{index + 1}. {signer}" + (f" ({role})" if role else ""), "bold"),
        labelled("Signed at", signed_at),
    ]
    if entry.get("code_hash"):
        block.append(labelled("Confirmation code hash", str(entry["code_hash"]), "small"))
    block.append(Spacer(1, 3 * mm))
    return block


def read_pdf(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data))
        len(reader.pages)
    except (PdfReadError, ValueError, OSError) as exc:
        raise InvalidDocumentData(f"original_pdf: not a readable PDF ({str(exc)[:200]})") from None
    return reader


def certificate_pdf(document: str, digest: str, pages: int, signatures: Sequence[SignatureEntry]) -> bytes:
    story: list[Flowable] = [
        para("Signature certificate", "title"),
        labelled("Document", document),
        labelled("Pages of the original document", str(pages)),
        para("SHA-256 of the original document:", "bold"),
        para(digest, "small"),
        Spacer(1, 2 * mm),
        para("The SHA-256 hash identifies the exact original document (the pages before this certificate as "
             "first issued); any change to that document changes the hash.", "small"),
        para("Signatures", "heading"),
    ]
    for i, entry in enumerate(signatures):
        story += signature_block(i, entry)
    return build_pdf(story, f"Signature certificate: {document}", "stageflow", f"Signature certificate — {document}")


def render_signed_pdf(original_pdf: bytes, signatures: Sequence[SignatureEntry]) -> bytes:
    """The original pages followed by a certificate page listing each signer, the signing time, and the
    SHA-256 of the original PDF (also stored in the metadata as /OriginalSHA256)."""
    if not signatures:
        raise InvalidDocumentData("signatures: at least one signature is required")
    reader = read_pdf(original_pdf)
    digest = sha256_hex(original_pdf)
    document = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or "document"
    certificate = certificate_pdf(document, digest, len(reader.pages), signatures)
    writer = PdfWriter()
    writer.append(reader)
    writer.append(PdfReader(io.BytesIO(certificate)))
    writer.add_metadata({"/Title": f"{document} (signed)", "/Producer": "stageflow", "/OriginalSHA256": digest})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
