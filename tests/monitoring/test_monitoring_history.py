"""Add history entry: written as the chosen user, filterable by kind on the item and across the CRM."""

from __future__ import annotations

from tests.crm import automate, deal, ok, pipeline, timeline
from tests.monitoring.monitoring_flows import finished, rerun, shop


async def _crm_timeline(http, **params) -> list[dict]:
    return ok(await http.get("/timeline", params={"limit": 500, **params}))


async def test_history_entries_carry_their_author_and_kind_and_filter_by_both(stack):
    people = await shop(stack.http)
    boss, manager = people["boss"]["id"], people["manager"]["id"]
    flow = await pipeline(stack.http, ["NEW", "CONTACTED"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "opened", "type": "add_timeline_entry", "settings": {"text": "Deal {{Deal.Title}} opened"}},
        {"name": "breach", "type": "add_timeline_entry", "delay": "1s", "settings": {
            "text": "{{Deal.Responsible.Name}} did not move {{Deal.Title}} ({{Deal.Amount}}) in time",
            "author_id": boss, "kind": "violation"}},
    ]}})
    sofa = await deal(stack.http, flow["id"], manager, title="Sofa", amount=1500)
    chair = await deal(stack.http, flow["id"], manager, title="Chair", amount=300)
    table = await deal(stack.http, flow["id"], manager, title="Table")
    assert (await finished(stack.http, table["id"], "opened"))["kind"] == "rule_done"
    ok(await stack.http.post(f"/deals/{table['id']}/move", json={"stage": "CONTACTED"}))
    for item in (sofa, chair):
        assert (await finished(stack.http, item["id"], "breach"))["kind"] == "rule_done"
    assert (await finished(stack.http, table["id"], "breach"))["kind"] == "rule_cancelled"

    on_sofa = await timeline(stack.http, sofa["id"], kind="violation")
    assert [(entry["text"], entry["author_id"], entry["rule_name"]) for entry in on_sofa] == [
        ("Marek Manager did not move Sofa (1500) in time", boss, "breach")
    ]
    comments = await timeline(stack.http, sofa["id"], kind="comment")
    assert [(entry["text"], entry["author_id"]) for entry in comments] == [("Deal Sofa opened", manager)]

    violations = await _crm_timeline(stack.http, kind="violation", author_id=boss)
    assert sorted(entry["item_id"] for entry in violations) == sorted([sofa["id"], chair["id"]])
    assert await _crm_timeline(stack.http, kind="violation", author_id=manager) == []
    opened = await _crm_timeline(stack.http, kind="comment", author_id=manager)
    assert sorted(entry["text"] for entry in opened) == ["Deal Chair opened", "Deal Sofa opened", "Deal Table opened"]

    outcome = await rerun(stack, sofa["id"], "breach")
    assert outcome.result["entry_id"] == on_sofa[0]["id"]
    assert len(await timeline(stack.http, sofa["id"], kind="violation")) == 1


async def test_an_author_who_does_not_exist_fails_the_rule_and_writes_nothing(stack):
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "WON"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "note", "type": "add_timeline_entry",
         "settings": {"text": "Checked {{Deal.Title}}", "author_id": "{{Deal.Fields.checker}}", "kind": "check"}},
    ]}})
    item = await deal(stack.http, flow["id"], people["manager"]["id"], fields={"checker": 4242})

    failed = await finished(stack.http, item["id"], "note")
    assert failed["kind"] == "rule_failed"
    assert "author_id" in failed["text"] and "4242" in failed["text"]
    assert await timeline(stack.http, item["id"], kind="check") == []
