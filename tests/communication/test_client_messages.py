"""Send email and send SMS rules: what the client receives, what the CRM records, and what never happens twice."""

from __future__ import annotations

import re
import secrets

import pytest
from sqlmodel import select

from activities.rule import RuleFailed
from activities.rules import RULE_TYPES
from activities.transports.mail import message_id_for
from models.tables import Document, Message
from tests.communication.mailbox import SENDER, html_part, pdf_attachments, text_part
from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from tests.sales.direct import rule_context
from workflows.types import entry_workflow_id

PDF_BYTES = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"

EMAIL_RULE = {
    "name": "welcome", "type": "send_email",
    "settings": {
        "subject": "Your order {{Deal.Title}}",
        "body": "Hello {{Deal.Contact.Name}},\nyour order of {{Deal.Amount}} {{Deal.Currency}} is confirmed.\n"
                "Our catalogue: https://furniture.example/catalogue\n{{Deal.Responsible.Name}}",
    },
}


async def _client(http, *, email: str | None = "anna@client.example", phone: str | None = "+48 601 234 567") -> dict:
    body = {"name": "Anna Nowak", **({"email": email} if email else {}), **({"phone": phone} if phone else {})}
    return ok(await http.post("/contacts", json=body), 201)


async def _setup(stack, rules: list[dict], *, triggers: dict | None = None, **contact) -> tuple[dict, dict, dict]:
    manager = await user(stack.http, "Marta Manager")
    flow = await pipeline(stack.http, ["NEW", "OPENED", "CLICKED", "WON"])
    stages = {"NEW": {"rules": rules}}
    for stage, trigger in (triggers or {}).items():
        stages[stage] = {"rules": [], "triggers": [trigger]}
    await automate(stack.http, flow["id"], stages)
    client = await _client(stack.http, **contact)
    return flow, manager, client


async def _order(stack, flow: dict, manager: dict, client: dict, **extra) -> dict:
    return await deal(stack.http, flow["id"], manager["id"], title="Sofa Oslo", amount=900, currency="EUR",
                      contact_id=client["id"], **extra)


async def _messages(stack, item_id: int, **params) -> list[dict]:
    return ok(await stack.http.get("/messages", params={"deal_id": item_id, **params}))


def _rows(stack) -> list[Message]:
    with stack.session() as session:
        return list(session.exec(select(Message).order_by(Message.id)))


# -- email ---------------------------------------------------------------------------------------


async def test_email_reaches_the_client_with_placeholders_and_tracking(mail_stack, inbox):
    stack = mail_stack
    flow, manager, client = await _setup(
        stack, [EMAIL_RULE],
        triggers={"OPENED": {"name": "opened", "type": "email_opened"},
                  "CLICKED": {"name": "clicked", "type": "link_clicked"}},
    )
    order = await _order(stack, flow, manager, client)

    await eventually(lambda: inbox.messages)
    mail = inbox.messages[0]
    assert mail["To"] == "anna@client.example"
    assert mail["From"] == SENDER
    assert mail["Subject"] == "Your order Sofa Oslo"
    assert mail["Message-ID"] == message_id_for(f"deal-{order['id']}/entry-1/welcome", "furniture.example")
    text = text_part(mail)
    assert "Hello Anna Nowak,\nyour order of 900 EUR is confirmed." in text
    assert text.rstrip().endswith("Marta Manager")
    assert "https://furniture.example/catalogue" not in text

    messages = await eventually(lambda: _messages(stack, order["id"], status="sent"))
    assert [(m["channel"], m["to"], m["subject"]) for m in messages] == [
        ("email", "anna@client.example", "Your order Sofa Oslo")
    ]
    assert "https://furniture.example/catalogue" in messages[0]["body"]
    assert messages[0]["links"] == ["https://furniture.example/catalogue"]

    pixel = re.search(r'src="(http://testserver/t/o/[^"]+\.gif)"', html_part(mail)).group(1)
    seen = await stack.anon.get(pixel.removeprefix("http://testserver"))
    assert seen.status_code == 200 and seen.headers["content-type"] == "image/gif"
    assert (await eventually(lambda: _stage(stack, order["id"], "OPENED")))

    click = re.search(r"http://testserver/t/c/\S+/0", text).group(0)
    redirect = await stack.anon.get(click.removeprefix("http://testserver"))
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "https://furniture.example/catalogue"
    assert (await eventually(lambda: _stage(stack, order["id"], "CLICKED")))


async def _stage(stack, item_id: int, stage: str) -> bool:
    return ok(await stack.http.get(f"/deals/{item_id}"))["stage"] == stage


