"""PDF documents laid out with reportlab, with real text, per kind (invoice, offer, contract, other); the fonts
are in `templates/fonts/`. The signature certificate uses the same layout helpers."""

from __future__ import annotations

import io
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    Image,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from activities.services.documents.content import (
    FONTS_DIR,
    IMAGE_MAX_HEIGHT_MM,
    SIGNATURE_WIDTH_MM,
    STAMP_WIDTH_MM,
    DocumentContext,
    checked_image,
    contract_clauses,
    document_title,
    flat_dict,
    flat_value,
    issued_date,
    line_view,
)
from activities.services.documents.money import Totals, compute_totals, format_money

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
