"""Document rendering: templates render real DOCX and PDF files that are read back, templates run sandboxed,
signed PDFs carry the original and a correct hash."""

from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import sys
import zipfile
import zlib
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from docx import Document
from pypdf import PdfReader

from activities.services.documents import (
    BUILTIN_KINDS,
    DocumentContext,
    InvalidDocumentData,
    TemplateRejected,
    builtin_template,
    check_template,
    compute_totals,
    format_number,
    render_docx,
    render_pdf,
    render_signed_pdf,
    sha256_hex,
)

REPO = Path(__file__).resolve().parents[2]


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = (b"\x00" + bytes(rgb) * width) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


SIGNATURE = png(40, 12, (10, 20, 150))
STAMP = png(24, 24, (190, 20, 20))

LINES = [
    {"name": "Oak dining table", "quantity": 1, "unit_price": "1499.00", "tax_rate": 23},
    {"name": "Upholstered chair", "quantity": 6, "unit_price": "249.99", "tax_rate": "23"},
    {"name": "Delivery to door", "quantity": "1", "unit_price": 120, "tax_rate": 8},
]
# 1499.00 + 1499.94 + 120.00; tax 344.77 + 344.99 (344.9862) + 9.60
SUBTOTAL, TAX, TOTAL = "3118.94", "699.36", "3818.30"
LINE_TOTALS = ["1843.77", "1844.93", "129.60"]


def make_ctx(kind: str = "invoice", **changes) -> DocumentContext:
    ctx = DocumentContext(
        kind=kind,
        number=format_number({"invoice": "INV", "offer": "OFF", "contract": "CON"}.get(kind, "DOC"), 2026, 7),
        issued_on=date(2026, 3, 2),
        currency="PLN",
        seller={
            "name": "Meble Łódź Sp. z o.o.",
            "tax_id": "PL5252248481",
            "legal_address": {"street": "ul. Prosta 1", "postcode": "00-838", "city": "Warszawa"},
            "actual_address": "ul. Fabryczna 7, 90-001 Łódź",
        },
        buyer={"name": "Nowak Design GmbH", "tax_id": "DE811907980", "legal_address": "Friedrichstraße 10, 10117 Berlin"},
        bank={"bank_name": "mBank S.A.", "account": "PL61109010140000071219812874", "swift": "BREXPLPWMBK"},
        lines=[dict(line) for line in LINES],
        extra={"Delivery date": "2026-03-20", "Order reference": "PO-4471"},
        signer_name="Jan Kowalski",
    )
    for key, value in changes.items():
        setattr(ctx, key, value)
    return ctx


def docx_text(data: bytes) -> str:
    doc = Document(io.BytesIO(data))
    parts = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for row in table.rows:
            parts.extend(cell.text for cell in row.cells)
    return "\n".join(parts)


def docx_images(data: bytes) -> tuple[int, list[bytes]]:
    doc = Document(io.BytesIO(data))
    blobs = [rel.target_part.blob for rel in doc.part.rels.values() if rel.reltype.endswith("/image")]
    return len(doc.inline_shapes), blobs


def pdf_text(data: bytes) -> str:
    """All pages' text with line breaks and runs of spaces as single spaces (paragraphs wrap)."""
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(data)).pages)


def pdf_image_count(data: bytes) -> int:
    count = 0
    for page in PdfReader(io.BytesIO(data)).pages:
        xobjects = page["/Resources"].get("/XObject")
        if xobjects is None:
            continue
        count += sum(1 for ref in xobjects.get_object().values() if ref.get_object()["/Subtype"] == "/Image")
    return count


def docx_template(text: str, header: str | None = None) -> bytes:
    doc = Document()
    doc.add_paragraph(text)
    if header is not None:
        doc.sections[0].header.paragraphs[0].text = header
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


# --- totals ---------------------------------------------------------------------------------------


def test_totals_are_rounded_per_line_and_summed() -> None:
    totals = compute_totals(LINES)
    assert [str(line.total) for line in totals.lines] == LINE_TOTALS
    assert [str(line.tax) for line in totals.lines] == ["344.77", "344.99", "9.60"]
    assert (str(totals.subtotal), str(totals.tax), str(totals.total)) == (SUBTOTAL, TAX, TOTAL)


def test_totals_round_half_up_and_take_floats_as_written() -> None:
    totals = compute_totals([
        {"name": "half cent", "quantity": "0.5", "unit_price": "10.01", "tax_rate": 0},
        {"name": "float", "quantity": 0.1, "unit_price": 3, "tax_rate": 1},
    ])
    assert totals.lines[0].net == Decimal("5.01")
    assert totals.lines[1].net == Decimal("0.30")
    assert totals.lines[1].tax == Decimal("0.00")
    assert totals.total == Decimal("5.31")