async def test_email_to_the_given_addresses_and_companys_address_when_the_contact_has_none(mail_stack, inbox):
    stack = mail_stack
    flow, manager, client = await _setup(stack, [
        {"name": "to team", "type": "send_email",
         "settings": {"subject": "New order", "body": "{{Deal.Title}}", "to": "a@shop.example, {{Deal.Fields.extra}}"}},
        {"name": "to client", "type": "send_email", "start": "after_previous",
         "settings": {"subject": "Thank you", "body": "We got your order."}},
    ], email=None)
    company = ok(await stack.http.post("/companies", json={"name": "Nowak Interiors",
                                                           "email": "office@nowak.example"}), 201)
    await _order(stack, flow, manager, client, company_id=company["id"], fields={"extra": "b@shop.example"})

    await eventually(lambda: len(inbox.messages) == 2)
    assert [envelope[1] for envelope in inbox.envelopes] == [["a@shop.example", "b@shop.example"],
                                                            ["office@nowak.example"]]


async def test_550_from_the_smtp_server_fails_the_rule_and_nothing_is_sent(mail_stack, inbox):
    stack = mail_stack
    inbox.refuse("550 5.1.1 mailbox unavailable")
    flow, manager, client = await _setup(stack, [EMAIL_RULE])
    order = await _order(stack, flow, manager, client)

    failed = await eventually(lambda: timeline(stack.http, order["id"], kind="rule_failed"))
    assert "anna@client.example" in failed[0]["text"] and "550" in failed[0]["text"]
    assert inbox.refused == 1 and inbox.messages == []
    [message] = await _messages(stack, order["id"])
    assert message["status"] == "failed" and "550" in message["error"]
    assert await timeline(stack.http, order["id"], kind="rule_done") == []


async def test_a_temporary_refusal_is_retried_and_the_client_gets_one_email(mail_stack, inbox):
    stack = mail_stack
    inbox.refuse("451 4.3.0 try again later", times=1)
    flow, manager, client = await _setup(stack, [EMAIL_RULE])
    order = await _order(stack, flow, manager, client)

    await eventually(lambda: timeline(stack.http, order["id"], kind="rule_done"))
    assert inbox.refused == 1 and len(inbox.messages) == 1
    [message] = await _messages(stack, order["id"])
    assert (message["status"], message["error"]) == ("sent", None)


async def test_emails_refused_for_now_until_their_last_attempt_end_failed(mail_stack, inbox):
    """Two e-mails due together are tried first in one call, then each on its own: after the last of the rule's
    attempts (three here) each message says failed, not queued."""
    stack = mail_stack
    inbox.refuse("451 4.3.0 try again later")
    flow, manager, client = await _setup(stack, [
        EMAIL_RULE, {**EMAIL_RULE, "name": "copy", "settings": {**EMAIL_RULE["settings"], "subject": "Copy"}},
    ])
    order = await _order(stack, flow, manager, client)

    failed = await eventually(lambda: _failed_both(stack, order["id"]))
    assert all("451" in entry["text"] for entry in failed)
    assert inbox.refused == 6 and inbox.messages == []
    messages = await _messages(stack, order["id"])
    assert [(message["status"], "451" in message["error"]) for message in messages] == [("failed", True)] * 2


async def _failed_both(stack, item_id: int) -> list[dict] | None:
    failed = await timeline(stack.http, item_id, kind="rule_failed")
    return failed if len(failed) == 2 else None


@pytest.mark.parametrize(
    ("contact", "to", "words"),
    [
        ({"email": None}, None, "no recipient"),
        ({}, "{{Deal.Fields.email}}", "not-an-address"),
    ],
    ids=["no-address", "bad-address"],
)
async def test_a_missing_or_bad_recipient_fails_the_rule_before_anything_is_queued(
    mail_stack, inbox, contact, to, words
):
    stack = mail_stack
    settings = {"subject": "Hi", "body": "Hello", **({"to": to} if to else {})}
    rules = [{"name": "mail", "type": "send_email", "settings": settings}]
    flow, manager, client = await _setup(stack, rules, **contact)
    order = await _order(stack, flow, manager, client, fields={"email": "not-an-address"})

    failed = await eventually(lambda: timeline(stack.http, order["id"], kind="rule_failed"))
    assert words in failed[0]["text"]
    assert await _messages(stack, order["id"]) == [] and inbox.messages == []


async def _document(stack, order: dict, name: str, *, public: bool = True) -> Document:
    with stack.session() as session:
        document = Document(
            item_id=order["id"], template="invoice", number="INV-2026-0007", title="Invoice INV-2026-0007",
            status="ready", pdf=PDF_BYTES, public_token=secrets.token_urlsafe(24) if public else None,
            effect_key=f"{entry_workflow_id('deal', order['id'], 1)}/{name}",
        )
        session.add(document)
        session.flush()
        session.refresh(document)
        return document


