"""Schedule activity: a call, meeting or other to-do on the item, completed when the item moves on (or not)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from tests.crm import automate, deal, ok, pipeline, timeline
from tests.monitoring.monitoring_flows import activities, finished, rerun, shop

WARSAW = ZoneInfo("Europe/Warsaw")


async def test_activities_fall_due_in_the_company_time_zone_and_close_with_the_stage_when_asked(stack):
    people = await shop(stack.http)
    manager, courier = people["manager"]["id"], people["courier"]["id"]
    ok(await stack.http.put("/settings/calendar", json={"timezone": "Europe/Warsaw"}))
    flow = await pipeline(stack.http, ["NEW", "CONTACTED"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "call", "type": "schedule_activity", "settings": {
            "kind": "call", "description": "Call {{Deal.Contact.Name}} ({{Deal.Contact.Phone}}) about {{Deal.Title}}",
            "when": {"in_days": 1, "at": "14:00"}}},
        {"name": "meet", "type": "schedule_activity", "settings": {
            "kind": "meeting", "description": "Measure the room for {{Deal.Title}}", "when": "+2h",
            "responsible_id": courier, "complete_on_stage_change": False}},
    ]}})
    contact = ok(await stack.http.post("/contacts", json={"name": "Anna Nowak", "phone": "+48 600 100 200"}), 201)
    item = await deal(stack.http, flow["id"], manager, title="Sofa", contact_id=contact["id"])
    call_done = await finished(stack.http, item["id"], "call")
    meet_done = await finished(stack.http, item["id"], "meet")

    todo = {entry["kind"]: entry for entry in await activities(stack.http, item["id"])}
    call, meet = todo["call"], todo["meeting"]
    assert (call["description"], call["responsible_id"], call["completed"], call["complete_on_stage_change"]) == (
        "Call Anna Nowak (+48 600 100 200) about Sofa", manager, False, True
    )
    ran_local = datetime.fromisoformat(call_done["at"]).astimezone(WARSAW)
    due_local = datetime.fromisoformat(call["due_at"]).astimezone(WARSAW)
    assert (due_local.date(), due_local.time()) == (ran_local.date() + timedelta(days=1), time(14, 0))
    assert call_done["data"]["result"]["due"] == datetime.fromisoformat(call["due_at"]).isoformat()
    assert (meet["description"], meet["responsible_id"]) == ("Measure the room for Sofa", courier)
    assert datetime.fromisoformat(meet["due_at"]) == datetime.fromisoformat(meet_done["at"]) + timedelta(hours=2)

    again = await rerun(stack, item["id"], "call")
    assert again.result["activity_id"] == call["id"]
    assert len(await activities(stack.http, item["id"])) == 2

    ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "CONTACTED"}))
    after = {entry["kind"]: entry for entry in await activities(stack.http, item["id"])}
    assert after["call"]["completed"] is True and after["call"]["completed_at"] is not None
    assert after["meeting"]["completed"] is False
    assert ok(await stack.http.get("/activities", params={"deal_id": item["id"], "completed": False})) == [after["meeting"]]
    [closed] = await timeline(stack.http, item["id"], kind="activity_completed")
    assert closed["data"]["activity_id"] == call["id"] and closed["entry_no"] == 2
    assert closed["text"] == f"Activity “{call['description']}” completed: the item left its stage for CONTACTED"
