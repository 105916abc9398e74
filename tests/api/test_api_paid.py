"""What a deal has been paid: the payments reported in its currency, each added once (a payment sent again with its
Idempotency-Key adds nothing), so that a trigger's or a rule's condition can ask whether they cover the amount."""

from __future__ import annotations

from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user

PAID_IN_FULL = {"field": "Deal.Paid", "op": ">=", "value": "{{Deal.Amount}}"}


async def test_payments_add_up_once_each_and_a_trigger_waits_for_the_whole_amount(stack):
    http = stack.http
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "PAID"])
    await automate(http, flow["id"], {"PAID": {
        "rules": [{"name": "ship", "type": "add_timeline_entry", "condition": PAID_IN_FULL,
                   "settings": {"text": "Paid {{Deal.Paid}} of {{Deal.Amount}}: ship it"}}],
        "triggers": [{"name": "paid", "type": "payment_received", "condition": PAID_IN_FULL}],
    }})
    item = await deal(http, flow["id"], manager["id"], amount=310, currency="EUR")
    path = f"/deals/{item['id']}/payments?wait=true"

    deposit = {"Idempotency-Key": "deposit-1"}
    for _ in range(2):
        ok(await http.post(path, json={"amount": 5, "currency": "EUR"}, headers=deposit))
    ok(await http.post(path, json={"amount": 500, "currency": "USD"}))
    seen = ok(await http.get(f"/deals/{item['id']}"))
    assert (seen["paid"], seen["stage"]) == (5, "NEW")

    ok(await http.post(path, json={"amount": 305}))
    seen = ok(await http.get(f"/deals/{item['id']}"))
    assert (seen["paid"], seen["stage"]) == (310, "PAID")
    [shipped] = await eventually(lambda: _entries(http, item["id"], "ship"))
    assert shipped["text"] == "Paid 310 of 310: ship it"
    events = [entry for entry in await timeline(http, item["id"], kind="event_received")]
    assert [entry["data"]["matched"] for entry in events] == [None, None, "paid"]
    assert "Deal.Paid = 5 is not >= 310" in events[0]["text"]


async def _entries(http, item_id: int, rule: str) -> list[dict]:
    return [entry for entry in await timeline(http, item_id, kind="comment") if entry["rule_name"] == rule]


async def test_a_payment_posted_as_an_event_is_checked_as_payments_are(stack):
    http = stack.http
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "PAID"])
    await automate(http, flow["id"], {"PAID": {"triggers": [{"name": "paid", "type": "payment_received"}]}})
    item = await deal(http, flow["id"], manager["id"], amount=310, currency="EUR")
    for data, field in [({"amount": 10, "currency": 5}, "currency"), ({"amount": "Infinity"}, "amount"),
                        ({"amount": -3}, "amount"), ({"currency": "EUR"}, "amount"), ({"amount": 1e16}, "amount")]:
        answer = await http.post(f"/deals/{item['id']}/events", json={"type": "payment_received", "data": data})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][-1] == field, answer.text
    ok(await http.post(f"/deals/{item['id']}/events?wait=true",
                       json={"type": "payment_received", "data": {"amount": 310, "currency": "EUR"}}))
    seen = ok(await http.get(f"/deals/{item['id']}"))
    assert (seen["paid"], seen["stage"]) == (310, "PAID")