def test_no_lines_give_zero_totals() -> None:
    totals = compute_totals([])
    assert (str(totals.subtotal), str(totals.tax), str(totals.total)) == ("0.00", "0.00", "0.00")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"name": "x", "quantity": "abc", "unit_price": 1, "tax_rate": 0}, "lines[0].quantity"),
        ({"name": "x", "quantity": 1, "unit_price": None, "tax_rate": 0}, "lines[0].unit_price"),
        ({"name": "x", "quantity": 1, "unit_price": "NaN", "tax_rate": 0}, "lines[0].unit_price"),
        ({"name": "x", "quantity": 1, "unit_price": 1, "tax_rate": 150}, "lines[0].tax_rate"),
        ({"name": " ", "quantity": 1, "unit_price": 1, "tax_rate": 0}, "lines[0].name"),
    ],
)
def test_bad_lines_name_the_field(line: dict, field: str) -> None:
    with pytest.raises(InvalidDocumentData) as err:
        compute_totals([line])
    assert str(err.value).startswith(field + ":")


# --- DOCX -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BUILTIN_KINDS)
def test_docx_shows_parties_lines_and_totals(kind: str) -> None:
    ctx = make_ctx(kind)
    text = docx_text(render_docx(builtin_template(kind), ctx))
    expected = [
        ctx.number, "2026-03-02", "Meble Łódź Sp. z o.o.", "PL5252248481", "ul. Prosta 1, 00-838, Warszawa",
        "Nowak Design GmbH", "DE811907980", "Friedrichstraße 10, 10117 Berlin",
        "mBank S.A.", "PL61109010140000071219812874", "BREXPLPWMBK",
        "Oak dining table", "Upholstered chair", "Delivery to door", "249.99", *LINE_TOTALS,
        f"Subtotal: {SUBTOTAL} PLN", f"Tax: {TAX} PLN", f"Total: {TOTAL} PLN",
        "Delivery date: 2026-03-20", "Order reference: PO-4471", "For the seller: Jan Kowalski",
    ]
    for value in expected:
        assert value in text, value
    assert "{{" not in text and "{%" not in text


def test_docx_titles_per_kind_and_contract_clauses_name_parties() -> None:
    assert "Invoice" in docx_text(render_docx(builtin_template("invoice"), make_ctx("invoice")))
    assert "Commercial offer" in docx_text(render_docx(builtin_template("offer"), make_ctx("offer")))
    text = docx_text(render_docx(builtin_template("contract"), make_ctx("contract", title="Supply contract")))
    assert "Supply contract" in text
    assert "between Meble Łódź Sp. z o.o., tax ID PL5252248481" in text
    assert "and Nowak Design GmbH, tax ID DE811907980" in text
    assert f"The total price is {TOTAL} PLN, including tax of {TAX} PLN." in text
    assert "For the buyer: Nowak Design GmbH" in text


def test_docx_table_grows_with_lines() -> None:
    lines = [{"name": f"Item {i}", "quantity": 1, "unit_price": "1.00", "tax_rate": 0} for i in range(1, 41)]
    data = render_docx(builtin_template("invoice"), make_ctx(lines=lines))
    doc = Document(io.BytesIO(data))
    line_table = doc.tables[1]
    assert len(line_table.rows) == 41
    assert [c.text for c in line_table.rows[40].cells][:2] == ["40", "Item 40"]
    assert "Total: 40.00 PLN" in docx_text(data)


def test_docx_without_images_has_none() -> None:
    shapes, blobs = docx_images(render_docx(builtin_template("invoice"), make_ctx()))
    assert (shapes, blobs) == (0, [])


def test_docx_with_signature_and_stamp_embeds_both_images() -> None:
    data = render_docx(builtin_template("contract"), make_ctx("contract", signature_png=SIGNATURE, stamp_png=STAMP))
    shapes, blobs = docx_images(data)
    assert shapes == 2
    assert sorted(blobs) == sorted([SIGNATURE, STAMP])


def test_docx_with_signature_only_embeds_one_image() -> None:
    shapes, blobs = docx_images(render_docx(builtin_template("offer"), make_ctx("offer", signature_png=SIGNATURE)))
    assert (shapes, blobs) == (1, [SIGNATURE])


def test_values_are_text_not_markup_or_template_code() -> None:
    buyer = {"name": "Smith & <Sons> {{ 7*7 }}", "tax_id": "</w:t>X", "legal_address": "{% include '/etc/passwd' %}"}
    ctx = make_ctx(buyer=buyer, extra={"Note": "a < b & c > d"})
    for text in (docx_text(render_docx(builtin_template("invoice"), ctx)), pdf_text(render_pdf(ctx))):
        assert "Smith & <Sons> {{ 7*7 }}" in text
        assert "</w:t>X" in text
        assert "{% include '/etc/passwd' %}" in text
        assert "a < b & c > d" in text
        assert "root:" not in text


