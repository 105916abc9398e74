"""Uploaded document templates: checked in the sandbox on upload, listed with the built-ins, usable by rules."""

from __future__ import annotations

import io

from docx import Document as DocxDocument

from activities.services.documents import MAX_TEMPLATE_BYTES
from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from tests.documents.support import (
    BUYER,
    BUYER_TAX_ID,
    client_company,
    docx_text,
    documents_of,
    file_of,
    my_company,
    pdf_text,
    this_year,
)

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def template(*paragraphs: str) -> bytes:
    doc = DocxDocument()
    for text in paragraphs:
        doc.add_paragraph(text)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


QUOTE = template(
    "Quote {{ number }} of {{ issued_on }}",
    "For {{ buyer.name }} (tax id {{ buyer.tax_id }})",
    "{% for line in lines %}{{ line.name }}: {{ line.total }}; {% endfor %}",
    "Total {{ total }} {{ currency }}",
    "Valid until {{ extra.ValidUntil }}",
)


async def upload(http, code: str, content: bytes, *, name: str = "Quote", prefix: str = "QUO"):
    return await http.post(
        "/document-templates",
        data={"code": code, "name": name, "prefix": prefix},
        files={"file": (f"{code}.docx", content, DOCX)},
    )


async def test_an_uploaded_template_is_listed_and_makes_numbered_documents(stack):
    assert ok(await upload(stack.http, "quote", QUOTE), 201)["code"] == "quote"
    listed = {row["code"]: row for row in ok(await stack.member.get("/document-templates"))}
    assert {"invoice", "offer", "contract", "quote"} <= set(listed)
    assert listed["quote"]["builtin"] is False and listed["invoice"]["builtin"] is True

    await my_company(stack.http)
    manager = await user(stack.http, "Manager")
    buyer = await client_company(stack.http)
    flow = await pipeline(stack.http, ["QUOTE", "DONE"])
    await automate(stack.http, flow["id"], {"QUOTE": {"rules": [
        {"name": "quote", "type": "create_document", "settings": {
            "template": "quote", "wait_for_pdf": True, "fields": {"ValidUntil": "{{Deal.CloseDate}}"},
            "lines": [{"name": "Kitchen", "quantity": 1, "price": 1000, "tax": 20}]}},
    ]}})
    item = await deal(stack.http, flow["id"], manager["id"], company_id=buyer["id"], currency="EUR",
                      close_date="2026-12-31")
    await eventually(lambda: timeline(stack.http, item["id"], kind="rule_done"))

    [document] = await documents_of(stack.http, item["id"])
    assert document["number"] == f"QUO-{this_year()}-0001" and document["title"] == "Quote"
    text = docx_text(await file_of(stack.http, document["id"], "docx"))
    for expected in (f"Quote {document['number']}", f"For {BUYER} (tax id {BUYER_TAX_ID})", "Kitchen: 1200.00;",
                     "Total 1200.00 EUR", "Valid until 2026-12-31"):
        assert expected in text
    pdf = pdf_text(await file_of(stack.http, document["id"], "pdf"))
    assert document["number"] in pdf and "1200.00" in pdf and BUYER in pdf


async def test_unsafe_or_oversized_templates_are_refused_and_nothing_is_stored(stack):
    injected = await upload(stack.http, "evil", template("{{ lipsum.__globals__['os'].popen('id').read() }}"))
    assert injected.status_code == 422
    [problem] = injected.json()["detail"]
    assert problem["loc"] == ["body", "file"]
    assert "template rejected" in problem["msg"] and "__globals__" in problem["msg"]

    including = await upload(stack.http, "incl", template("{% include '/etc/passwd' %}"))
    assert including.status_code == 422 and "include" in including.json()["detail"][0]["msg"]

    not_docx = await upload(stack.http, "junk", b"PK\x03\x04 not really a docx")
    assert not_docx.status_code == 422 and "not a valid .docx" in not_docx.json()["detail"][0]["msg"]

    huge = await upload(stack.http, "huge", b"0" * (MAX_TEMPLATE_BYTES + 200 * 1024))
    assert huge.status_code == 413

    assert (await upload(stack.member, "quote", QUOTE)).status_code == 403
    assert (await upload(stack.anon, "quote", QUOTE)).status_code == 401

    codes = {row["code"] for row in ok(await stack.http.get("/document-templates"))}
    assert codes == {"invoice", "offer", "contract"}
    flow = await pipeline(stack.http, ["A", "B"])
    refused = await stack.http.put(f"/pipelines/{flow['id']}/automation", json={"stages": {"A": {"rules": [
        {"name": "doc", "type": "create_document", "settings": {"template": "evil"}}]}}})
    assert refused.status_code == 422
    assert "document template 'evil' does not exist" in refused.json()["detail"][0]["msg"]
