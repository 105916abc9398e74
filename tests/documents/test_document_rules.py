"""The create_document rule through the HTTP API: real DOCX and PDF files read back, numbering, public
links, waiting for the PDF, one document per rule whatever is retried, failures that leave nothing."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from sqlmodel import select

import activities.services.pdf_runner as documents_module
from activities.services.pdf_runner import resume_pending_pdfs
from activities.steps import RuleRunner
from activities.rule import RuleContext
from activities.rules import RULE_TYPES
from models.item_data import build_data
from models.tables import Document, Effect, Item, Sequence, TimelineEntry
from tests.crm import automate, deal, eventually, kinds, ok, pipeline, timeline, user
from tests.documents.support import (
    BUYER,
    BUYER_TAX_ID,
    PRODUCTS,
    SELLER,
    SELLER_IBAN,
    SELLER_TAX_ID,
    SIGNATURE_PNG,
    STAMP_PNG,
    SUBTOTAL,
    TAX,
    TOTAL,
    client_company,
    documents_of,
    docx_images,
    docx_text,
    file_of,
    my_company,
    pdf_image_count,
    pdf_text,
    rule_result,
    this_year,
)
from workflows.types import RuleCall, RulePlan

INVOICE = {
    "name": "invoice",
    "type": "create_document",
    "settings": {
        "template": "invoice",
        "with_signature_and_stamp": True,
        "public_link": True,
        "wait_for_pdf": True,
        "fields": {"DocumentTitle": "Invoice for {{Deal.Title}}", "Delivery": "to {{Deal.Fields.city}}"},
    },
}
OFFER = {
    "name": "offer",
    "type": "create_document",
    "settings": {
        "template": "offer",
        "wait_for_pdf": True,
        "lines": [{"name": "Sofa {{Deal.Title}}", "quantity": 2, "price": "{{Deal.Amount}}", "tax": 10}],
    },
}

CREATE = RULE_TYPES["create_document"]


async def test_documents_carry_number_parties_lines_totals_and_images_in_docx_and_pdf(stack):
    await my_company(stack.http)
    manager = await user(stack.http, "Manager")
    buyer = await client_company(stack.http)
    flow = await pipeline(stack.http, ["DOCS", "DONE"])
    await automate(stack.http, flow["id"], {"DOCS": {"rules": [INVOICE, OFFER]}})
    year = this_year()

    first = await deal(stack.http, flow["id"], manager["id"], title="Oak set", amount=500, currency="EUR",
                       company_id=buyer["id"], products=PRODUCTS, fields={"city": "Berlin"})
    await eventually(lambda: _done(stack, first["id"], 2))  # numbered first: its documents are made before the next
    second = await deal(stack.http, flow["id"], manager["id"], title="Pine set", amount=80, currency="EUR",
                        company_id=buyer["id"], products=PRODUCTS[:1], fields={"city": "Hamburg"})
    await eventually(lambda: _done(stack, second["id"], 2))

    docs = {d["template"]: d for d in await documents_of(stack.http, first["id"])}
    assert set(docs) == {"invoice", "offer"}
    invoice, offer = docs["invoice"], docs["offer"]
    assert invoice["number"] == f"INV-{year}-0001" and offer["number"] == f"OFF-{year}-0001"
    assert invoice["title"] == "Invoice for Oak set"
    assert invoice["status"] == "ready" and invoice["has_pdf"] and invoice["has_docx"]
    assert invoice["public_url"].startswith("http://testserver/public/documents/")
    later = {d["template"]: d["number"] for d in await documents_of(stack.http, second["id"])}
    assert later == {"invoice": f"INV-{year}-0002", "offer": f"OFF-{year}-0002"}

    result = rule_result(await timeline(stack.http, first["id"]), "invoice")
    assert result == {
        "document_id": invoice["id"], "number": invoice["number"], "title": "Invoice for Oak set",
        "public_url": invoice["public_url"], "pdf_url": f"http://testserver/documents/{invoice['id']}/pdf",
        "total": TOTAL, "currency": "EUR",
    }

    docx = await file_of(stack.http, invoice["id"], "docx")
    pdf = await file_of(stack.http, invoice["id"], "pdf")
    for text in (docx_text(docx), pdf_text(pdf)):
        for expected in (invoice["number"], "Invoice for Oak set", SELLER, SELLER_TAX_ID, SELLER_IBAN, BUYER,
                         BUYER_TAX_ID, "Upholstered chair", "1499.94", SUBTOTAL, TAX, TOTAL, "EUR", "to Berlin",
                         "Jan Kowalski"):
            assert expected in text, expected
    assert sorted(docx_images(docx)) == sorted([SIGNATURE_PNG, STAMP_PNG])
    assert pdf_image_count(pdf) == 2

    offer_docx = await file_of(stack.http, offer["id"], "docx")
    offer_pdf = await file_of(stack.http, offer["id"], "pdf")
    for text in (docx_text(offer_docx), pdf_text(offer_pdf)):
        # 2 × 500.00 = 1000.00 net, 10 % tax
        for expected in (offer["number"], "Sofa Oak set", "1000.00", "100.00", "1100.00", BUYER, SELLER):
            assert expected in text, expected
        assert "Upholstered chair" not in text
    assert docx_images(offer_docx) == []
    assert pdf_image_count(offer_pdf) == 0


async def _done(stack, item_id: int, count: int) -> bool:
    return len(await timeline(stack.http, item_id, kind="rule_done")) >= count


async def test_public_link_works_without_a_key_and_opening_it_moves_the_deal(stack):
    await my_company(stack.http)
    manager = await user(stack.http, "Manager")
    buyer = await client_company(stack.http)
    flow = await pipeline(stack.http, ["INVOICE", "OPENED"])
    rule = {**INVOICE, "settings": {**INVOICE["settings"], "with_signature_and_stamp": False, "fields": {}}}
    await automate(stack.http, flow["id"], {
        "INVOICE": {"rules": [rule]},
        "OPENED": {"rules": [], "triggers": [{"name": "seen", "type": "document_opened", "filter": {"template": "invoice"}}]},
    })
    item = await deal(stack.http, flow["id"], manager["id"], company_id=buyer["id"], products=PRODUCTS)
    await eventually(lambda: _done(stack, item["id"], 1))
    [document] = await documents_of(stack.http, item["id"])

    assert (await stack.anon.get(f"/documents/{document['id']}/pdf")).status_code == 401
    assert (await stack.anon.get("/public/documents/" + "x" * 43)).status_code == 404
    opened = await stack.anon.get(document["public_url"].removeprefix("http://testserver"))
    assert opened.status_code == 200 and opened.headers["content-type"] == "application/pdf"
    assert document["number"] in pdf_text(opened.content)

    async def moved():
        return ok(await stack.http.get(f"/deals/{item['id']}"))["stage"] == "OPENED"

    await eventually(moved)
    changes = await timeline(stack.http, item["id"], kind="stage_changed")
    assert "trigger seen" in changes[-1]["text"]


class Gate:
    """Holds every PDF render until opened, so a test can look at the world while the PDF is pending."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = threading.Event()
        self.calls = 0
        real = documents_module.render_pdf

        def held(ctx):
            self.calls += 1
            assert self.opened.wait(30), "the test never opened the gate"
            return real(ctx)

        monkeypatch.setattr(documents_module, "render_pdf", held)


