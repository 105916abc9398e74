"""Document rendering throughput: invoices rendered to DOCX (docxtpl, sandboxed) and PDF (reportlab).

Run: .venv/bin/python bench/documents.py [--count 200] [--lines 10]
Prints one line and writes bench/results/documents.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

from activities.services.documents import DocumentContext, builtin_template, format_number, render_docx, render_pdf, solid_png

RESULTS = Path(__file__).resolve().parent / "results" / "documents.json"


def invoice(seq: int, lines: int) -> DocumentContext:
    return DocumentContext(
        kind="invoice",
        number=format_number("INV", 2026, seq),
        issued_on=date(2026, 3, 2),
        currency="PLN",
        seller={"name": "Meble Łódź Sp. z o.o.", "tax_id": "PL5252248481", "legal_address": "ul. Prosta 1, Warszawa"},
        buyer={"name": f"Client {seq}", "tax_id": "DE811907980", "legal_address": "Friedrichstraße 10, Berlin"},
        bank={"bank_name": "mBank S.A.", "account": "PL61109010140000071219812874", "swift": "BREXPLPWMBK"},
        lines=[{"name": f"Item {i}", "quantity": i, "unit_price": "19.99", "tax_rate": 23} for i in range(1, lines + 1)],
        extra={"Order reference": f"PO-{seq}"},
        signature_png=solid_png(60, 20, (10, 20, 150)),
        stamp_png=solid_png(40, 40, (190, 20, 20)),
        signer_name="Jan Kowalski",
    )


def timed(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description="document rendering throughput")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--lines", type=int, default=10)
    args = parser.parse_args()

    template = builtin_template("invoice")
    contexts = [invoice(seq, args.lines) for seq in range(1, args.count + 1)]
    render_docx(template, contexts[0])
    render_pdf(contexts[0])

    docx_s = timed(lambda ctx: render_docx(template, ctx), contexts)
    pdf_s = timed(render_pdf, contexts)
    result = {
        "benchmark": "documents",
        "invoices": args.count,
        "lines_per_invoice": args.lines,
        "docx_seconds": round(docx_s, 3),
        "pdf_seconds": round(pdf_s, 3),
        "docx_per_second": round(args.count / docx_s, 1),
        "pdf_per_second": round(args.count / pdf_s, 1),
        "docx_and_pdf_per_second": round(args.count / (docx_s + pdf_s), 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"documents: {args.count} invoices x {args.lines} lines: DOCX {result['docx_per_second']}/s, "
        f"PDF {result['pdf_per_second']}/s, DOCX+PDF {result['docx_and_pdf_per_second']} documents/s ({RESULTS})"
    )

if __name__ == "__main__":
    main()