async def test_documents_of_earlier_rules_are_attached_and_linked_once_per_retry(mail_stack, inbox):
    stack = mail_stack
    flow, manager, client = await _setup(stack, [])
    order = await _order(stack, flow, manager, client)
    document = await _document(stack, order, "invoice")
    settings = {"subject": "Invoice for {{Deal.Title}}",
                "body": "Hello {{Deal.Contact.Name}}, your invoice is attached.",
                "attachments": ["invoice"], "include_public_link": True}

    first = await RULE_TYPES["send_email"].run(rule_context(stack, order["id"], "send_email", settings, name="mail"))
    again = await RULE_TYPES["send_email"].run(rule_context(stack, order["id"], "send_email", settings, name="mail"))
    assert first == again
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert pdf_attachments(mail) == [("INV-2026-0007.pdf", PDF_BYTES)]
    link = f"http://testserver/public/documents/{document.public_token}"
    [message] = _rows(stack)
    assert message.id == first["message_id"] and message.status == "sent"
    assert f"Invoice INV-2026-0007: {link}" in message.body
    assert message.links == [link]
    assert message.attachments[0]["document_id"] == document.id
    opened = await stack.anon.get(re.search(r"http://testserver(/t/c/\S+/0)", text_part(mail)).group(1))
    assert opened.headers["location"] == link


async def test_an_attachment_from_a_rule_that_made_no_document_fails_the_rule(mail_stack, inbox):
    stack = mail_stack
    flow, manager, client = await _setup(stack, [])
    order = await _order(stack, flow, manager, client)
    await _document(stack, order, "offer", public=False)

    with pytest.raises(RuleFailed, match=r"settings.attachments.0: rule 'invoice' created no document"):
        await RULE_TYPES["send_email"].run(rule_context(stack, order["id"], "send_email",
                                      {"subject": "x", "body": "y", "attachments": ["invoice"]}, name="mail"))
    with pytest.raises(RuleFailed, match="has no public link"):
        await RULE_TYPES["send_email"].run(rule_context(stack, order["id"], "send_email",
                                      {"subject": "x", "body": "y", "attachments": ["offer"],
                                       "include_public_link": True}, name="mail"))
    assert _rows(stack) == [] and inbox.messages == []


# -- SMS -----------------------------------------------------------------------------------------

SMS_RULE = {"name": "ack", "type": "send_sms",
            "settings": {"text": "Hello {{Deal.Contact.Name}}, {{Deal.Responsible.Name}} will call you "
                                 "within 30 minutes"}}


async def test_sms_to_the_contacts_phone_is_recorded(mail_stack):
    stack = mail_stack
    flow, manager, client = await _setup(stack, [SMS_RULE])
    order = await _order(stack, flow, manager, client)

    [message] = await eventually(lambda: _messages(stack, order["id"], channel="sms", status="sent"))
    assert message["to"] == "+48601234567"
    assert message["body"] == "Hello Anna Nowak, Marta Manager will call you within 30 minutes"
    assert message["provider_id"].startswith("rec-")
    done = await timeline(stack.http, order["id"], kind="rule_done")
    assert done[0]["data"]["result"] == {"message_id": message["id"]}


@pytest.mark.parametrize("sms", [{"SMS_DEFAULT_REGION": "PL"}], indirect=True, ids=["PL"])
async def test_sms_numbers_without_country_code_use_the_default_region(mail_stack):
    stack = mail_stack
    flow, manager, client = await _setup(stack, [SMS_RULE], phone="601 234 567")
    order = await _order(stack, flow, manager, client)
    [message] = await eventually(lambda: _messages(stack, order["id"], status="sent"))
    assert message["to"] == "+48601234567"


async def test_an_invalid_phone_fails_the_rule_naming_the_number(mail_stack):
    stack = mail_stack
    flow, manager, client = await _setup(stack, [SMS_RULE], phone="123 456")
    order = await _order(stack, flow, manager, client)

    failed = await eventually(lambda: timeline(stack.http, order["id"], kind="rule_failed"))
    assert "invalid phone number '123 456'" in failed[0]["text"]
    assert await _messages(stack, order["id"]) == []


