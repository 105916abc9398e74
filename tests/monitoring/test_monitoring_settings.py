"""Bad settings of the monitoring rules are refused when the automation is saved, naming the field."""

from __future__ import annotations

from tests.crm import automate, ok, pipeline
from tests.monitoring.monitoring_flows import problem_at, shop


def _rule(name: str, type_: str, **settings) -> dict:
    return {"name": name, "type": type_, "settings": settings}


async def test_bad_settings_are_refused_with_422_naming_the_field_and_change_nothing(stack):
    people = await shop(stack.http)
    manager = people["manager"]["id"]
    flow = await pipeline(stack.http, ["NEW", "PREPARE", "WON"])
    good = {"NEW": {"rules": [_rule("task", "create_task", title="Call {{Deal.Title}}", deadline="+1d")]}}
    before = await automate(stack.http, flow["id"], good)

    bad_rules = [
        _rule("unknown_user", "create_task", title="Call", responsible_id=9999),
        _rule("bad_deadline", "create_task", title="Call", deadline="next tuesday"),
        _rule("empty_title", "create_task", title=""),
        _rule("blank_title", "create_task", title="   "),
        _rule("unknown_observer", "create_task", title="Call", observers=[manager, 8888]),
        _rule("bad_field", "create_task", title="Call", deadline={"field": "birthday", "offset": "-1d"}),
        _rule("no_such_stage", "complete_tasks", stages=["PREPARE", "NOPE"]),
        _rule("no_such_pipeline", "complete_tasks", pipeline_id=777),
        _rule("bad_kind", "schedule_activity", kind="visit", description="Visit"),
        _rule("bad_when", "schedule_activity", description="Call", when={"in_days": 1, "at": "25:00"}),
        _rule("no_description", "schedule_activity", description=""),
        _rule("no_recipients", "notify_employee", user_ids=[], text="Hi"),
        _rule("unknown_recipient", "notify_supervisor", text="Late", recipient_ids=[7777]),
        _rule("unknown_author", "add_timeline_entry", text="Note", author_id=6666),
        _rule("reserved_kind", "add_timeline_entry", text="Note", kind="rule_done"),
        _rule("bad_placeholder", "create_task", title="Call {{Deal.Nickname}}"),
    ]
    response = await stack.http.put(
        f"/pipelines/{flow['id']}/automation", json={"stages": {"NEW": {"rules": bad_rules}}}
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]

    def at(index: int, *path) -> str:
        return problem_at(detail, "rules", index, "settings", *path)["msg"]

    assert "user 9999 does not exist" in at(0, "responsible_id")
    assert "next tuesday" in at(1, "deadline")
    assert at(2, "title")
    assert "blank" in at(3, "title")
    assert "user 8888 does not exist" in at(4, "observers", 1)
    assert "birthday" in at(5, "deadline", "field")
    assert "NOPE" in at(6, "stages", 1)
    assert "777" in at(7, "pipeline_id")
    assert "'call', 'meeting' or 'other'" in at(8, "kind")
    assert "25:00" in at(9, "when", "at")
    assert at(10, "description")
    assert at(11, "user_ids")
    assert "user 7777 does not exist" in at(12, "recipient_ids", 0)
    assert "user 6666 does not exist" in at(13, "author_id")
    assert "rule_done" in at(14, "kind")
    assert "Nickname" in at(15, "title")
    assert len({tuple(problem["loc"]) for problem in detail}) >= len(bad_rules)

    after = ok(await stack.http.get(f"/pipelines/{flow['id']}/automation"))
    assert after == before
