"""send_for_signature end to end: links and one-time codes arrive over real SMTP (and an HTTP SMS provider),
signers sign on the signing page, the signed PDF carries the original's hash, and the deal moves."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import timedelta

from pypdf import PdfReader
from sqlmodel import select

from activities.services.documents import sha256_hex
from models.tables import DocumentSigner, utcnow
from tests.crm import automate, deal, eventually, kinds, ok, pipeline, timeline, user
from tests.documents.support import PRODUCTS, documents_of, file_of, my_company, pdf_text, rule_result

LINK = re.compile(r"http://testserver(/sign/[A-Za-z0-9_\-]{20,})")
CODE = re.compile(r"\b([0-9]{6})\b")


def mail_to(inbox, address: str) -> list[str]:
    """The text of each e-mail the SMTP server received for `address`, oldest first."""
    return [
        message.get_body(preferencelist=("plain",)).get_content()
        for message in inbox.messages
        if address in message["To"]
    ]


async def test_company_signer_and_client_sign_with_emailed_codes_and_the_deal_moves(mail_stack, inbox, caplog):
    caplog.set_level(logging.DEBUG)
    stack = mail_stack
    await my_company(stack.http)
    manager = await user(stack.http, "Manager")
    director = await user(stack.http, "Ewa Director", email="ewa@meble.example")
    client = ok(await stack.http.post("/contacts", json={"name": "Anna Nowak", "email": "anna@example.com"}), 201)
    flow = await pipeline(stack.http, ["CONTRACT", "SIGNED"])
    await automate(stack.http, flow["id"], {
        "CONTRACT": {"rules": [{"name": "contract", "type": "send_for_signature", "settings": {
            "template": "contract", "signer_user_id": director["id"], "client_channel": "email",
            "fields": {"DocumentTitle": "Contract for {{Deal.Title}}"}}}]},
        "SIGNED": {"rules": [], "triggers": [
            {"name": "signed", "type": "document_signed", "filter": {"template": "contract"}}]},
    })
    item = await deal(stack.http, flow["id"], manager["id"], contact_id=client["id"], products=PRODUCTS,
                      currency="PLN")
    await eventually(lambda: timeline(stack.http, item["id"], kind="rule_done"))

    [document] = await documents_of(stack.http, item["id"])
    assert document["title"] == "Contract for Sofa for Anna" and document["status"] == "ready"
    assert [(s["role"], s["name"], s["status"]) for s in document["signing"]["signers"]] == [
        ("company", "Ewa Director", "sent"), ("client", "Anna Nowak", "sent")]
    [to_client] = mail_to(inbox, "anna@example.com")
    [to_director] = mail_to(inbox, "ewa@meble.example")
    client_link, director_link = LINK.search(to_client).group(1), LINK.search(to_director).group(1)
    assert client_link != director_link
    result = rule_result(await timeline(stack.http, item["id"]), "contract")
    assert result["signing_url"] == "http://testserver" + client_link and result["number"] == document["number"]

    page = await stack.anon.get(client_link)
    assert page.status_code == 200 and document["number"] in page.text and "Anna Nowak" in page.text
    original = await file_of(stack.http, document["id"], "pdf")
    assert (await stack.anon.get(client_link + "/pdf")).content == original
    [viewed] = await timeline(stack.http, item["id"], kind="document_viewed")
    assert "Anna Nowak" in viewed["text"]

    sent = await stack.anon.post(client_link + "/code", json={})
    assert sent.status_code == 202 and sent.json()["sent_to"] == "a***@example.com"
    client_code = CODE.search(mail_to(inbox, "anna@example.com")[-1]).group(1)
    wrong = "000000" if client_code != "000000" else "111111"
    refused = await stack.anon.post(client_link, json={"code": wrong})
    assert refused.status_code == 422 and "4 attempt(s) left" in refused.json()["detail"][0]["msg"]
    assert refused.json()["detail"][0]["loc"] == ["body", "code"]
    signed = ok(await stack.anon.post(client_link, json={"code": client_code}))
    assert signed == {"status": "signed", "document_id": document["id"], "document_status": "partially_signed"}
    assert (await stack.anon.post(client_link, json={"code": client_code})).status_code == 409
    assert (await stack.http.get(f"/documents/{document['id']}/signed-pdf")).status_code == 404

    assert (await stack.anon.get(director_link)).status_code == 200
    form = await stack.anon.post(director_link + "/code")
    assert form.status_code == 200 and "e***@meble.example" in form.text
    director_code = CODE.search(mail_to(inbox, "ewa@meble.example")[-1]).group(1)
    thanks = await stack.anon.post(director_link, data={"code": director_code})
    assert thanks.status_code == 200 and "you signed the document" in thanks.text

    [document] = await documents_of(stack.http, item["id"])
    assert document["signing"]["status"] == "signed" and document["has_signed_pdf"]
    assert all(s["status"] == "signed" and s["signed_at"] for s in document["signing"]["signers"])
    signed_pdf = await file_of(stack.http, document["id"], "signed-pdf")
    reader = PdfReader(io.BytesIO(signed_pdf))
    assert len(reader.pages) == len(PdfReader(io.BytesIO(original)).pages) + 1
    assert reader.metadata["/OriginalSHA256"] == sha256_hex(original) == document["sha256"]
    certificate = pdf_text(signed_pdf)
    for expected in (sha256_hex(original), "Anna Nowak", "Ewa Director", document["number"]):
        assert expected in certificate
    assert (await stack.anon.get(client_link + "/signed.pdf")).content == signed_pdf

    async def moved():
        return ok(await stack.http.get(f"/deals/{item['id']}"))["stage"] == "SIGNED"

    await eventually(moved)
    entries = await timeline(stack.http, item["id"])
    assert [k for k in kinds(entries) if k.startswith("document_")] == [
        "document_created", "document_sent_for_signing", "document_viewed", "document_signed_by",
        "document_viewed", "document_signed_by", "document_signed"]

    messages = ok(await stack.http.get("/messages", params={"deal_id": item["id"]}))
    assert len(messages) == 4 and all(message["status"] == "sent" for message in messages)
    histories = [
        (await stack.client.get_workflow_handle(workflow_id).fetch_history()).to_json()
        for workflow_id in (f"deal-{item['id']}", f"deal-{item['id']}/entry-1")
    ]
    seen_by_others = [json.dumps(entries), json.dumps(messages), json.dumps(document), *histories] + [
        record.getMessage() for record in caplog.records if not record.name.startswith("mail.log")
    ]
    for code in (client_code, director_code):
        assert not any(code in text for text in seen_by_others), code


async def test_sms_codes_expire_allow_few_attempts_and_are_not_resent_at_once(mail_stack, sms_inbox):
    stack = mail_stack
    await my_company(stack.http)
    manager = await user(stack.http, "Manager")
    client = ok(await stack.http.post("/contacts", json={"name": "Anna Nowak", "phone": "601 234 567"}), 201)
    flow = await pipeline(stack.http, ["CONTRACT", "SIGNED"])
    await automate(stack.http, flow["id"], {"CONTRACT": {"rules": [
        {"name": "contract", "type": "send_for_signature", "settings": {
            "template": "contract", "signer_name": "{{Constants.Director}}", "signer_email": "ewa@meble.example",
            "client_channel": "sms"}}]}}, constants={"Director": "Ewa Director"})
    item = await deal(stack.http, flow["id"], manager["id"], contact_id=client["id"], amount=100, currency="PLN")
    await eventually(lambda: timeline(stack.http, item["id"], kind="rule_done"))

    [link_sms] = sms_inbox.received
    assert link_sms["to"] == "+48601234567"
    link = LINK.search(link_sms["text"]).group(1)
    [document] = await documents_of(stack.http, item["id"])
    assert [s["name"] for s in document["signing"]["signers"]] == ["Ewa Director", "Anna Nowak"]
    assert (await stack.anon.get("/sign/" + "A" * 43)).status_code == 404

    assert ok(await stack.anon.post(link + "/code", json={}), 202)["sent_to"] == "+48******567"
    first_code = CODE.search(sms_inbox.received[-1]["text"]).group(1)
    again = await stack.anon.post(link + "/code", json={})
    assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0
    wrong = "000000" if first_code != "000000" else "111111"
    answers = [await stack.anon.post(link, json={"code": wrong}) for _ in range(5)]
    assert [a.status_code for a in answers] == [422, 422, 422, 422, 429]
    assert "Too many wrong codes" in answers[-1].json()["detail"][0]["msg"]
    late = await stack.anon.post(link, json={"code": first_code})
    assert late.status_code == 422 and "Ask for a code first" in late.json()["detail"][0]["msg"]

    def backdate(**values) -> None:
        with stack.session() as session:
            signer = session.exec(select(DocumentSigner).where(DocumentSigner.role == "client")).one()
            for name, value in values.items():
                setattr(signer, name, value)
            session.add(signer)

    backdate(last_code_at=utcnow() - timedelta(minutes=1))
    ok(await stack.anon.post(link + "/code", json={}), 202)
    second_code = CODE.search(sms_inbox.received[-1]["text"]).group(1)
    backdate(code_expires_at=utcnow() - timedelta(seconds=1))
    expired = await stack.anon.post(link, json={"code": second_code})
    assert expired.status_code == 422 and "expired" in expired.json()["detail"][0]["msg"]

    backdate(last_code_at=utcnow() - timedelta(minutes=1))
    ok(await stack.anon.post(link + "/code", json={}), 202)
    third_code = CODE.search(sms_inbox.received[-1]["text"]).group(1)
    assert ok(await stack.anon.post(link, json={"code": third_code}))["document_status"] == "partially_signed"
    [document] = await documents_of(stack.http, item["id"])
    assert not document["has_signed_pdf"]
    assert [s["status"] for s in document["signing"]["signers"]] == ["sent", "signed"]

    messages = ok(await stack.http.get("/messages", params={"deal_id": item["id"]}))
    assert sorted(m["channel"] for m in messages) == ["email", "sms", "sms", "sms", "sms"]
    for code in (first_code, second_code, third_code):
        assert not any(code in message["body"] for message in messages)


async def test_a_client_without_an_email_address_fails_the_rule_before_any_document(stack):
    await my_company(stack.http)
    manager = await user(stack.http, "Manager")
    client = ok(await stack.http.post("/contacts", json={"name": "Anna Nowak", "phone": "+48601234567"}), 201)
    flow = await pipeline(stack.http, ["CONTRACT", "SIGNED"])
    await automate(stack.http, flow["id"], {"CONTRACT": {"rules": [
        {"name": "contract", "type": "send_for_signature",
         "settings": {"template": "contract", "signer_name": "Ewa", "signer_email": "ewa@meble.example"}}]}})
    item = await deal(stack.http, flow["id"], manager["id"], contact_id=client["id"], amount=100)

    [failed] = await eventually(lambda: timeline(stack.http, item["id"], kind="rule_failed"))
    assert "settings.client_channel" in failed["text"] and "no e-mail address" in failed["text"]
    assert await documents_of(stack.http, item["id"]) == []
    assert ok(await stack.http.get("/messages", params={"deal_id": item["id"]})) == []
