"""Build the standard document templates (invoice, offer, contract) as docxtpl .docx files.

Run `python templates/build_templates.py` to rebuild the committed files next to this script,
or pass `--out DIR` to write them elsewhere.

Variables available to every template (see `activities.services.documents.content.template_context`):
  kind, title, number, issued_on, currency,
  seller.{name, tax_id, legal_address, actual_address, email, phone},
  buyer.{name, tax_id, legal_address, actual_address, email, phone},
  bank.{bank_name, account, swift},
  lines: [{no, name, quantity, unit_price, tax_rate, net, tax, total}],
  subtotal, tax, total, clauses (contract wording), extra (dict),
  signer_name, signature and stamp (images, present only when requested).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.shared import Pt

HERE = Path(__file__).resolve().parent

LINE_COLUMNS: list[tuple[str, str]] = [
    ("No.", "{{ line.no }}"),
    ("Item", "{{ line.name }}"),
    ("Qty", "{{ line.quantity }}"),
    ("Unit price", "{{ line.unit_price }}"),
    ("Tax %", "{{ line.tax_rate }}"),
    ("Net", "{{ line.net }}"),
    ("Total", "{{ line.total }}"),
]

PARTY_FIELDS: list[tuple[str, str]] = [
    ("Tax ID", "tax_id"),
    ("Legal address", "legal_address"),
    ("Actual address", "actual_address"),
]


def new_document() -> DocxDocument:
    doc = Document()
    doc.styles["Normal"].font.size = Pt(10)
    doc.core_properties.title = ""
    doc.core_properties.author = "stageflow"
    doc.core_properties.comments = ""
    return doc


def add_header(doc: DocxDocument) -> None:
    doc.add_heading("{{ title }}", level=0)
    doc.add_paragraph("No. {{ number }}")
    doc.add_paragraph("Date: {{ issued_on }}")


def fill_party(cell, role: str, var: str) -> None:
    cell.paragraphs[0].add_run(role).bold = True
    cell.add_paragraph().add_run("{{ %s.name }}" % var).bold = True
    for label, key in PARTY_FIELDS:
        cell.add_paragraph("{%% if %s.%s %%}%s: {{ %s.%s }}{%% endif %%}" % (var, key, label, var, key))


def add_parties(doc: DocxDocument) -> None:
    table = doc.add_table(rows=1, cols=2)
    table.style = "Table Grid"
    seller_cell, buyer_cell = table.rows[0].cells
    fill_party(seller_cell, "Seller", "seller")
    fill_party(buyer_cell, "Buyer", "buyer")
    doc.add_paragraph()


def add_bank(doc: DocxDocument) -> None:
    doc.add_paragraph().add_run("Bank details").bold = True
    doc.add_paragraph("Bank: {{ bank.bank_name }}")
    doc.add_paragraph("Account / IBAN: {{ bank.account }}")
    doc.add_paragraph("SWIFT: {{ bank.swift }}")


def add_lines(doc: DocxDocument) -> None:
    table = doc.add_table(rows=4, cols=len(LINE_COLUMNS))
    table.style = "Table Grid"
    header, loop_start, body, loop_end = table.rows
    for cell, (label, _) in zip(header.cells, LINE_COLUMNS):
        cell.paragraphs[0].add_run(label).bold = True
    loop_start.cells[0].text = "{%tr for line in lines %}"
    for cell, (_, value) in zip(body.cells, LINE_COLUMNS):
        cell.text = value
    loop_end.cells[0].text = "{%tr endfor %}"


def add_totals(doc: DocxDocument) -> None:
    for label, var in (("Subtotal", "subtotal"), ("Tax", "tax"), ("Total", "total")):
        paragraph = doc.add_paragraph()
        paragraph.alignment = WD_ALIGN_PARAGRAPH.RIGHT
        run = paragraph.add_run("%s: {{ %s }} {{ currency }}" % (label, var))
        run.bold = var == "total"


def add_extra(doc: DocxDocument) -> None:
    doc.add_paragraph("{%p if extra %}")
    doc.add_paragraph().add_run("Additional information").bold = True
    doc.add_paragraph("{%p endif %}")
    doc.add_paragraph("{%p for k, v in extra.items() %}")
    doc.add_paragraph("{{ k }}: {{ v }}")
    doc.add_paragraph("{%p endfor %}")


def add_signature(doc: DocxDocument, with_buyer: bool) -> None:
    doc.add_paragraph()
    doc.add_paragraph("For the seller: {{ signer_name or seller.name }}")
    doc.add_paragraph("{% if signature %}{{ signature }}{% endif %}  {% if stamp %}{{ stamp }}{% endif %}")
    if with_buyer:
        doc.add_paragraph("For the buyer: {{ buyer.name }}")
        doc.add_paragraph("Signature: ______________________")


def build_invoice() -> DocxDocument:
    doc = new_document()
    add_header(doc)
    add_parties(doc)
    add_bank(doc)
    add_lines(doc)
    add_totals(doc)
    doc.add_paragraph("Please pay {{ total }} {{ currency }} to the account above, quoting {{ number }}.")
    add_extra(doc)
    add_signature(doc, with_buyer=False)
    return doc


def build_offer() -> DocxDocument:
    doc = new_document()
    add_header(doc)
    add_parties(doc)
    doc.add_paragraph("Dear {{ buyer.name }}, we are pleased to offer the following goods and services:")
    add_lines(doc)
    add_totals(doc)
    add_extra(doc)
    add_bank(doc)
    add_signature(doc, with_buyer=False)
    return doc


def build_contract() -> DocxDocument:
    doc = new_document()
    add_header(doc)
    add_parties(doc)
    doc.add_paragraph("{%p for clause in clauses %}")
    doc.add_paragraph("{{ clause }}")
    doc.add_paragraph("{%p endfor %}")
    doc.add_paragraph().add_run("Schedule 1: goods and services").bold = True
    add_lines(doc)
    add_totals(doc)
    add_bank(doc)
    add_extra(doc)
    add_signature(doc, with_buyer=True)
    return doc


BUILDERS: dict[str, Callable[[], DocxDocument]] = {
    "invoice": build_invoice,
    "offer": build_offer,
    "contract": build_contract,
}


def build_all(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, build in BUILDERS.items():
        path = out_dir / f"{kind}.docx"
        build().save(str(path))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write the .docx files to")
    args = parser.parse_args()
    for path in build_all(args.out):
        print(path)


if __name__ == "__main__":
    main()
