"""DOCX documents from docxtpl templates (the standard ones in `templates/`, rebuilt by
`templates/build_templates.py`, or an admin's own), rendered in the sandbox; and the check an uploaded template
passes."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from datetime import date, datetime, time

from docx.shared import Mm as DocxMm
from docxtpl import DocxTemplate, InlineImage

from activities.services.documents.content import (
    BUILTIN_KINDS,
    SIGNATURE_WIDTH_MM,
    STAMP_WIDTH_MM,
    TEMPLATES_DIR,
    DocumentContext,
    checked_image,
    document_title,
    flat_value,
    issued_date,
    template_context,
)
from activities.services.documents.errors import InvalidDocumentData, TemplateRejected
from activities.services.documents.money import compute_totals
from activities.services.documents.sandbox import rejection, sandbox

MAX_TEMPLATE_BYTES = 10 * 1024 * 1024
MAX_TEMPLATE_UNPACKED_BYTES = 50 * 1024 * 1024


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
