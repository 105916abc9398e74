"""Routes without a key: documents by public link, email tracking, inbound webhooks. Each is an event."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from http import HTTPStatus

from reportlab.pdfgen import canvas

from models.tables import Document, Message
from tests.api.support import assert_problem, crm, insert, stage_of, total, wait_for_stage
from tests.crm import deal, ok, pipeline, timeline

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def pdf_bytes(text: str) -> bytes:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer)
    page.drawString(72, 720, text)
    page.save()
    return buffer.getvalue()


async def test_documents_metadata_files_and_the_public_link(stack):
    flow, manager = await crm(stack, ["NEW", "SEEN"], automation={
        "SEEN": {"triggers": [{"name": "opened", "type": "document_opened", "filter": {"template": "invoice"}}]},
    })
    item = await deal(stack.member, flow["id"], manager["id"])
    pdf = pdf_bytes("Invoice INV-2026-0001")
    docx = b"PK\x03\x04 docx bytes"
    invoice, draft = insert(
        stack,
        Document(item_id=item["id"], template="invoice", number="INV-2026-0001", title="Invoice", status="ready",
                 pdf=pdf, docx=docx, sha256="ab" * 32, public_token="public-token-0123456789abcdef"),
        Document(item_id=item["id"], template="offer", number="OFF-2026-0001", status="rendering"),
    )
    listed = ok(await stack.member.get("/documents", params={"deal_id": item["id"]}))
    assert [(row["number"], row["has_pdf"], row["has_docx"]) for row in listed] == [
        ("INV-2026-0001", True, True), ("OFF-2026-0001", False, False)
    ]
    public_url = f"{stack.settings.effective_public_url}/public/documents/{invoice.public_token}"
    assert listed[0]["public_url"] == public_url
    assert "pdf" not in listed[0] and listed[1]["public_url"] is None
    assert ok(await stack.member.get(f"/documents/{invoice.id}")) == listed[0]

    served = await stack.member.get(f"/documents/{invoice.id}/pdf")
    assert (served.content, served.headers["content-type"]) == (pdf, "application/pdf")
    assert 'filename="INV-2026-0001.pdf"' in served.headers["content-disposition"]
    word = await stack.member.get(f"/documents/{invoice.id}/docx")
    assert (word.content, word.headers["content-type"]) == (docx, DOCX)
    for path in (f"/documents/{draft.id}/pdf", f"/documents/{draft.id}/docx", f"/documents/{invoice.id}/signed-pdf",
                 "/documents/999", "/documents/999/pdf"):
        assert (await stack.member.get(path)).status_code == HTTPStatus.NOT_FOUND, path
    assert await total(stack.member, "/documents", lead_id=item["id"]) == 0

    opened = await stack.anon.get(f"/public/documents/{invoice.public_token}")
    assert (opened.status_code, opened.content) == (HTTPStatus.OK, pdf)
    assert opened.headers["content-disposition"].startswith("inline")
    await wait_for_stage(stack, "deal", item["id"], "SEEN")
    page = await stack.anon.get(f"/public/documents/{invoice.public_token}", params={"view": "html"})
    assert page.headers["content-type"].startswith("text/html")
    assert f'href="/public/documents/{invoice.public_token}/pdf"' in page.text and "INV-2026-0001" in page.text
    download = await stack.anon.get(f"/public/documents/{invoice.public_token}/docx")
    assert download.content == docx
    events = await timeline(stack.member, item["id"], kind="document_opened")
    assert [entry["data"]["document_id"] for entry in events] == [invoice.id]

    revoked = ok(await stack.member.post(f"/documents/{invoice.id}/revoke-link"))
    assert (revoked["public_revoked"], revoked["public_url"]) == (True, None)
    assert (await stack.anon.get(f"/public/documents/{invoice.public_token}")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.anon.get(f"/public/documents/{invoice.public_token}/pdf")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.member.post("/documents/999/revoke-link")).status_code == HTTPStatus.NOT_FOUND


async def test_expired_and_unknown_public_links_are_not_found(stack):
    flow, manager = await crm(stack, ["NEW"])
    item = await deal(stack.member, flow["id"], manager["id"])
    expired, = insert(stack, Document(
        item_id=item["id"], template="invoice", number="INV-1", pdf=pdf_bytes("old"), public_token="expired-token-0123456789",
        public_expires_at=datetime.now(timezone.utc) - timedelta(minutes=1),
    ))
    for path in (f"/public/documents/{expired.public_token}", "/public/documents/unknown-token-0123456789",
                 "/public/documents/short", f"/public/documents/{expired.public_token}/exe"):
        response = await stack.anon.get(path)
        assert response.status_code in (HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY), path
        assert response.status_code != HTTPStatus.OK
    assert await timeline(stack.member, item["id"], kind="document_opened") == []


async def test_email_opens_and_clicks_are_events_once_each(stack):
    flow, manager = await crm(stack, ["NEW", "OPENED", "CLICKED"], automation={
        "OPENED": {"triggers": [{"name": "opened", "type": "email_opened"}]},
        "CLICKED": {"triggers": [{"name": "clicked", "type": "link_clicked"}]},
    })
    item = await deal(stack.member, flow["id"], manager["id"])
    email, sms = insert(
        stack,
        Message(item_id=item["id"], channel="email", to="anna@example.com", subject="Invoice", status="sent",
                tracking_token="track-token-0123456789", links=["https://shop.example.com/pay?id=7", "https://x.example"]),
        Message(item_id=item["id"], channel="sms", to="+48600100200", status="sent", tracking_token="sms-token-0123456789"),
    )
    for _ in range(2):
        pixel = await stack.anon.get(f"/t/o/{email.tracking_token}.gif")
        assert (pixel.status_code, pixel.headers["content-type"]) == (HTTPStatus.OK, "image/gif")
        assert pixel.content.startswith(b"GIF89a")
    await wait_for_stage(stack, "deal", item["id"], "OPENED")
    assert len(await timeline(stack.member, item["id"], kind="email_opened")) == 1

    click = await stack.anon.get(f"/t/c/{email.tracking_token}/0")
    assert (click.status_code, click.headers["location"]) == (HTTPStatus.FOUND, "https://shop.example.com/pay?id=7")
    await wait_for_stage(stack, "deal", item["id"], "CLICKED")
    clicks = await timeline(stack.member, item["id"], kind="link_clicked")
    assert [entry["data"]["url"] for entry in clicks] == ["https://shop.example.com/pay?id=7"]

    assert (await stack.anon.get(f"/t/c/{email.tracking_token}/2")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.anon.get(f"/t/c/{email.tracking_token}/-1")).status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert (await stack.anon.get("/t/c/unknown-token-0123/0")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.anon.get("/t/o/unknown-token-0123.gif")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.anon.get(f"/t/o/{sms.tracking_token}.gif")).status_code == HTTPStatus.OK
    assert len(await timeline(stack.member, item["id"], kind="email_opened")) == 1


async def test_inbound_webhooks_move_items_of_their_pipeline_only(stack):
    flow, manager = await crm(stack, ["NEW", "PAID"], automation={
        "PAID": {"triggers": [{"name": "erp", "type": "webhook"}]},
    })
    other_flow = await pipeline(stack.http, ["NEW", "PAID"], name="Other")
    leads = await pipeline(stack.http, ["INCOMING"], entity="lead", name="Leads")
    hooks = ok(await stack.member.get(f"/pipelines/{flow['id']}/automation"))["hooks"]
    secret = hooks["PAID/erp"].rsplit("/", 1)[1]
    item = await deal(stack.member, flow["id"], manager["id"])
    stranger = await deal(stack.member, other_flow["id"], manager["id"])
    lead = await deal(stack.member, leads["id"], manager["id"], entity="lead")

    for body, loc in (
        ({"deal_id": stranger["id"]}, ("body", "deal_id")),
        ({"deal_id": 999}, ("body", "deal_id")),
        ({"lead_id": item["id"]}, ("body", "lead_id")),
        ({"lead_id": lead["id"]}, ("body", "lead_id")),
        ({"deal_id": item["id"], "lead_id": lead["id"]}, ("body",)),
        ({}, ("body",)),
        ({"deal_id": item["id"], "data": "text"}, ("body", "data")),
    ):
        assert_problem(await stack.anon.post(f"/hooks/{secret}", json=body), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    assert (await stack.anon.post("/hooks/not-the-secret", json={"deal_id": item["id"]})).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.anon.post(f"/hooks/{secret[:-1]}", json={"deal_id": item["id"]})).status_code == HTTPStatus.NOT_FOUND
    assert await stage_of(stack, "deal", item["id"]) == "NEW"

    body = {"deal_id": item["id"], "data": {"order": 7, "stage": "NEW", "trigger": "other"}}
    accepted = await stack.anon.post(f"/hooks/{secret}", json=body)
    assert (accepted.status_code, accepted.json()) == (HTTPStatus.ACCEPTED, {"accepted": True})
    await wait_for_stage(stack, "deal", item["id"], "PAID")
    changes = await timeline(stack.member, item["id"], kind="stage_changed")
    assert changes[-1]["data"]["trigger"] == "erp"
    assert await stage_of(stack, "deal", stranger["id"]) == "NEW"
