"""Notify supervisor and notify employee: who is told, when, what text, and by e-mail when asked."""

from __future__ import annotations

from datetime import timedelta

from tests.crm import automate, deal, eventually, kinds, ok, pipeline, timeline
from tests.monitoring.monitoring_flows import finished, notifications, rerun, shop

LATE_TEXT = "{{Deal.Responsible.Name}} has not moved {{Deal.Title}} ({{Deal.Amount}} {{Deal.Currency}})"


def _late_rule(delay: str | None, **settings) -> dict:
    return {"name": "late", "type": "notify_supervisor", "delay": delay, "settings": {"text": LATE_TEXT, **settings}}


async def test_supervisor_is_told_once_when_the_deal_sat_24_hours_and_never_when_it_moved_on(ts_stack):
    stack = ts_stack
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "CONTACTED", "WON"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [_late_rule("24h")]}})
    stuck = await deal(stack.http, flow["id"], people["manager"]["id"], title="Sofa", amount=1500, currency="PLN")
    moved = await deal(stack.http, flow["id"], people["manager"]["id"], title="Chair", amount=200, currency="PLN")

    await stack.env.sleep(timedelta(hours=3))
    ok(await stack.http.post(f"/deals/{moved['id']}/move", json={"stage": "CONTACTED"}))
    await stack.env.sleep(timedelta(hours=20, minutes=58))
    assert await notifications(stack.http, people["boss"]["id"]) == []

    await stack.env.sleep(timedelta(minutes=3))
    notes = await eventually(lambda: notifications(stack.http, people["boss"]["id"]))
    assert [(note["item_id"], note["text"]) for note in notes] == [(stuck["id"], "Marek Manager has not moved Sofa (1500 PLN)")]

    await stack.env.sleep(timedelta(days=3))
    assert len(await notifications(stack.http, people["boss"]["id"])) == 1
    assert await notifications(stack.http, people["manager"]["id"]) == []
    assert kinds(await timeline(stack.http, moved["id"]), "late") == ["rule_scheduled", "rule_cancelled"]
    assert kinds(await timeline(stack.http, stuck["id"]), "late") == ["rule_scheduled", "rule_done"]


async def test_supervisor_is_told_after_a_short_delay_only_about_the_deal_that_stayed(stack):
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "CONTACTED"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [_late_rule("2s")]}})
    stuck = await deal(stack.http, flow["id"], people["manager"]["id"], title="Sofa", amount=1500, currency="PLN")
    moved = await deal(stack.http, flow["id"], people["manager"]["id"], title="Chair")
    ok(await stack.http.post(f"/deals/{moved['id']}/move", json={"stage": "CONTACTED"}))

    assert (await finished(stack.http, moved["id"], "late"))["kind"] == "rule_cancelled"
    assert (await finished(stack.http, stuck["id"], "late"))["kind"] == "rule_done"
    notes = await notifications(stack.http, people["boss"]["id"])
    assert [(note["item_id"], note["text"]) for note in notes] == [(stuck["id"], "Marek Manager has not moved Sofa (1500 PLN)")]


async def test_no_supervisor_and_no_recipients_fails_the_rule_and_tells_nobody(stack):
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "WON"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [_late_rule(None)]}})
    item = await deal(stack.http, flow["id"], people["boss"]["id"])

    failed = await finished(stack.http, item["id"], "late")
    assert failed["kind"] == "rule_failed"
    assert "Barbara Boss" in failed["text"] and "no supervisor" in failed["text"]
    assert "recipient_ids" in failed["data"]["error"]
    for person in people.values():
        assert await notifications(stack.http, person["id"]) == []


async def test_given_recipients_replace_the_supervisor(stack):
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "WON"])
    recipients = [people["courier"]["id"], "{{Constants.Deputy}}"]
    await automate(
        stack.http, flow["id"], {"NEW": {"rules": [_late_rule(None, recipient_ids=recipients)]}},
        constants={"Deputy": people["manager"]["id"]},
    )
    item = await deal(stack.http, flow["id"], people["manager"]["id"], title="Sofa", amount=10, currency="EUR")

    assert (await finished(stack.http, item["id"], "late"))["kind"] == "rule_done"
    for name in ("courier", "manager"):
        notes = await notifications(stack.http, people[name]["id"])
        assert [note["text"] for note in notes] == ["Marek Manager has not moved Sofa (10 EUR)"]
    assert await notifications(stack.http, people["boss"]["id"]) == []


