"""The wait rule: the rules after it go on when a watched field changes, or when its timeout passes."""

from __future__ import annotations

import asyncio

from tests.crm import eventually, ok
from tests.custom.flows import comments, finished, problem_at, rule_entries, shop_deal


def _rules(wait_settings: dict) -> dict:
    return {"NEW": {"rules": [
        {"name": "hold", "type": "wait", "settings": wait_settings},
        {"name": "note", "type": "add_timeline_entry", "start": "after_previous",
         "settings": {"text": "changed {{Rule.hold.changed}} ({{Rule.hold.field}}), amount {{Deal.Amount}}"}},
    ]}}


async def test_a_change_of_the_watched_field_releases_the_wait(stack):
    item = await shop_deal(stack.http, _rules({"until_field_changes": "amount", "timeout": "1h"}), amount=100)
    await asyncio.sleep(1.5)
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"title": "Sofa, blue"}))
    await asyncio.sleep(1)
    assert await comments(stack.http, item["id"]) == []

    ok(await stack.http.patch(f"/deals/{item['id']}", json={"amount": 250}))
    assert (await finished(stack.http, item["id"], "note"))["kind"] == "rule_done"
    assert await comments(stack.http, item["id"]) == ["changed true (amount), amount 250"]


async def test_the_wait_ends_at_its_timeout_when_nothing_changes(stack):
    item = await shop_deal(stack.http, _rules({"until_field_changes": "Fields.colour", "timeout": "2s"}), amount=100)

    assert (await finished(stack.http, item["id"], "note"))["kind"] == "rule_done"
    assert await comments(stack.http, item["id"]) == ["changed false (), amount 100"]


async def test_a_wait_without_a_field_or_timeout_is_refused_at_save_time(stack):
    item = await shop_deal(stack.http, {})
    url = f"/pipelines/{item['pipeline_id']}/automation"
    nothing = await stack.http.put(url, json={"stages": _rules({})})
    assert "until_field_changes, timeout" in problem_at(nothing, "settings")["msg"]
    unknown = await stack.http.put(url, json={"stages": _rules({"until_field_changes": "colour"})})
    assert "not an item field" in problem_at(unknown, "settings", "until_field_changes")["msg"]


async def test_leaving_the_stage_during_the_wait_cancels_the_rules_after_it(stack):
    item = await shop_deal(stack.http, _rules({"until_field_changes": "amount"}), amount=100)
    await eventually(lambda: _waiting(stack, item["id"]))
    ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "WON"}))

    assert (await finished(stack.http, item["id"], "note"))["kind"] == "rule_cancelled"
    hold = [(entry["kind"], entry["text"]) for entry in await rule_entries(stack.http, item["id"], "hold")]
    assert hold[1:] == [("rule_waiting", "Rule hold (wait) waiting for a change of amount"),
                        ("rule_done", "Rule hold (wait) done: the item left the stage before the wait was over")], hold
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"amount": 250}))
    await asyncio.sleep(1)
    assert await comments(stack.http, item["id"]) == []


async def _waiting(stack, item_id: int) -> bool:
    return any(entry["kind"] == "rule_waiting" for entry in await rule_entries(stack.http, item_id, "hold"))
