"""Recovering from an outage in one call: the SMTP server (a real aiosmtpd one) refuses every message for a while,
so 50 deals' emails end `rule_failed`; it comes back; `GET /failures` groups them, a dry run counts them, and one
`POST /failures/retry` delivers each of the 50 emails once, every timeline saying `rule_retried` then `rule_done`.
A second retry finds nothing to do."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.crm import automate, eventually, ok, pipeline, timeline, user

DEALS = 50
REFUSAL = "451 4.3.0 mail system down for maintenance"


def email_rule(subject: str = "Your order {{Deal.Title}}") -> dict:
    return {"name": "confirm", "type": "send_email",
            "settings": {"subject": subject, "body": "Hello {{Deal.Contact.Name}}, we have your order."}}


async def _deals(http, count: int, rule: dict) -> tuple[dict, list[int]]:
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "WON"])
    await automate(http, flow["id"], {"NEW": {"rules": [rule]}})
    ids = []
    for number in range(count):
        contact = ok(await http.post("/contacts", json={"name": f"Client {number}",
                                                        "email": f"client{number}@example.com"}), 201)
        deal = ok(await http.post("/deals", json={"title": f"Order {number}", "pipeline_id": flow["id"],
                                                 "responsible_id": manager["id"], "contact_id": contact["id"]}), 201)
        ids.append(deal["id"])
    return flow, ids


async def _all_failed(http, ids: list[int]) -> bool:
    failed = ok(await http.get("/timeline", params={"kind": "rule_failed", "limit": 500}))
    return {entry["item_id"] for entry in failed} >= set(ids)


async def _operation_done(http, operation_id: str) -> dict | None:
    progress = ok(await http.get(f"/operations/{operation_id}"))
    return progress if progress["state"] == "done" else None


async def test_an_smtp_outage_is_recovered_by_one_retry_each_email_sent_once(mail_stack, inbox):
    http = mail_stack.http
    inbox.refuse(REFUSAL)
    flow, ids = await _deals(http, DEALS, email_rule())
    await eventually(lambda: _all_failed(http, ids), timeout=120, interval=0.5)
    assert inbox.messages == []

    report = ok(await http.get("/failures", params={"pipeline_id": flow["id"]}))
    assert report["total"] == DEALS
    [group] = report["groups"]
    assert (group["rule_type"], group["count"]) == ("send_email", DEALS) and "451" in group["error"]
    assert {sample["rule"] for sample in group["sample"]} == {"confirm"} and 0 < len(group["sample"]) <= 5
    assert ok(await http.get("/failures", params={"rule_type": "send_sms"}))["total"] == 0

    dry = ok(await http.post("/failures/retry", json={"pipeline_id": flow["id"]}))
    assert dry == {"dry_run": True, "count": DEALS}
    assert inbox.messages == []

    inbox.refuse(None)
    order = {"pipeline_id": flow["id"], "dry_run": False, "rate": 25}
    started = ok(await http.post("/failures/retry", json=order), 202)
    assert started["count"] == DEALS
    progress = await eventually(lambda: _operation_done(http, started["operation_id"]), timeout=120, interval=0.5)
    assert (progress["total"], progress["done"], progress["failed"], progress["pending"]) == (DEALS, DEALS, 0, 0)

    recipients = Counter(address for _, addresses in inbox.envelopes for address in addresses)
    assert len(recipients) == DEALS and set(recipients.values()) == {1}
    assert len({str(message["Message-ID"]) for message in inbox.messages}) == DEALS
    for item in ids:
        story = [entry["kind"] for entry in await timeline(http, item) if entry["rule_name"] == "confirm"]
        assert story[-3:] == ["rule_failed", "rule_retried", "rule_done"], (item, story)

    assert ok(await http.get("/failures", params={"pipeline_id": flow["id"]}))["total"] == 0
    assert ok(await http.post("/failures/retry", json={"pipeline_id": flow["id"]})) == {"dry_run": True, "count": 0}
    again = ok(await http.post("/failures/retry", json={"pipeline_id": flow["id"], "dry_run": False}), 202)
    assert again["count"] == 0
    progress = await eventually(lambda: _operation_done(http, again["operation_id"]), timeout=30)
    assert progress["total"] == 0
    assert len(inbox.messages) == DEALS


async def test_a_retry_runs_each_rule_as_recorded_or_as_the_automation_is_now(mail_stack, inbox):
    http = mail_stack.http
    inbox.refuse(REFUSAL)
    flow, ids = await _deals(http, 2, email_rule("Old subject"))
    await eventually(lambda: _all_failed(http, ids), timeout=60, interval=0.3)
    await automate(http, flow["id"], {"NEW": {"rules": [email_rule("New subject")]}})
    inbox.refuse(None)

    first = await _retry_one(http, flow["id"], ids[0], "recorded")
    second = await _retry_one(http, flow["id"], ids[1], "current")
    assert (first, second) == (1, 1)
    subjects = sorted(str(message["Subject"]) for message in inbox.messages)
    assert subjects == ["New subject", "Old subject"]


async def _retry_one(http, pipeline_id: int, item_id: int, automation: str) -> int:
    """Retries the failures of one deal (by the window of its failure) with `automation`; the rules it ran."""
    [failure] = await timeline(http, item_id, kind="rule_failed")
    window = {"since": failure["at"], "until": _just_after(failure["at"]), "pipeline_id": pipeline_id}
    started = ok(await http.post("/failures/retry", json={**window, "dry_run": False, "automation": automation}), 202)
    progress = await eventually(lambda: _operation_done(http, started["operation_id"]), timeout=60, interval=0.3)
    return progress["done"]


def _just_after(moment: str) -> str:
    from datetime import datetime, timedelta

    return (datetime.fromisoformat(moment) + timedelta(microseconds=1)).isoformat()


@pytest.mark.parametrize(("body", "field"), [
    ({"rate": 0}, "rate"), ({"rate": 101}, "rate"), ({"rate": "fast"}, "rate"),
    ({"since": "2026-12-06T10:00:00Z", "until": "2026-12-06T09:00:00Z"}, "until"),
    ({"since": "yesterday"}, "since"), ({"automation": "latest"}, "automation"), ({"pipeline_id": 0}, "pipeline_id"),
    ({"rule_type": ""}, "rule_type"), ({"dry_run": "maybe"}, "dry_run"), ({"colour": "red"}, "colour"),
])
async def test_bad_retry_requests_are_refused_naming_the_field(stack, body, field):
    answer = await stack.http.post("/failures/retry", json=body)
    assert answer.status_code == 422, answer.text
    assert [problem["loc"][-1] for problem in answer.json()["detail"]] == [field]


async def test_bad_failure_queries_and_unknown_operations_are_refused(stack):
    http = stack.http
    for params, field in [({"since": "2026-12-06T10:00:00Z", "until": "2026-12-06T10:00:00Z"}, "until"),
                          ({"pipeline_id": "x"}, "pipeline_id"), ({"until": "soon"}, "until")]:
        answer = await http.get("/failures", params=params)
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["query", field], answer.text
    assert (await http.get("/operations/not-an-id")).status_code == 422
    assert (await http.get("/operations/0123456789abcdef")).status_code == 404
    assert (await stack.member.post("/failures/retry", json={"dry_run": False})).status_code == 403
    assert (await stack.member.get("/failures")).status_code == 200
    assert (await stack.anon.get("/failures")).status_code == 401


async def test_an_archived_items_failed_rules_are_not_listed_nor_run_again(mail_stack, inbox):
    http = mail_stack.http
    inbox.refuse(REFUSAL)
    flow, ids = await _deals(http, 2, email_rule())
    await eventually(lambda: _all_failed(http, ids), timeout=60, interval=0.3)
    ok(await http.post(f"/deals/{ids[0]}/archive"))
    assert ok(await http.get("/failures", params={"pipeline_id": flow["id"]}))["total"] == 1
    inbox.refuse(None)
    started = ok(await http.post("/failures/retry", json={"pipeline_id": flow["id"], "dry_run": False}), 202)
    progress = await eventually(lambda: _operation_done(http, started["operation_id"]), timeout=60, interval=0.3)
    assert (progress["total"], progress["done"]) == (1, 1)
    assert [str(message["To"]) for message in inbox.messages] == ["client1@example.com"]