@pytest.mark.parametrize("sms", ["gateway"], indirect=True)
async def test_sms_through_an_http_provider_once_even_when_retried(mail_stack, sms):
    stack, gateway = mail_stack, sms
    gateway.replies = [(503, b"busy")]
    flow, manager, client = await _setup(stack, [SMS_RULE])
    order = await _order(stack, flow, manager, client)

    [message] = await eventually(lambda: _messages(stack, order["id"], status="sent"))
    assert message["provider_id"] == "gw-2"
    assert [request["json"] for request in gateway.requests] == [
        {"to": "+48601234567", "text": "Hello Anna Nowak, Marta Manager will call you within 30 minutes"}
    ] * 2
    assert gateway.requests[0]["headers"]["authorization"] == "Bearer sms-secret"
    assert gateway.requests[0]["headers"]["idempotency-key"] == gateway.requests[1]["headers"]["idempotency-key"]

    again = await RULE_TYPES["send_sms"].run(rule_context(stack, order["id"], "send_sms", SMS_RULE["settings"], name="ack"))
    assert again == {"message_id": message["id"]}
    assert len(gateway.requests) == 2


@pytest.mark.parametrize("sms", ["gateway"], indirect=True)
async def test_a_refusal_by_the_sms_provider_fails_the_rule(mail_stack, sms):
    stack, gateway = mail_stack, sms
    gateway.replies = [(400, b'{"error": "number blocked"}')]
    flow, manager, client = await _setup(stack, [SMS_RULE])
    order = await _order(stack, flow, manager, client)

    failed = await eventually(lambda: timeline(stack.http, order["id"], kind="rule_failed"))
    assert "+48601234567" in failed[0]["text"] and "400" in failed[0]["text"]
    [message] = await _messages(stack, order["id"])
    assert message["status"] == "failed" and "number blocked" in message["error"]
    assert len(gateway.requests) == 1


# -- save-time checks ----------------------------------------------------------------------------


async def test_bad_settings_are_refused_at_save_time_naming_the_field(mail_stack):
    stack = mail_stack
    flow = await pipeline(stack.http, ["NEW", "WON"])
    good = await automate(stack.http, flow["id"], {"NEW": {"rules": [EMAIL_RULE, SMS_RULE]}})

    def email(**settings) -> dict:
        return {"name": "mail", "type": "send_email", "settings": {"subject": "Hi", "body": "Hello", **settings}}

    cases = [
        ([email(subject="")], "subject"),
        ([{"name": "mail", "type": "send_email", "settings": {"subject": "Hi"}}], "body"),
        ([email(to="not an address")], "to"),
        ([email(body="Hello {{Deal.Nope}}")], "body"),
        ([email(attachments=["invoice"])], "attachments"),
        ([SMS_RULE, email(attachments=["ack"])], "attachments"),
        ([email(include_public_link=True)], "include_public_link"),
        ([{"name": "sms", "type": "send_sms", "settings": {"text": "x", "to": "call me"}}], "to"),
        ([{"name": "sms", "type": "send_sms", "settings": {"text": "x" * 1601}}], "text"),
        ([{"name": "sms", "type": "send_sms", "settings": {}}], "text"),
    ]
    for rules, field in cases:
        body = {"stages": {"NEW": {"rules": rules}}}
        response = await stack.http.put(f"/pipelines/{flow['id']}/automation", json=body)
        assert response.status_code == 422, (rules, response.text)
        locations = [error["loc"] for error in response.json()["detail"]]
        assert any(field in location for location in locations), (rules, response.text)
    assert ok(await stack.http.get(f"/pipelines/{flow['id']}/automation"))["stages"] == good["stages"]


async def test_a_local_number_is_checked_at_save_in_the_region_the_rule_will_use(mail_stack):
    stack = mail_stack
    flow = await pipeline(stack.http, ["NEW", "WON"])
    local = {"name": "sms", "type": "send_sms", "settings": {"text": "x", "to": "601 234 567"}}
    response = await stack.http.put(f"/pipelines/{flow['id']}/automation", json={"stages": {"NEW": {"rules": [local]}}})
    assert response.status_code == 422, response.text
    [problem] = [error for error in response.json()["detail"] if error["loc"][-2:] == ["settings", "to"]]
    assert "'601 234 567'" in problem["msg"] and "default region US" in problem["msg"]
    assert ok(await stack.http.get(f"/pipelines/{flow['id']}/automation"))["stages"] == {}
    international = {**local, "settings": {"text": "x", "to": "+48 601 234 567, {{Deal.Contact.Phone}}"}}
    await automate(stack.http, flow["id"], {"NEW": {"rules": [international]}})


@pytest.mark.parametrize("sms", [{"SMS_DEFAULT_REGION": "PL"}], indirect=True, ids=["PL"])
async def test_a_local_number_of_the_default_region_is_accepted_at_save_and_sent(mail_stack):
    stack = mail_stack
    flow, manager, client = await _setup(
        stack, [{"name": "sms", "type": "send_sms", "settings": {"text": "On our way", "to": "601 234 567"}}]
    )
    order = await _order(stack, flow, manager, client)
    [message] = await eventually(lambda: _messages(stack, order["id"], status="sent"))
    assert message["to"] == "+48601234567"