def _two_rules(wait: bool) -> list[dict]:
    return [
        {"name": "invoice", "type": "create_document",
         "settings": {"template": "invoice", "wait_for_pdf": wait}},
        {"name": "send", "type": "add_timeline_entry", "start": "after_previous",
         "settings": {"text": "Sending {{Rule.invoice.number}}"}},
    ]


async def _pdf_status(stack, document_id: int) -> int:
    return (await stack.http.get(f"/documents/{document_id}/pdf")).status_code


@pytest.mark.parametrize("wait", [True, False], ids=["wait_for_pdf", "no_wait"])
async def test_wait_for_pdf_holds_the_next_after_previous_rule_until_the_pdf_exists(stack, monkeypatch, wait):
    gate = Gate(monkeypatch)
    await my_company(stack.http)
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["DOCS", "DONE"])
    await automate(stack.http, flow["id"], {"DOCS": {"rules": _two_rules(wait)}})
    item = await deal(stack.http, flow["id"], manager["id"], amount=99, currency="EUR")

    [document] = await eventually(lambda: documents_of(stack.http, item["id"]))
    await eventually(lambda: gate.calls >= 1)
    assert await _pdf_status(stack, document["id"]) == 404
    if wait:
        assert await _after(stack, item["id"], 1.0) == []
    else:
        notes = await eventually(lambda: timeline(stack.http, item["id"], kind="comment"))
        assert notes[0]["text"] == f"Sending {document['number']}"
        assert (await documents_of(stack.http, item["id"]))[0]["status"] == "rendering"
        assert await _pdf_status(stack, document["id"]) == 404

    gate.opened.set()
    notes = await eventually(lambda: timeline(stack.http, item["id"], kind="comment"))
    assert notes[0]["text"] == f"Sending {document['number']}"
    await eventually(lambda: _ready(stack, item["id"]))
    assert await _pdf_status(stack, document["id"]) == 200
    assert gate.calls == 1


