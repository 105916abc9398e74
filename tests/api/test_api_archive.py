"""Archiving an item: its waiting rules are cancelled with the reason, it leaves the lists, moves and events are a
409; restored, it is back in its stage and its stage's rules do not run again. A PATCH is one `field_changed`
entry naming each field from → to."""

from __future__ import annotations

from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user


async def waiting_deal(stack):
    http = stack.http
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "WON"])
    await automate(http, flow["id"], {"NEW": {"rules": [
        {"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hello"}},
        {"name": "later", "type": "add_timeline_entry", "delay": "30d", "settings": {"text": "A month on"}},
    ]}})
    item = await deal(http, flow["id"], manager["id"], amount=5000, currency="EUR")
    assert await eventually(lambda: _kinds(http, item["id"], "hello"))
    return flow, item


async def _kinds(http, item_id: int, rule: str) -> list[str]:
    return [entry["kind"] for entry in await timeline(http, item_id) if entry["rule_name"] == rule]


async def test_an_archived_deal_has_its_waiting_rule_cancelled_and_refuses_moves_and_events(stack):
    http = stack.http
    flow, item = await waiting_deal(stack)
    archived = ok(await http.post(f"/deals/{item['id']}/archive"))
    assert archived["archived_at"] is not None and archived["stage"] == "NEW"

    async def cancelled() -> list[dict]:
        return [entry for entry in await timeline(http, item["id"], kind="rule_cancelled") if entry["rule_name"] == "later"]

    [entry] = await eventually(cancelled)
    assert entry["data"]["reason"] == "archived" and "archived" in entry["text"]
    assert ok(await http.get(f"/deals/{item['id']}/pending")) == []
    assert [row["id"] for row in ok(await http.get("/deals", params={"pipeline_id": flow["id"]}))] == []
    assert [row["id"] for row in ok(await http.get("/deals", params={"archived": "true"}))] == [item["id"]]
    for path, body in [("/move", {"stage": "WON"}), ("/events", {"type": "called"}),
                       ("/payments", {"amount": 10}), ("/archive", None)]:
        refused = await http.post(f"/deals/{item['id']}{path}", json=body)
        assert refused.status_code == 409, (path, refused.text)
    assert ok(await http.get(f"/deals/{item['id']}"))["stage"] == "NEW"

    restored = ok(await http.post(f"/deals/{item['id']}/restore"))
    assert restored["archived_at"] is None and restored["stage"] == "NEW"
    assert [row["id"] for row in ok(await http.get("/deals", params={"pipeline_id": flow["id"]}))] == [item["id"]]
    assert (await _kinds(http, item["id"], "hello")).count("rule_done") == 1
    assert ok(await http.get(f"/deals/{item['id']}/pending")) == []
    assert (await http.post(f"/deals/{item['id']}/restore")).status_code == 409
    moved = ok(await http.post(f"/deals/{item['id']}/move", json={"stage": "WON"}))
    assert moved["stage"] == "WON"
    kinds = [entry["kind"] for entry in await timeline(http, item["id"])]
    assert "item_archived" in kinds and "item_restored" in kinds


async def test_archive_and_restore_of_unknown_or_other_items_are_refused(stack):
    http = stack.http
    _, item = await waiting_deal(stack)
    assert (await http.post("/deals/99999/archive")).status_code == 404
    assert (await http.post(f"/leads/{item['id']}/archive")).status_code == 404
    assert (await http.post("/deals/0/restore")).status_code == 422
    assert ok(await http.get(f"/deals/{item['id']}"))["archived_at"] is None


async def test_a_patch_is_one_field_changed_entry_naming_each_field_from_and_to(stack):
    http = stack.http
    _, item = await waiting_deal(stack)
    ok(await http.patch(f"/deals/{item['id']}", json={"amount": 6000, "close_date": "2027-03-01",
                                                       "fields": {"color": "grey"}}))
    [changed] = await timeline(http, item["id"], kind="field_changed")
    assert changed["data"]["changes"] == [
        {"field": "Fields.color", "from": None, "to": "grey"},
        {"field": "amount", "from": 5000.0, "to": 6000.0},
        {"field": "close_date", "from": None, "to": "2027-03-01"},
    ]
    assert "amount 5000 → 6000" in changed["text"]
    other = await user(http, "Sonia Supervisor")
    ok(await http.patch(f"/deals/{item['id']}", json={"responsible_id": other["id"]}))
    [handed] = [entry for entry in await timeline(http, item["id"], kind="field_changed") if entry["id"] != changed["id"]]
    assert handed["text"] == "Changed responsible Marek → Sonia Supervisor"
    assert handed["data"]["changes"] == [{"field": "responsible_id", "from": item["responsible_id"], "to": other["id"]}]
    ok(await http.patch(f"/deals/{item['id']}", json={"amount": 6000.5}))
    [cents] = [entry for entry in await timeline(http, item["id"], kind="field_changed")
               if entry["id"] not in (changed["id"], handed["id"])]
    assert cents["text"] == "Changed amount 6000 → 6000.50"
    await stack.client.get_workflow_handle(f"deal-{item['id']}").query("current")
    received = await timeline(http, item["id"], kind="event_received")
    assert not [entry for entry in received if "moved nothing" in entry["text"]]


async def test_a_stage_holding_an_archived_item_is_not_removed_until_it_is_restored(stack):
    http = stack.http
    flow, item = await waiting_deal(stack)
    ok(await http.post(f"/deals/{item['id']}/archive"))
    refused = await http.delete(f"/pipelines/{flow['id']}/stages/NEW", params={"move_items_to": "WON"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == (f"1 archived deal ({item['id']}) is in stage New (NEW): restore it first, "
                                        "then remove the stage")
    assert [stage["code"] for stage in ok(await http.get(f"/pipelines/{flow['id']}"))["stages"]] == ["NEW", "WON"]
    ok(await http.post(f"/deals/{item['id']}/restore"))
    removed = await http.delete(f"/pipelines/{flow['id']}/stages/NEW", params={"move_items_to": "WON"})
    assert removed.status_code == 204, removed.text
    assert ok(await http.get(f"/deals/{item['id']}"))["stage"] == "WON"