async def test_supervisor_email_goes_over_smtp_once(mail_stack, inbox):
    stack = mail_stack
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "WON"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [_late_rule(None, email=True)]}})
    item = await deal(stack.http, flow["id"], people["manager"]["id"], title="Sofa", amount=1500, currency="PLN")

    assert (await finished(stack.http, item["id"], "late"))["kind"] == "rule_done"
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert mail["To"] == "barbara@shop.example"
    assert mail["From"] == "CRM <crm@shop.example>"
    assert "Sofa" in mail["Subject"]
    assert mail["Message-ID"].endswith("@shop.example>")
    assert mail.get_content().strip() == "Marek Manager has not moved Sofa (1500 PLN)"
    messages = ok(await stack.http.get("/messages", params={"deal_id": item["id"]}))
    assert [(message["channel"], message["to"], message["status"]) for message in messages] == [
        ("email", "barbara@shop.example", "sent")
    ]
    assert len(await notifications(stack.http, people["boss"]["id"])) == 1

    outcome = await rerun(stack, item["id"], "late")
    assert outcome.status == "done"
    assert len(inbox.messages) == 1
    assert len(ok(await stack.http.get("/messages", params={"deal_id": item["id"]}))) == 1
    assert len(await notifications(stack.http, people["boss"]["id"])) == 1


async def test_employees_are_notified_and_mailed_when_they_have_an_address(mail_stack, inbox):
    stack = mail_stack
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "WON"])
    rule = {"name": "courier", "type": "notify_employee", "settings": {
        "user_ids": ["{{Constants.Courier}}", people["boss"]["id"]], "email": True,
        "text": "Deliver {{Deal.Title}} to {{Deal.Contact.Name}}, phone {{Deal.Contact.Phone}}"}}
    await automate(stack.http, flow["id"], {"NEW": {"rules": [rule]}}, constants={"Courier": people["courier"]["id"]})
    contact = ok(await stack.http.post("/contacts", json={"name": "Anna Nowak", "phone": "+48 600 100 200"}), 201)
    item = await deal(stack.http, flow["id"], people["manager"]["id"], title="Sofa", contact_id=contact["id"])

    done = await finished(stack.http, item["id"], "courier")
    assert done["kind"] == "rule_done"
    text = "Deliver Sofa to Anna Nowak, phone +48 600 100 200"
    for name in ("courier", "boss"):
        assert [note["text"] for note in await notifications(stack.http, people[name]["id"])] == [text]
    assert [mail["To"] for mail in inbox.messages] == ["barbara@shop.example"]
    assert done["data"]["result"]["emailed"] == [people["boss"]["id"]]


async def test_a_refused_email_fails_the_rule_before_anyone_is_notified(mail_stack, inbox):
    stack = mail_stack
    inbox.refuse = "550 5.1.1 mailbox unavailable"
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "WON"])
    rule = {"name": "tell", "type": "notify_employee",
            "settings": {"user_ids": [people["boss"]["id"]], "text": "Look at {{Deal.Title}}", "email": True}}
    await automate(stack.http, flow["id"], {"NEW": {"rules": [rule]}})
    item = await deal(stack.http, flow["id"], people["manager"]["id"])

    failed = await finished(stack.http, item["id"], "tell")
    assert failed["kind"] == "rule_failed"
    assert "barbara@shop.example" in failed["text"] and "550" in failed["text"]
    messages = ok(await stack.http.get("/messages", params={"deal_id": item["id"]}))
    assert [(message["status"], "550" in (message["error"] or "")) for message in messages] == [("failed", True)]
    assert await notifications(stack.http, people["boss"]["id"]) == []
    assert inbox.messages == []


async def test_a_busy_mail_server_is_tried_again_and_the_email_goes_once(mail_stack, inbox):
    stack = mail_stack
    inbox.busy = 1
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "WON"])
    rule = {"name": "tell", "type": "notify_employee",
            "settings": {"user_ids": [people["boss"]["id"]], "text": "Look at {{Deal.Title}}", "email": True}}
    await automate(stack.http, flow["id"], {"NEW": {"rules": [rule]}})
    item = await deal(stack.http, flow["id"], people["manager"]["id"], title="Sofa")

    assert (await finished(stack.http, item["id"], "tell"))["kind"] == "rule_done"
    assert inbox.busy == 0
    assert [mail.get_content().strip() for mail in inbox.messages] == ["Look at Sofa"]
    messages = ok(await stack.http.get("/messages", params={"deal_id": item["id"]}))
    assert [(message["status"], message["error"]) for message in messages] == [("sent", None)]
    assert len(await notifications(stack.http, people["boss"]["id"])) == 1


async def test_an_unknown_user_behind_a_placeholder_fails_the_rule_with_nothing_sent(stack):
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "WON"])
    rule = {"name": "tell", "type": "notify_employee",
            "settings": {"user_ids": [people["courier"]["id"], "{{Deal.Fields.installer}}"], "text": "Go"}}
    await automate(stack.http, flow["id"], {"NEW": {"rules": [rule]}})
    item = await deal(stack.http, flow["id"], people["manager"]["id"], fields={"installer": 9999})

    failed = await finished(stack.http, item["id"], "tell")
    assert failed["kind"] == "rule_failed"
    assert "user_ids.1" in failed["text"] and "9999" in failed["text"]
    assert await notifications(stack.http, people["courier"]["id"]) == []