async def _after(stack, item_id: int, seconds: float) -> list[dict]:
    import asyncio

    await asyncio.sleep(seconds)
    return await timeline(stack.http, item_id, kind="comment")


async def _ready(stack, item_id: int) -> bool:
    return (await documents_of(stack.http, item_id))[0]["status"] == "ready"


async def test_a_rule_run_again_after_a_crash_reuses_its_document_and_number(stack):
    await my_company(stack.http)
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "DOCS"])
    item = await deal(stack.http, flow["id"], manager["id"], amount=250, currency="PLN")
    settings = {"template": "invoice", "public_link": True, "wait_for_pdf": True}
    call = RuleCall(
        item_id=item["id"], entity="deal", pipeline_id=flow["id"], stage="NEW", entry_no=1,
        workflow_id=f"deal-{item['id']}/entry-1",
        rule=RulePlan(index=0, name="invoice", type="create_document", activity="rule.create_document",
                      settings=settings),
        at=datetime.now(timezone.utc),
    )

    def context() -> RuleContext:
        with stack.session() as session:
            row = session.get(Item, item["id"])
            return RuleContext(deps=stack.deps, call=call, settings=CREATE.settings.model_validate(call.rule.settings),
                           data=build_data(session, row), item=row)

    first = await CREATE.run(context())
    again = await CREATE.run(context())
    outcome = await RuleRunner(stack.deps, CREATE).run(call)
    assert again == first
    # The workflow history gets the public link as a reference; the effect row keeps the link itself.
    assert outcome.result == {**first, "public_url": "<kept in the database: Rule.invoice.public_url>"}
    with stack.session() as session:
        assert session.get(Effect, f"{call.workflow_id}/invoice").result["result"] == first
    assert first["number"] == f"INV-{this_year()}-0001"
    with stack.session() as session:
        rows = session.exec(select(Document).where(Document.item_id == item["id"])).all()
        assert [(row.number, row.status, row.pdf is not None) for row in rows] == [(first["number"], "ready", True)]
        assert session.get(Sequence, f"invoice/{this_year()}").value == 1
        created = session.exec(select(TimelineEntry).where(TimelineEntry.kind == "document_created")).all()
        assert len(created) == 1


async def test_a_worker_failing_mid_render_is_retried_into_one_document(stack, monkeypatch):
    real = documents_module.render_pdf
    calls = []

    def crash_once(ctx):
        calls.append(ctx.number)
        if len(calls) == 1:
            raise RuntimeError("worker lost in the middle of the PDF")
        return real(ctx)

    monkeypatch.setattr(documents_module, "render_pdf", crash_once)
    await my_company(stack.http)
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["DOCS", "DONE"])
    await automate(stack.http, flow["id"], {"DOCS": {"rules": _two_rules(True)}})
    item = await deal(stack.http, flow["id"], manager["id"], amount=10, currency="EUR")

    await eventually(lambda: timeline(stack.http, item["id"], kind="comment"))
    [document] = await documents_of(stack.http, item["id"])
    assert document["number"] == f"INV-{this_year()}-0001" and document["status"] == "ready"
    assert calls == [document["number"], document["number"]]
    entries = await timeline(stack.http, item["id"])
    assert kinds(entries, "invoice") == ["rule_scheduled", "document_created", "rule_done"]
    with stack.session() as session:
        assert session.get(Sequence, f"invoice/{this_year()}").value == 1


async def test_missing_stamp_fails_the_rule_and_leaves_no_document_or_number(stack):
    await my_company(stack.http, stamp=False)
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["DOCS", "DONE"])
    await automate(stack.http, flow["id"], {"DOCS": {"rules": [
        {"name": "invoice", "type": "create_document",
         "settings": {"template": "invoice", "with_signature_and_stamp": True}},
    ]}})
    item = await deal(stack.http, flow["id"], manager["id"], amount=10, currency="EUR")

    [failed] = await eventually(lambda: timeline(stack.http, item["id"], kind="rule_failed"))
    assert "with_signature_and_stamp" in failed["text"] and "no stamp image" in failed["text"]
    assert await documents_of(stack.http, item["id"]) == []
    with stack.session() as session:
        assert session.exec(select(Sequence)).all() == []
    assert "document_created" not in kinds(await timeline(stack.http, item["id"]))


