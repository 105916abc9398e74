"""`?wait=true` on events and payments: the answer comes once the item has handled the event and says what it did,
so a client learns the new stage from one call."""

from __future__ import annotations

from tests.crm import automate, deal, ok, pipeline, timeline, user


async def _shop(stack, entity: str = "deal") -> tuple[dict, dict]:
    manager = await user(stack.http, "Marek Manager")
    stages = ["NEW", "PAID", "SHIPPED"] if entity == "deal" else ["L_NEW", "L_PAID", "L_SHIPPED"]
    flow = await pipeline(stack.http, stages, entity=entity)
    await automate(stack.http, flow["id"], {
        stages[1]: {"triggers": [{"name": "paid", "type": "payment_received", "filter": {"min_amount": 100}}]},
        stages[2]: {"triggers": [{"name": "shipped", "type": "custom", "filter": {"event": "order_shipped"}}]},
    })
    return flow, await deal(stack.http, flow["id"], manager["id"], entity=entity)


async def test_a_payment_with_wait_answers_with_the_trigger_and_the_new_stage(stack):
    _flow, item = await _shop(stack)
    small = ok(await stack.http.post(f"/deals/{item['id']}/payments", params={"wait": "true"}, json={"amount": 5}))
    assert small == {"matched": None, "stage": "NEW", "moved": False}
    paid = ok(await stack.http.post(f"/deals/{item['id']}/payments", params={"wait": "true"}, json={"amount": 500}))
    assert paid == {"matched": "paid", "stage": "PAID", "moved": True}
    assert ok(await stack.http.get(f"/deals/{item['id']}"))["stage"] == "PAID"
    shipped = ok(await stack.http.post(f"/deals/{item['id']}/events", params={"wait": "true"},
                                       json={"type": "order_shipped"}))
    assert shipped == {"matched": "shipped", "stage": "SHIPPED", "moved": True}


async def test_an_event_with_wait_sent_twice_with_its_key_answers_alike_and_moves_once(stack):
    _flow, item = await _shop(stack, entity="lead")
    for _ in range(2):
        answer = ok(await stack.http.post(f"/leads/{item['id']}/payments", params={"wait": "true"}, json={"amount": 500},
                                          headers={"Idempotency-Key": "pay-7"}))
        assert answer == {"matched": "paid", "stage": "L_PAID", "moved": True}
    changes = await timeline(stack.http, item["id"], entity="lead", kind="stage_changed")
    assert [entry["data"]["to"] for entry in changes] == ["L_NEW", "L_PAID"]


async def test_without_wait_the_answer_is_202_at_once_and_a_bad_wait_is_a_422(stack):
    _flow, item = await _shop(stack)
    accepted = await stack.http.post(f"/deals/{item['id']}/payments", json={"amount": 500})
    assert accepted.status_code == 202 and accepted.json() == {"accepted": True}
    bad = await stack.http.post(f"/deals/{item['id']}/payments", params={"wait": "maybe"}, json={"amount": 500})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "wait"]
