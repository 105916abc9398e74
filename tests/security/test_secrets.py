"""Secrets never reach the logs or the workflow histories an admin reads in the Temporal UI.

The API and the worker run as processes with an admin API key, an SMTP password (the SMTP server asks for
it), an SMS provider's auth header and a member API key in use; rules send e-mails, an SMS and a document for
signing, and the client signs with the one-time code that came by e-mail. Then every workflow history on the
Temporal server (every payload: inputs, results, signals, queries' data as stored) and every line the API,
the worker and the Temporal server logged are searched for each secret, and for the signing-link and public
document tokens and the inbound-hook secret that were used (the API's access log prints paths with `***` for
them; a rule's result that holds such a link is a reference in the history, read back from the database by the
later rule that uses it).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from email.message import EmailMessage

import httpx
import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from models.tables import Document, DocumentSigner
from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from tests.documents.support import my_company
from scripts.local import free_port
from tests.faults.cluster import Cluster, Mailbox, WebhookTarget
from tests.security.findings import record

LINK = re.compile(r"(/sign/[A-Za-z0-9_\-]{20,})")
CODE = re.compile(r"\b([0-9]{6})\b")
SMTP_USER = "stageflow-mailer"


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def occurrences(secret: str, haystack: bytes) -> int:
    """How often `secret` appears as itself (a code is not counted inside a longer number)."""
    if secret.isdigit():
        return len(re.findall(rb"(?<![0-9.])" + secret.encode() + rb"(?![0-9])", haystack))
    return haystack.count(secret.encode())


async def histories(address: str, at_least: int = 3, timeout: float = 30.0) -> tuple[int, bytes]:
    """(number of workflows, every event of every workflow history serialized) from the Temporal server. The
    workflow list comes from visibility, which may lag behind a loaded server: it is read again until it holds
    `at_least` workflows or `timeout` passes."""
    client = await Client.connect(address)
    deadline = time.monotonic() + timeout
    while True:
        events = []
        count = 0
        async for execution in client.list_workflows():
            count += 1
            history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
            events.extend(event.SerializeToString() for event in history.events)
        if count >= at_least or time.monotonic() > deadline:
            return count, b"\n".join(events)
        await asyncio.sleep(0.5)


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # a loopback SMTP server
async def test_keys_passwords_and_codes_stay_out_of_logs_and_workflow_histories(tmp_path):
    smtp_password = "smtp-" + secrets.token_urlsafe(18)
    sms_secret = "sms-" + secrets.token_urlsafe(18)
    gateway = WebhookTarget(free_port())
    cluster = Cluster(
        tmp_path, SMTP_USERNAME=SMTP_USER, SMTP_PASSWORD=smtp_password,
        SMS_PROVIDER="http", SMS_HTTP_URL=f"http://127.0.0.1:{gateway.port}/sms",
        SMS_HTTP_AUTH_HEADER=f"Bearer {sms_secret}",
    )
    mailbox = Mailbox(int(cluster.env["SMTP_PORT"]), users={SMTP_USER: smtp_password})
    mailbox.up()
    gateway.up()
    try:
        cluster.start()
        async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
            member_key = ok(await http.post("/api-keys", json={"name": "shop", "role": "member"}), 201)["key"]
            await my_company(http)
            boss = await user(http, "Boss", email="boss@meble.example")
            manager = await user(http, "Manager", supervisor_id=boss["id"])
            director = await user(http, "Ewa Director", email="ewa@meble.example")
            anna = ok(await http.post("/contacts", json={
                "name": "Anna Nowak", "email": "anna@example.com", "phone": "+48 600 100 200"}), 201)
            flow = await pipeline(http, ["NEW", "SIGNED"])
            await automate(http, flow["id"], {"NEW": {"rules": [
                {"name": "welcome", "type": "send_email",
                 "settings": {"subject": "Hello", "body": "Thank you, {{Deal.Contact.Name}}"}},
                {"name": "text", "type": "send_sms", "settings": {"text": "We will call you, {{Deal.Contact.Name}}"}},
                {"name": "boss", "type": "notify_supervisor",
                 "settings": {"text": "New deal {{Deal.Title}}", "email": True}},
                {"name": "contract", "type": "send_for_signature", "settings": {
                    "template": "contract", "signer_user_id": director["id"], "client_channel": "email",
                    "public_link": True}},
                {"name": "reminder", "type": "send_email", "start": "after_previous", "settings": {
                    "subject": "Reminder", "body": "Sign here: {{Rule.contract.signing_url}}"}},
            ]}, "SIGNED": {"triggers": [
                {"name": "signed", "type": "document_signed"}, {"name": "erp", "type": "webhook"},
            ]}})
            hooks = ok(await http.get(f"/pipelines/{flow['id']}/automation"))["hooks"]
            hook_secret = hooks["SIGNED/erp"].rsplit("/", 1)[1]
        member = {"Authorization": f"Bearer {member_key}"}
        async with httpx.AsyncClient(base_url=cluster.api_url, headers=member, timeout=60) as http:
            item = await deal(http, flow["id"], manager["id"], contact_id=anna["id"], amount=1200)
            done = await eventually(lambda: _rules_done(http, item["id"], 5), timeout=90)
            assert done

            to_anna = [text_of(message) for message in mailbox.messages if "anna@example.com" in message["To"]]
            link = next(LINK.search(text).group(1) for text in to_anna if LINK.search(text))
            # A later rule reads the signing link from the rule's results: the real link, though the
            # workflow history holds only a reference to it.
            reminder = next(text for text in to_anna if "Sign here:" in text)
            tracked = re.search(r"Sign here: (\S+)", reminder).group(1)  # the e-mail's click-tracking link
            target = (await http.get(tracked, follow_redirects=False)).headers.get("location", "")
            assert LINK.search(target) and LINK.search(target).group(1) == link, (reminder, target)
            asked = await http.post(f"{link}/code", json={}, headers={"Authorization": ""})
            assert asked.status_code == 202, asked.text
            code_mail = await eventually(lambda: [text_of(m) for m in mailbox.messages
                                                  if "anna@example.com" in m["To"] and "code" in text_of(m).lower()])
            code = CODE.search(code_mail[-1]).group(1)
            signed = await http.post(link, json={"code": code}, headers={"Authorization": ""})
            assert signed.status_code == 200, signed.text
            hooked = await http.post(
                f"/hooks/{hook_secret}", json={"deal_id": item["id"]}, headers={"Authorization": ""})
            assert hooked.status_code == 202, hooked.text
            await eventually(lambda: _in_stage(http, item["id"], "SIGNED"))
        with Session(cluster.engine()) as session:
            signer_tokens = [signer.token for signer in session.exec(select(DocumentSigner))]
            document_tokens = [row.public_token for row in session.exec(select(Document)) if row.public_token]
        workflows, stored = await histories(cluster.temporal_address)
        logs = cluster.logs_text().encode()
    finally:
        cluster.close()
        mailbox.down()
        gateway.down()

    assert mailbox.logins and set(mailbox.logins) == {SMTP_USER}, "the SMTP server was logged in to"
    assert {request["headers"].get("Authorization") for request in gateway.requests} == {f"Bearer {sms_secret}"}
    secrets_used = {
        "admin API key": cluster.api_key,
        "member API key": member_key,
        "SMTP password": smtp_password,
        "SMS provider auth header": sms_secret,
        "one-time signing code": code,
    }
    found = {name: {"histories": occurrences(secret, stored), "logs": occurrences(secret, logs)}
             for name, secret in secrets_used.items()}
    capability = {
        "signing link tokens": {"histories": sum(occurrences(t, stored) for t in signer_tokens),
                                "logs": sum(occurrences(t, logs) for t in signer_tokens)},
        "public document link tokens": {"histories": sum(occurrences(t, stored) for t in document_tokens),
                                        "logs": sum(occurrences(t, logs) for t in document_tokens)},
        "inbound hook secret": {"histories": occurrences(hook_secret, stored), "logs": occurrences(hook_secret, logs)},
    }
    record("secrets", {
        "workflows_searched": workflows, "history_bytes": len(stored), "log_bytes": len(logs),
        "secrets": found, "capability_urls": capability,
    })
    assert workflows >= 2 and len(logs) > 1000  # the item's workflow and its NEW entry's (SIGNED has no rules, no workflow)
    assert found == {name: {"histories": 0, "logs": 0} for name in secrets_used}, found
    assert signer_tokens and document_tokens
    assert capability == {name: {"histories": 0, "logs": 0} for name in capability}, capability


async def _rules_done(http: httpx.AsyncClient, item_id: int, count: int) -> bool:
    entries = await timeline(http, item_id)
    failed = [entry["text"] for entry in entries if entry["kind"] == "rule_failed"]
    assert not failed, failed
    return sum(entry["kind"] == "rule_done" for entry in entries) >= count


async def _in_stage(http: httpx.AsyncClient, item_id: int, stage: str) -> bool:
    return ok(await http.get(f"/deals/{item_id}"))["stage"] == stage