def test_custom_template_uses_any_kind_and_extra_fields() -> None:
    template = docx_template("{{ title }} {{ number }} for {{ buyer.name }}; PO {{ extra['Order reference'] }}; "
                             "{% for line in lines %}[{{ line.name }} {{ line.total }}]{% endfor %} = {{ total }}")
    check_template(template)
    ctx = make_ctx("proforma", title="Pro forma")
    text = docx_text(render_docx(template, ctx))
    assert text.strip() == (f"Pro forma DOC-2026-0007 for Nowak Design GmbH; PO PO-4471; "
                            f"[Oak dining table 1843.77][Upholstered chair 1844.93][Delivery to door 129.60] = {TOTAL}")


def test_builtin_templates_pass_the_check() -> None:
    for kind in BUILTIN_KINDS:
        check_template(builtin_template(kind))


def test_committed_templates_are_what_the_build_script_makes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "templates" / "build_templates.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for kind in BUILTIN_KINDS:
        with zipfile.ZipFile(tmp_path / f"{kind}.docx") as built, zipfile.ZipFile(REPO / "templates" / f"{kind}.docx") as kept:
            assert built.read("word/document.xml") == kept.read("word/document.xml"), kind


# --- sandbox --------------------------------------------------------------------------------------

INJECTIONS = [
    ("{{ ''.__class__ }}", "'__class__'"),
    ("{{ ''.__class__.__mro__ }}", "'__class__'"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "'__class__'"),
    ("{% include '/etc/passwd' %}", "include"),
    ("{% import '/etc/passwd' as p %}{{ p }}", "import"),
    ("{% from '/etc/passwd' import x %}", "from"),
    ("{% extends '/etc/passwd' %}", "extends"),
    ("{{ self.__init__.__globals__ }}", "'__init__'"),
    ("{{ cycler.__init__.__globals__ }}", "'__init__'"),
    ("{{ lipsum.__globals__['os'] }}", "'__globals__'"),
    ("{{ extra['__class__'] }}", "'__class__'"),
    ("{{ '{0.__class__}'.format('') }}", "'__class__'"),
    ("{{ signature.tpl.docx }}", "'tpl'"),
    ("{{ extra.update({'a': 1}) }}", "'update'"),
    ("{{ 'x' * 1000000000 }}", "repeating"),
    ("{{ 9 ** 999999999 }}", "power"),
]


@pytest.mark.parametrize(("payload", "named"), INJECTIONS)
def test_injection_is_rejected_on_upload_and_on_render(payload: str, named: str) -> None:
    template = docx_template(payload)
    with pytest.raises(TemplateRejected) as on_check:
        check_template(template)
    with pytest.raises(TemplateRejected) as on_render:
        render_docx(template, make_ctx(signature_png=SIGNATURE))
    for err in (on_check, on_render):
        message = str(err.value)
        assert message.startswith("template rejected: ")
        assert named in message
        assert "not allowed" in message or "too large" in message
        assert "root:" not in message


