"""Helpers for the documents rule tests: my company, a client with requisites, reading files back."""

from __future__ import annotations

import base64
import io
from datetime import datetime, timezone
from typing import Any

import httpx
from docx import Document as DocxDocument
from pypdf import PdfReader

from activities.services.documents import solid_png
from tests.crm import ok

SIGNATURE_PNG = solid_png(40, 12, (10, 20, 150))
STAMP_PNG = solid_png(24, 24, (190, 20, 20))

SELLER = "Meble Łódź Sp. z o.o."
SELLER_TAX_ID = "PL5252248481"
SELLER_IBAN = "PL61109010140000071219812874"
BUYER = "Nowak Design GmbH"
BUYER_TAX_ID = "DE811907980"

PRODUCTS = [
    {"name": "Oak dining table", "quantity": 1, "price": 1499.0, "tax": 23},
    {"name": "Upholstered chair", "quantity": 6, "price": 249.99, "tax": 23},
    {"name": "Delivery to door", "quantity": 1, "price": 120, "tax": 8},
]
# 1499.00 + 1499.94 + 120.00; tax 344.77 + 344.99 + 9.60
SUBTOTAL, TAX, TOTAL = "3118.94", "699.36", "3818.30"


def this_year() -> int:
    return datetime.now(timezone.utc).year


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def my_company(http: httpx.AsyncClient, *, signature: bool = True, stamp: bool = True, **extra: Any) -> dict:
    body: dict[str, Any] = {
        "name": SELLER,
        "requisites": {
            "template": "organization",
            "fields": {"tax_id": SELLER_TAX_ID, "email": "office@meble.example", "phone": "+48 22 100 20 30"},
            "addresses": {"legal": {"street": "ul. Prosta 1", "zip": "00-838", "city": "Warszawa", "country": "Poland"}},
        },
        "bank": {"bank_name": "mBank S.A.", "iban": SELLER_IBAN, "swift": "BREXPLPWMBK"},
        "signer_name": "Jan Kowalski",
        **extra,
    }
    if signature:
        body["signature_image"] = b64(SIGNATURE_PNG)
    if stamp:
        body["stamp_image"] = b64(STAMP_PNG)
    return ok(await http.put("/settings/company", json=body))


async def client_company(http: httpx.AsyncClient, **fields: Any) -> dict:
    company = ok(await http.post("/companies", json={"name": BUYER, "email": "buy@nowak.example", **fields}), 201)
    ok(await http.put(f"/companies/{company['id']}/requisites", json={
        "template": "organization",
        "fields": {"name": BUYER, "tax_id": BUYER_TAX_ID},
        "addresses": {"legal": {"street": "Friedrichstraße 10", "zip": "10117", "city": "Berlin", "country": "Germany"}},
    }))
    return company


async def documents_of(http: httpx.AsyncClient, deal_id: int) -> list[dict]:
    return ok(await http.get("/documents", params={"deal_id": deal_id}))


async def file_of(http: httpx.AsyncClient, document_id: int, kind: str) -> bytes:
    response = await http.get(f"/documents/{document_id}/{kind}")
    assert response.status_code == 200, response.text
    return response.content


def docx_text(data: bytes) -> str:
    doc = DocxDocument(io.BytesIO(data))
    parts = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for row in table.rows:
            parts.extend(cell.text for cell in row.cells)
    return "\n".join(parts)


def docx_images(data: bytes) -> list[bytes]:
    doc = DocxDocument(io.BytesIO(data))
    assert len(doc.inline_shapes) == len(
        [rel for rel in doc.part.rels.values() if rel.reltype.endswith("/image")]
    )
    return [rel.target_part.blob for rel in doc.part.rels.values() if rel.reltype.endswith("/image")]


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(data)).pages)


def pdf_image_count(data: bytes) -> int:
    count = 0
    for page in PdfReader(io.BytesIO(data)).pages:
        xobjects = page["/Resources"].get("/XObject")
        if xobjects is not None:
            count += sum(1 for ref in xobjects.get_object().values() if ref.get_object()["/Subtype"] == "/Image")
    return count


def rule_result(entries: list[dict], rule: str) -> dict:
    done = [entry for entry in entries if entry["kind"] == "rule_done" and entry.get("rule_name") == rule]
    assert len(done) == 1, entries
    return done[0]["data"].get("result") or {}