async def test_bad_document_settings_are_refused_when_saved(stack):
    flow = await pipeline(stack.http, ["DOCS", "DONE"])
    before = ok(await stack.http.get(f"/pipelines/{flow['id']}/automation"))
    cases = [
        ({"name": "doc", "type": "create_document", "settings": {"template": "receipt"}},
         ["settings", "template"], "document template 'receipt' does not exist"),
        ({"name": "doc", "type": "create_document",
          "settings": {"template": "invoice", "lines": [{"name": "x", "price": "lots"}]}},
         ["settings", "lines", 0, "price"], "neither a number nor a placeholder"),
        ({"name": "doc", "type": "create_document",
          "settings": {"template": "invoice", "fields": {"Note": "{{Deal.Nope}}"}}},
         ["settings", "fields", "Note"], "Nope"),
        ({"name": "sign", "type": "send_for_signature", "settings": {"template": "contract"}},
         ["settings"], "signer_user_id or signer_name"),
        ({"name": "sign", "type": "send_for_signature",
          "settings": {"template": "contract", "signer_name": "Jan"}},
         ["settings"], "signer_email"),
        ({"name": "sign", "type": "send_for_signature",
          "settings": {"template": "contract", "signer_user_id": 999}},
         ["settings", "signer_user_id"], "999"),
        ({"name": "sign", "type": "send_for_signature",
          "settings": {"template": "contract", "signer_name": "Jan", "signer_email": "jan@shop.example",
                       "link_expires_days": 0}},
         ["settings", "link_expires_days"], "greater than or equal to 1"),
        ({"name": "sign", "type": "send_for_signature",
          "settings": {"template": "contract", "signer_name": "Jan", "signer_email": "jan@shop.example",
                       "link_expires_days": 400}},
         ["settings", "link_expires_days"], "less than or equal to 365"),
    ]
    for rule, loc, message in cases:
        response = await stack.http.put(f"/pipelines/{flow['id']}/automation",
                                        json={"stages": {"DOCS": {"rules": [rule]}}})
        assert response.status_code == 422, (rule, response.text)
        problems = response.json()["detail"]
        assert any(p["loc"][:5] == ["body", "stages", "DOCS", "rules", 0] and p["loc"][5:] == loc
                   for p in problems), problems
        assert any(message in p["msg"] for p in problems), problems
    assert ok(await stack.http.get(f"/pipelines/{flow['id']}/automation")) == before


async def test_a_pdf_whose_background_render_was_lost_is_rendered_by_the_next_worker(stack, monkeypatch):
    await my_company(stack.http)
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "DOCS"])
    item = await deal(stack.http, flow["id"], manager["id"], amount=75, currency="EUR")
    call = RuleCall(
        item_id=item["id"], entity="deal", pipeline_id=flow["id"], stage="NEW", entry_no=1,
        workflow_id=f"deal-{item['id']}/entry-1",
        rule=RulePlan(index=0, name="invoice", type="create_document", activity="rule.create_document",
                      settings={"template": "invoice", "wait_for_pdf": False}),
        at=datetime.now(timezone.utc),
    )
    with stack.session() as session:
        row = session.get(Item, item["id"])
        ctx = RuleContext(deps=stack.deps, call=call, settings=CREATE.settings.model_validate(call.rule.settings),
                           data=build_data(session, row), item=row)
    with monkeypatch.context() as lost:
        lost.setattr(documents_module, "render_pdf_later", lambda engine, document_id: None)
        result = await CREATE.run(ctx)
    document_url = f"/documents/{result['document_id']}"
    assert ok(await stack.http.get(document_url))["status"] == "rendering"
    assert await resume_pending_pdfs(stack.engine) == 0  # a render may still be under way elsewhere

    with stack.session() as session:
        session.get(Document, result["document_id"]).created_at -= documents_module.PENDING_PDF_AGE
    assert await resume_pending_pdfs(stack.engine) == 1
    await eventually(lambda: _status_of(stack, document_url, "ready"))
    pdf = await file_of(stack.http, result["document_id"], "pdf")
    assert result["number"] in pdf_text(pdf)


async def _status_of(stack, url: str, status: str) -> bool:
    return ok(await stack.http.get(url))["status"] == status
