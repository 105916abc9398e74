"""Every event an item gets leaves a trace on its timeline: the trigger it fired, or why each trigger of its
type did not (the item is in its stage already, the filter, the condition, a stage behind it)."""

from __future__ import annotations

from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user


async def _events(stack, item_id: int, count: int) -> list[dict]:
    async def enough():
        found = await timeline(stack.http, item_id, kind="event_received")
        return found if len(found) >= count else None

    return await eventually(enough)


async def test_events_that_move_nothing_say_why_and_one_that_moves_names_its_trigger(stack):
    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW", "INVOICE", "PAID", "WON"])
    await automate(stack.http, flow["id"], {
        "NEW": {"triggers": [{"name": "restart", "type": "payment_received"}]},
        "PAID": {"triggers": [
            {"name": "big", "type": "payment_received", "filter": {"min_amount": 1000}},
            {"name": "in euro", "type": "payment_received",
             "condition": {"field": "Deal.Currency", "op": "=", "value": "EUR"}},
        ]},
    })
    item = await deal(stack.http, flow["id"], manager["id"], currency="PLN", stage="INVOICE")

    ok(await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 10}), 202)
    [missed] = await _events(stack, item["id"], 1)
    assert missed["data"]["type"] == "payment_received" and missed["data"]["matched"] is None
    assert {(why["trigger"], why["stage"]) for why in missed["data"]["why_not"]} == {
        ("big", "PAID"), ("in euro", "PAID"), ("restart", "NEW")}
    reasons = {why["trigger"]: why["reason"] for why in missed["data"]["why_not"]}
    assert reasons["big"] == "its filter does not match the event"
    assert reasons["in euro"].startswith("its condition is false")
    assert reasons["restart"] == "its stage comes before the item's, and it does not move back"
    assert missed["text"].startswith("Event payment_received moved nothing: trigger big (PAID)")
    assert ok(await stack.http.get(f"/deals/{item['id']}"))["stage"] == "INVOICE"

    ok(await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 5000}), 202)
    moved = (await _events(stack, item["id"], 2))[-1]
    assert (moved["data"]["matched"], moved["data"]["stage"]) == ("big", "PAID")
    assert moved["text"] == "Event payment_received fired trigger big: the item moves to PAID"

    ok(await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 5000}), 202)
    again = (await _events(stack, item["id"], 3))[-1]
    assert {why["trigger"]: why["reason"] for why in again["data"]["why_not"]}["big"] == (
        "the item is in its stage already")
    ok(await stack.http.post(f"/deals/{item['id']}/events", json={"type": "order_shipped"}), 202)
    custom = (await _events(stack, item["id"], 4))[-1]
    assert custom["text"] == "Event order_shipped moved nothing: no trigger of this pipeline waits for it"
    assert ok(await stack.http.get(f"/deals/{item['id']}"))["stage"] == "PAID"


async def test_an_event_sent_again_with_its_idempotency_key_is_recorded_once(stack):
    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW", "PAID"])
    item = await deal(stack.http, flow["id"], manager["id"])
    for _ in range(2):
        ok(await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 10},
                                 headers={"Idempotency-Key": "pay-1"}), 202)
    ok(await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 20}), 202)

    async def the_later_payment_is_in():
        found = await timeline(stack.http, item["id"], kind="event_received")
        return found if any(entry["data"].get("event_id") != "pay-1" for entry in found) else None

    events = await eventually(the_later_payment_is_in)  # events are handled in order: the repeat came before it
    assert [entry["data"].get("event_id") for entry in events].count("pay-1") == 1
    assert len(events) == 2