def test_include_of_a_real_file_never_shows_its_contents(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-4711")
    template = docx_template("{% include '" + str(secret) + "' %}", header="{% include 'secret.txt' %}")
    with pytest.raises(TemplateRejected) as err:
        render_docx(template, make_ctx())
    assert "TOP-SECRET-4711" not in str(err.value)
    assert "include" in str(err.value)


def test_unsafe_attribute_in_a_header_is_rejected() -> None:
    template = docx_template("{{ number }}", header="{{ cycler.__init__.__globals__.os }}")
    with pytest.raises(TemplateRejected, match="'__init__'"):
        check_template(template)


def test_runaway_output_is_rejected() -> None:
    template = docx_template("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}")
    with pytest.raises(TemplateRejected, match="exceeds"):
        check_template(template)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{{ number", "template syntax error"),
        ("{% for line in lines %}", "template syntax error"),
        ("{{ unknown.field }}", "'unknown' is undefined"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ],
)
def test_broken_templates_are_rejected_with_a_reason(payload: str, message: str) -> None:
    with pytest.raises(TemplateRejected, match=message):
        check_template(docx_template(payload))


def test_not_a_docx_is_rejected() -> None:
    with pytest.raises(TemplateRejected, match="not a valid .docx"):
        check_template(b"just some text")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(TemplateRejected, match="not a valid .docx"):
        check_template(archive.getvalue())


def test_bad_images_name_the_field() -> None:
    with pytest.raises(InvalidDocumentData, match="^signature_png:"):
        render_docx(builtin_template("invoice"), make_ctx(signature_png=b"GIF89a-not-really"))
    with pytest.raises(InvalidDocumentData, match="^stamp_png:"):
        render_pdf(make_ctx(stamp_png=b"<svg/>"))


# --- PDF ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BUILTIN_KINDS)
def test_pdf_has_the_same_values_as_text(kind: str) -> None:
    ctx = make_ctx(kind)
    text = pdf_text(render_pdf(ctx))
    expected = [
        ctx.number, "2026-03-02", "Meble Łódź Sp. z o.o.", "PL5252248481", "Nowak Design GmbH", "DE811907980",
        "Friedrichstraße 10, 10117 Berlin", "mBank S.A.", "PL61109010140000071219812874", "BREXPLPWMBK",
        "Oak dining table", "Upholstered chair", "Delivery to door", *LINE_TOTALS,
        f"{SUBTOTAL} PLN", f"{TAX} PLN", f"{TOTAL} PLN", "Delivery date: 2026-03-20", "Order reference: PO-4471",
        "Jan Kowalski",
    ]
    for value in expected:
        assert value in text, value


def test_pdf_contract_has_clauses() -> None:
    text = pdf_text(render_pdf(make_ctx("contract")))
    assert "1. Parties." in text and "(the Seller)" in text and "(the Buyer)" in text
    assert f"The total price is {TOTAL} PLN" in text
    assert "For the buyer: Nowak Design GmbH" in text


def test_pdf_runs_over_pages_with_every_line() -> None:
    lines = [{"name": f"Item {i:03d}", "quantity": 2, "unit_price": "5.00", "tax_rate": 0} for i in range(1, 81)]
    data = render_pdf(make_ctx(lines=lines))
    assert len(PdfReader(io.BytesIO(data)).pages) > 1
    text = pdf_text(data)
    assert all(f"Item {i:03d}" in text for i in range(1, 81))
    assert "800.00 PLN" in text


def test_pdf_images_only_when_given() -> None:
    assert pdf_image_count(render_pdf(make_ctx())) == 0
    assert pdf_image_count(render_pdf(make_ctx(stamp_png=STAMP))) == 1
    assert pdf_image_count(render_pdf(make_ctx("contract", signature_png=SIGNATURE, stamp_png=STAMP))) == 2


def test_pdf_is_deterministic() -> None:
    assert render_pdf(make_ctx("offer")) == render_pdf(make_ctx("offer"))
    assert render_pdf(make_ctx("offer")) != render_pdf(make_ctx("offer", number="OFF-2026-0008"))


# --- signed PDF -----------------------------------------------------------------------------------

SIGNATURES = [
    {"signer": "Jan Kowalski", "role": "company signer",
     "signed_at": datetime(2026, 3, 2, 10, 15, tzinfo=timezone(timedelta(hours=1))), "code_hash": "ab" * 32},
    {"signer": "Anna Nowak", "role": "client", "signed_at": "2026-03-03 08:00:00 UTC"},
]


def test_signed_pdf_carries_original_pages_signers_and_hash() -> None:
    original = render_pdf(make_ctx("contract"))
    signed = render_signed_pdf(original, SIGNATURES)
    original_pages = PdfReader(io.BytesIO(original)).pages
    reader = PdfReader(io.BytesIO(signed))
    assert len(reader.pages) == len(original_pages) + 1
    assert reader.pages[0].extract_text() == original_pages[0].extract_text()
    certificate = " ".join(reader.pages[-1].extract_text().split())
    digest = hashlib.sha256(original).hexdigest()
    assert sha256_hex(original) == digest
    assert digest in certificate
    assert "Jan Kowalski (company signer)" in certificate and "2026-03-02 09:15:00 UTC" in certificate
    assert "Anna Nowak (client)" in certificate and "2026-03-03 08:00:00 UTC" in certificate
    assert "ab" * 32 in certificate
    assert "Contract CON-2026-0007" in certificate
    assert reader.metadata["/OriginalSHA256"] == digest
    assert "Nowak Design GmbH" in pdf_text(signed)


def test_signed_pdf_is_deterministic_and_tied_to_the_original() -> None:
    original = render_pdf(make_ctx())
    assert render_signed_pdf(original, SIGNATURES) == render_signed_pdf(original, SIGNATURES)
    other = render_pdf(make_ctx(number="INV-2026-0099"))
    assert hashlib.sha256(original).hexdigest() not in pdf_text(render_signed_pdf(other, SIGNATURES))


@pytest.mark.parametrize(
    ("original", "signatures", "field"),
    [
        (b"not a pdf", SIGNATURES, "original_pdf"),
        (None, [], "signatures"),
        (None, [{"role": "client", "signed_at": "2026-03-03"}], "signatures[0].signer"),
        (None, [{"signer": "Anna Nowak"}], "signatures[0].signed_at"),
    ],
)
def test_signed_pdf_rejects_bad_input(original: bytes | None, signatures: list, field: str) -> None:
    with pytest.raises(InvalidDocumentData) as err:
        render_signed_pdf(original or render_pdf(make_ctx()), signatures)
    assert str(err.value).startswith(field + ":")
