"""Public document links made by a create_document rule: unguessable, revocable, and dead once expired.

Signing codes (expiry, attempts, resend limits) are tested in tests/documents/test_signing.py, template
sandboxing in tests/documents/test_docrender.py and tests/documents/test_templates.py.
"""

from __future__ import annotations

import math
import re
import secrets
from collections import Counter
from datetime import datetime, timedelta, timezone
from http import HTTPStatus

from models.tables import Document
from tests.crm import automate, deal, eventually, pipeline, timeline, user
from tests.documents.support import client_company, documents_of, my_company
from tests.security.findings import record

DOCUMENTS = 4
URL_SAFE = re.compile(r"^[A-Za-z0-9_\-]+$")
TOKEN_BITS = 256


async def test_public_links_are_unguessable_revocable_and_expire(stack):
    await my_company(stack.http)
    buyer = await client_company(stack.http)
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [{
        "name": "invoice", "type": "create_document",
        "settings": {"template": "invoice", "public_link": True, "wait_for_pdf": True},
    }]}})
    items = [await deal(stack.http, flow["id"], manager["id"], company_id=buyer["id"], amount=100 + n)
             for n in range(DOCUMENTS)]
    for item in items:
        await eventually(lambda item=item: timeline(stack.http, item["id"], kind="rule_done"), timeout=60)
    documents = [(await documents_of(stack.http, item["id"]))[0] for item in items]
    tokens = [document["public_url"].rsplit("/", 1)[1] for document in documents]

    assert len(set(tokens)) == DOCUMENTS
    assert all(URL_SAFE.match(token) for token in tokens), tokens
    bits = min(len(token) for token in tokens) * math.log2(64)
    assert bits >= TOKEN_BITS, tokens
    spread = Counter("".join(tokens))
    assert len(spread) > 40, "the tokens use few of the 64 URL-safe characters"
    for _ in range(20):
        guess = secrets.token_urlsafe(32)
        assert (await stack.anon.get(f"/public/documents/{guess}")).status_code == HTTPStatus.NOT_FOUND

    kept, revoked, expired, _ = zip(documents, tokens, strict=True)
    assert (await stack.anon.get(f"/public/documents/{kept[1]}")).status_code == HTTPStatus.OK
    for token in (revoked[1], expired[1]):
        assert (await stack.anon.get(f"/public/documents/{token}")).status_code == HTTPStatus.OK

    answer = await stack.member.post(f"/documents/{revoked[0]['id']}/revoke-link")
    assert answer.status_code == HTTPStatus.OK and answer.json()["public_url"] is None
    with stack.session() as session:
        row = session.get(Document, expired[0]["id"])
        row.public_expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
        session.add(row)

    closed = {}
    for name, token in (("revoked", revoked[1]), ("expired", expired[1])):
        for suffix in ("", "/pdf", "/docx", "?view=html"):
            closed[f"{name}{suffix}"] = (await stack.anon.get(f"/public/documents/{token}{suffix}")).status_code
    assert set(closed.values()) == {HTTPStatus.NOT_FOUND}, closed
    assert (await stack.anon.get(f"/public/documents/{kept[1]}/pdf")).status_code == HTTPStatus.OK
    record("public_links", {
        "token_length": len(tokens[0]), "token_bits": int(bits), "random_guesses_refused": 20,
        "revoked_link_answers": sorted(set(closed.values())),
    })
