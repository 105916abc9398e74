"""Signing links expire (the rule's `link_expires_days`) and can be revoked (`POST /documents/{id}/revoke-signing`);
a closed link answers its page, code request, PDF and signature like a link nobody was given, and changes nothing.

Three deals each get a contract sent for signing over real SMTP: one link stays fresh and signs, one expires, one
is revoked after its signer asked for a code.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from pathlib import Path

from alembic import command
from sqlalchemy import text
from sqlmodel import Session, select

from models.db import alembic_config, make_engine
from models.tables import Document, DocumentSigner, utcnow
from tests.crm import automate, deal, eventually, kinds, ok, pipeline, timeline, user
from tests.documents.support import documents_of, my_company, rule_result
from tests.documents.test_signing import CODE, mail_to
from tests.security.findings import record

LINK_DAYS = 7
GONE = {"detail": "This signing link does not exist, was revoked or has expired"}


async def _contract(stack, flow: dict, manager: dict, name: str) -> tuple[dict, dict, str]:
    """A deal whose client `name` got a signing link: (deal, its document, the client's link path)."""
    email = f"{name.lower()}@example.com"
    contact = ok(await stack.http.post("/contacts", json={"name": name, "email": email}), 201)
    item = await deal(stack.http, flow["id"], manager["id"], contact_id=contact["id"], amount=500, currency="PLN")
    await eventually(lambda: timeline(stack.http, item["id"], kind="rule_done"), timeout=60)
    [document] = await documents_of(stack.http, item["id"])
    link = rule_result(await timeline(stack.http, item["id"]), "contract")["signing_url"]
    return item, document, link.removeprefix("http://testserver")


async def _closed(stack, link: str) -> dict[str, int]:
    """What each signing route answers on `link`, when each answer is the unknown-link 404."""
    answers = {
        "page": await stack.anon.get(link),
        "pdf": await stack.anon.get(link + "/pdf"),
        "code": await stack.anon.post(link + "/code", json={}),
        "code form": await stack.anon.post(link + "/code"),
        "sign": await stack.anon.post(link, json={"code": "123456"}),
        "sign form": await stack.anon.post(link, data={"code": "123456"}),
    }
    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {name: HTTPStatus.NOT_FOUND for name in answers}, statuses
    assert all(response.json() == GONE for response in answers.values())
    return statuses


def _signer(stack, document_id: int, role: str) -> DocumentSigner:
    with stack.session() as session:
        return session.exec(select(DocumentSigner).where(
            DocumentSigner.document_id == document_id, DocumentSigner.role == role)).one()


async def test_expired_and_revoked_signing_links_refuse_everything_and_a_fresh_one_signs(mail_stack, inbox):
    stack = mail_stack
    await my_company(stack.http)
    manager = await user(stack.http, "Manager")
    director = await user(stack.http, "Ewa Director", email="ewa@meble.example")
    flow = await pipeline(stack.http, ["CONTRACT", "SIGNED"])
    await automate(stack.http, flow["id"], {"CONTRACT": {"rules": [{
        "name": "contract", "type": "send_for_signature", "settings": {
            "template": "contract", "signer_user_id": director["id"], "client_channel": "email",
            "link_expires_days": LINK_DAYS}}]}})
    sent_at = datetime.now(timezone.utc)
    fresh = await _contract(stack, flow, manager, "Anna")
    expired = await _contract(stack, flow, manager, "Bruno")
    revoked = await _contract(stack, flow, manager, "Celina")

    for _, document, _ in (fresh, expired, revoked):
        for signer in document["signing"]["signers"]:
            until = datetime.fromisoformat(signer["link_expires_at"])
            assert timedelta(0) < until - sent_at - timedelta(days=LINK_DAYS) < timedelta(minutes=5), signer
            assert signer["link_revoked_at"] is None
    [invitation] = mail_to(inbox, "anna@example.com")
    until = datetime.fromisoformat(fresh[1]["signing"]["signers"][1]["link_expires_at"])
    assert f"valid until {until:%Y-%m-%d %H:%M} UTC" in invitation

    # the fresh link: page, code by e-mail, signature
    _, document, link = fresh
    page = await stack.anon.get(link)
    assert page.status_code == HTTPStatus.OK and f"valid until {until:%Y-%m-%d %H:%M} UTC" in page.text
    ok(await stack.anon.post(link + "/code", json={}), HTTPStatus.ACCEPTED)
    code = CODE.search(mail_to(inbox, "anna@example.com")[-1]).group(1)
    assert ok(await stack.anon.post(link, json={"code": code}))["document_status"] == "partially_signed"

    # the expired link: the client's link is past its time; the director's link on the same document is not
    item, document, link = expired
    with stack.session() as session:
        row = _signer(stack, document["id"], "client")
        row.link_expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
    mails_before = len(inbox.messages)
    expired_answers = await _closed(stack, link)
    assert len(inbox.messages) == mails_before, "an expired link sent a code"
    director = _signer(stack, document["id"], "company")
    assert (await stack.anon.get(f"/sign/{director.token}")).status_code == HTTPStatus.OK
    [after] = await documents_of(stack.http, item["id"])
    assert [(s["role"], s["status"]) for s in after["signing"]["signers"]] == [("company", "viewed"), ("client", "sent")]
    assert [e for e in await timeline(stack.http, item["id"], kind="document_viewed") if "Bruno" in e["text"]] == []
    client = _signer(stack, document["id"], "client")
    assert (client.codes_sent, client.viewed_at, client.signed_at) == (0, None, None)

    # the revoked links: the client has a valid code in hand when a member revokes the document's links
    item, document, link = revoked
    assert (await stack.anon.get(link)).status_code == HTTPStatus.OK
    ok(await stack.anon.post(link + "/code", json={}), HTTPStatus.ACCEPTED)
    code = CODE.search(mail_to(inbox, "celina@example.com")[-1]).group(1)
    path = f"/documents/{document['id']}/revoke-signing"
    assert (await stack.anon.post(path)).status_code == HTTPStatus.UNAUTHORIZED
    answer = ok(await stack.member.post(path))
    assert all(signer["link_revoked_at"] for signer in answer["signing"]["signers"]), answer["signing"]
    assert answer["signing"]["status"] == "viewed" and not answer["has_signed_pdf"]
    assert ok(await stack.member.post(path))["signing"] == answer["signing"]
    mails_before = len(inbox.messages)
    revoked_answers = await _closed(stack, link)
    refused = await stack.anon.post(link, json={"code": code})
    assert (refused.status_code, refused.json()) == (HTTPStatus.NOT_FOUND, GONE)
    assert len(inbox.messages) == mails_before
    director = _signer(stack, document["id"], "company")
    assert (await stack.anon.get(f"/sign/{director.token}")).status_code == HTTPStatus.NOT_FOUND
    [after] = await documents_of(stack.http, item["id"])
    assert [(s["role"], s["status"]) for s in after["signing"]["signers"]] == [("company", "sent"), ("client", "viewed")]
    assert after["signing"]["status"] == "viewed" and not after["has_signed_pdf"]
    assert (await stack.http.get(f"/documents/{document['id']}/signed-pdf")).status_code == HTTPStatus.NOT_FOUND
    entries = await timeline(stack.http, item["id"])
    assert "document_signed_by" not in kinds(entries)
    [entry] = [e for e in entries if e["kind"] == "document_signing_revoked"]
    assert document["number"] in entry["text"]

    # the fresh link still works after the others closed
    [signed] = await documents_of(stack.http, fresh[0]["id"])
    assert [s["status"] for s in signed["signing"]["signers"]] == ["sent", "signed"]
    assert (await stack.anon.get(fresh[2])).status_code == HTTPStatus.OK
    record("signing_links", {
        "link_expires_days": LINK_DAYS, "expired_link_answers": sorted(set(expired_answers.values())),
        "revoked_link_answers": sorted(set(revoked_answers.values())),
        "routes_checked_per_link": len(expired_answers),
    })


async def test_revoking_signing_needs_a_document_sent_for_signing(stack):
    assert (await stack.member.post("/documents/999999/revoke-signing")).status_code == HTTPStatus.NOT_FOUND
    with stack.session() as session:
        document = Document(template="invoice", number="INV-2026-0042", status="ready")
        session.add(document)
        session.flush()
        document_id = document.id
    refused = await stack.member.post(f"/documents/{document_id}/revoke-signing")
    assert refused.status_code == HTTPStatus.CONFLICT and "INV-2026-0042" in refused.json()["detail"]
    assert ok(await stack.http.get(f"/documents/{document_id}"))["signing"] == {}


def test_links_made_before_expiry_existed_get_one_on_upgrade(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'before.db'}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(text(
            "INSERT INTO document (template, number, title, status, public_revoked, signing, data, created_at, "
            "render_input) VALUES ('contract', 'CTR-2026-0001', '', 'ready', false, '{}', '{}', '2026-01-05', '{}')"))
        connection.execute(text(
            "INSERT INTO documentsigner (document_id, position, role, name, channel, address, token, status, "
            "code_attempts, codes_sent, created_at) VALUES (1, 0, 'client', 'Anna', 'email', 'anna@example.com', "
            "'an-old-link-token-0123456789', 'sent', 0, 0, '2026-01-05')"))
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0002")
    with Session(engine) as session:
        [signer] = session.exec(select(DocumentSigner)).all()
    engine.dispose()
    left = signer.link_expires_at.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)
    assert timedelta(days=29) < left <= timedelta(days=30) and signer.link_revoked_at is None
