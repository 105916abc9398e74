"""The product spec's worked example, end to end through the HTTP API, with the demo's own automation.

A web form creates a deal → the client gets an SMS. "Prepare documents" → an invoice and an email with
its link and PDF (read back from a real SMTP server), both asking the same total. A deposit moves nothing; the
payment of the rest → the trigger moves the deal to "Invoice" → a task for the warehouse, "paid in full". "Won" → a copy in Delivery (whose own rule texts the client), and
six months later, on the time-skipping server, a repeat lead.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from dateutil.relativedelta import relativedelta

from scripts.demo import CLIENT, SHOP_DELAYS, load_shop, web_form_order
from tests.communication.mailbox import Inbox, pdf_attachments, text_part
from tests.documents.support import pdf_text
from tests.crm import eventually, kinds, ok, timeline

if TYPE_CHECKING:
    from tests.stacks import Stack


@pytest.fixture
async def shop_stack(inbox: Inbox, ts_stack: Stack) -> AsyncIterator[Stack]:
    """The time-skipping stack, opened after its SMTP settings point at `inbox`."""
    assert ts_stack.settings.smtp_port == inbox.port
    yield ts_stack


async def _get(http, path: str, **params) -> list[dict]:
    return ok(await http.get(path, params=params))


async def _ready_documents(http, deal_id: int) -> list[dict]:
    return [document for document in await _get(http, "/documents", deal_id=deal_id) if document["has_pdf"]]


async def test_furniture_shop_from_web_form_to_repeat_lead(shop_stack, inbox):
    stack, http = shop_stack, shop_stack.http
    shop = await load_shop(http, SHOP_DELAYS)

    # The web form creates the deal in the first stage: the client gets an SMS.
    order = await web_form_order(http, shop, "Living room set")
    deal_id = order["id"]
    assert order["stage"] == "NEW"
    [sms] = await eventually(lambda: _get(http, "/messages", deal_id=deal_id, channel="sms", status="sent"))
    assert sms["to"] == "+48601234567"
    assert sms["body"] == ("Hello Anna Nowak, thank you for your order at Oak & Linen Furniture. "
                           "Marek Manager will call you within 30 minutes.")

    # The manager moves it to "Prepare documents": the invoice, then the email with its link and PDF.
    ok(await http.post(f"/deals/{deal_id}/move", json={"stage": "PREPARE_DOCUMENTS"}))
    [invoice] = await eventually(lambda: _ready_documents(http, deal_id))
    assert invoice["template"] == "invoice"
    assert invoice["public_url"].startswith("http://testserver/public/documents/")
    await eventually(lambda: inbox.messages)
    [mail] = inbox.messages
    assert mail["To"] == CLIENT["email"]
    assert mail["Subject"] == f"Invoice {invoice['number']} for Living room set"
    pdf = await http.get(f"/documents/{invoice['id']}/pdf")
    assert pdf_attachments(mail) == [(f"{invoice['number']}.pdf", pdf.content)]
    text = text_part(mail)
    asked = re.search(r"Total:? ?([0-9.,]+) EUR", pdf_text(pdf.content)).group(1)
    assert asked == "1476.00" and order["amount"] == 1476
    assert f"Your invoice {invoice['number']} of {asked} EUR is attached" in text
    tracked = re.search(r"view it here: http://testserver(/t/c/\S+/0)", text).group(1)
    redirect = await stack.anon.get(tracked)
    assert redirect.headers["location"] == invoice["public_url"]
    page = await stack.anon.get(invoice["public_url"].removeprefix("http://testserver"))
    assert page.status_code == 200 and invoice["number"] in page.text
    [email] = await _get(http, "/messages", deal_id=deal_id, channel="email")
    assert email["status"] == "sent" and email["attachments"][0]["document_id"] == invoice["id"]

    # A deposit does not cover the amount: the deal stays, and no task says "paid in full".
    ok(await http.post(f"/deals/{deal_id}/payments?wait=true", json={"amount": 100, "currency": "EUR"}))
    assert ok(await http.get(f"/deals/{deal_id}"))["paid"] == 100
    [deposit] = [entry for entry in await timeline(http, deal_id, kind="event_received")
                 if entry["data"]["type"] == "payment_received"]
    assert "Deal.Paid = 100 is not >= 1476" in deposit["text"], deposit["text"]
    assert ok(await http.get(f"/deals/{deal_id}"))["stage"] == "PREPARE_DOCUMENTS"
    # The rest is paid: the trigger on "Invoice" moves the deal, and the warehouse gets a task.
    ok(await http.post(f"/deals/{deal_id}/payments", json={"amount": 1376, "currency": "EUR"}), 202)
    [task] = await eventually(lambda: _get(http, "/tasks", deal_id=deal_id))
    assert task["description"].startswith("Paid in full.")
    assert ok(await http.get(f"/deals/{deal_id}"))["paid"] == 1476
    assert task["title"] == "Prepare order “Living room set” for shipping"
    assert task["responsible_id"] == shop.warehouse["id"]
    assert ok(await http.get(f"/deals/{deal_id}"))["stage"] == "INVOICE"

    # "Won": a copy goes to Delivery and its own rule texts the client; the repeat lead is due in six months.
    ok(await http.post(f"/deals/{deal_id}/move", json={"stage": "WON"}))
    [copy] = await eventually(lambda: _get(http, "/deals", pipeline_id=shop.delivery["id"], stage="NEW"))
    assert (copy["title"], copy["stage"], copy["source_item_id"]) == ("Delivery: Living room set", "NEW", deal_id)
    assert (copy["amount"], copy["products"], copy["contact_id"]) == (1476, order["products"], shop.contact["id"])
    [delivery_sms] = await eventually(lambda: _get(http, "/messages", deal_id=copy["id"], status="sent"))
    assert delivery_sms["body"] == ("Hello Anna Nowak, your order is being prepared for delivery. We will call you "
                                    "to agree on the day.")

    scheduled = [entry for entry in await timeline(http, deal_id, kind="rule_scheduled")
                 if entry["rule_name"] == "repeat"]
    won_at = datetime.fromisoformat((await timeline(http, deal_id, kind="stage_changed"))[-1]["at"])
    due = datetime.fromisoformat(scheduled[0]["data"]["due"])
    assert due == won_at + relativedelta(months=6)
    assert await _get(http, "/leads") == []

    now = await stack.env.get_current_time()
    await stack.env.sleep(due - now + timedelta(minutes=5))
    [lead] = await eventually(lambda: _get(http, "/leads", stage="NEW"))
    assert lead["title"] == "Follow-up: how is the sofa, Anna Nowak?"
    assert (lead["pipeline_id"], lead["stage"], lead["source_item_id"]) == (shop.leads["id"], "NEW", deal_id)
    assert datetime.fromisoformat(lead["created_at"]).date() == due.date()
    [call] = await eventually(lambda: _get(http, "/tasks", lead_id=lead["id"]))
    assert call["title"] == "Call Anna Nowak (+48 601 234 567): Follow-up: how is the sofa, Anna Nowak?"

    story = await timeline(http, deal_id)
    assert kinds(story, "late") == ["rule_scheduled", "rule_cancelled"]
    for rule in ("ack", "invoice", "send invoice", "warehouse", "to delivery", "repeat"):
        assert kinds(story, rule)[-1] == "rule_done", (rule, kinds(story, rule))
    assert [entry["kind"] for entry in story if entry["kind"] in ("deal_copied", "repeat_lead_created")] == [
        "deal_copied", "repeat_lead_created"
    ]
