"""Pipelines that change after they are made: renamed, stages added, renamed, reordered and removed (the items in a
removed stage moved where the admin says, as a user's move would), with their bad inputs refused and nothing
changed."""

from __future__ import annotations

import pytest

from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user


async def stages(http, pipeline_id: int) -> list[tuple[str, str, int]]:
    found = ok(await http.get(f"/pipelines/{pipeline_id}"))["stages"]
    return [(stage["code"], stage["name"], stage["position"]) for stage in found]


async def test_a_pipeline_is_renamed_and_its_stages_added_renamed_and_reordered(stack):
    http = stack.http
    flow = await pipeline(http, ["NEW", "WON"])
    assert ok(await http.patch(f"/pipelines/{flow['id']}", json={"name": "Shop sales"}))["name"] == "Shop sales"
    added = ok(await http.post(f"/pipelines/{flow['id']}/stages",
                               json={"code": "CALLED", "name": "Called", "position": 1}), 201)
    assert (added["code"], added["position"]) == ("CALLED", 1)
    ok(await http.post(f"/pipelines/{flow['id']}/stages", json={"code": "LOST", "name": "Lost", "semantic": "failure"}),
       201)
    assert await stages(http, flow["id"]) == [("NEW", "New", 0), ("CALLED", "Called", 1), ("WON", "Won", 2),
                                              ("LOST", "Lost", 3)]
    ok(await http.patch(f"/pipelines/{flow['id']}/stages/WON", json={"name": "Won", "position": 0}))
    ok(await http.patch(f"/pipelines/{flow['id']}/stages/LOST", json={"semantic": "failure", "name": "Lost for good"}))
    assert await stages(http, flow["id"]) == [("WON", "Won", 0), ("NEW", "New", 1), ("CALLED", "Called", 2),
                                              ("LOST", "Lost for good", 3)]


async def test_removing_a_stage_moves_its_items_as_a_user_would_and_takes_its_rules_out(stack):
    http = stack.http
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "CALLED", "WON"])
    await automate(http, flow["id"], {
        "NEW": {"rules": [{"name": "wait", "type": "add_timeline_entry", "delay": "30d", "settings": {"text": "x"}}]},
        "CALLED": {"rules": [{"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Called"}}]},
    })
    items = [await deal(http, flow["id"], manager["id"], title=f"Sofa {n}") for n in range(2)]

    refused = await http.delete(f"/pipelines/{flow['id']}/stages/NEW")
    assert refused.status_code == 409 and "2 deals are in stage New (NEW): say which stage they go to" in refused.json()["detail"][0]["msg"]
    assert refused.json()["detail"][0]["loc"] == ["query", "move_items_to"]
    assert [code for code, _, _ in await stages(http, flow["id"])] == ["NEW", "CALLED", "WON"]

    removed = await http.delete(f"/pipelines/{flow['id']}/stages/NEW", params={"move_items_to": "CALLED"})
    assert removed.status_code == 204, removed.text
    assert await stages(http, flow["id"]) == [("CALLED", "Called", 0), ("WON", "Won", 1)]
    for item in items:
        assert ok(await http.get(f"/deals/{item['id']}"))["stage"] == "CALLED"
        moves = await timeline(http, item["id"], kind="stage_changed")
        assert moves[-1]["text"] == "Stage NEW → CALLED (moved by user)"
        # The left entry's workflow records its cancelled rule when it hears of the move, a moment after it.
        cancelled = await eventually(lambda item_id=item["id"]: _cancelled(http, item_id, "wait"))
        assert cancelled and cancelled[0]["data"]["reason"] == "left"
        assert await eventually(lambda: _done(http, item["id"], "hello"))
    automation = ok(await http.get(f"/pipelines/{flow['id']}/automation"))
    assert "NEW" not in automation["stages"] and automation["version"] == 2
    assert ok(await http.get(f"/pipelines/{flow['id']}/automation/versions"))[0]["note"] == "stage NEW removed"


async def _cancelled(http, item_id: int, rule: str) -> list[dict]:
    return [entry for entry in await timeline(http, item_id, kind="rule_cancelled") if entry["rule_name"] == rule]


async def _done(http, item_id: int, rule: str) -> bool:
    return any(e["rule_name"] == rule and e["kind"] == "rule_done" for e in await timeline(http, item_id))


async def test_a_stage_other_automation_names_is_not_removed(stack):
    http = stack.http
    flow = await pipeline(http, ["NEW", "CALLED", "WON"])
    await automate(http, flow["id"], {"NEW": {"rules": [
        {"name": "skip", "type": "change_stage", "settings": {"stage": "WON"}}]}})
    refused = await http.delete(f"/pipelines/{flow['id']}/stages/WON", params={"move_items_to": "NEW"})
    assert refused.status_code == 409
    assert "automation still names stage Won (WON)" in refused.json()["detail"][0]["msg"]
    assert [code for code, _, _ in await stages(http, flow["id"])] == ["NEW", "CALLED", "WON"]


@pytest.mark.parametrize(("method", "path", "body", "status", "loc"), [
    ("PATCH", "", {"name": ""}, 422, ["body", "name"]),
    ("PATCH", "", {}, 422, ["body", "name"]),
    ("POST", "/stages", {"code": "NEW", "name": "Again"}, 409, ["body", "code"]),
    ("POST", "/stages", {"code": "bad code", "name": "Bad"}, 422, ["body", "code"]),
    ("POST", "/stages", {"code": "LATE", "name": "Late", "position": -1}, 422, ["body", "position"]),
    ("POST", "/stages", {"code": "LATE", "name": "Late", "semantic": "maybe"}, 422, ["body", "semantic"]),
    ("PATCH", "/stages/NOPE", {"name": "x"}, 404, None),
    ("PATCH", "/stages/NEW", {}, 422, ["body"]),
    ("PATCH", "/stages/NEW", {"name": None}, 422, ["body"]),
    ("PATCH", "/stages/NEW", {"code": "OTHER"}, 422, ["body", "code"]),
    ("DELETE", "/stages/NOPE", None, 404, None),
    ("DELETE", "/stages/NEW?move_items_to=NEW", None, 422, ["query", "move_items_to"]),
    ("DELETE", "/stages/NEW?move_items_to=NOPE", None, 422, ["query", "move_items_to"]),
    ("DELETE", "/stages/NEW?move_items_to=bad code", None, 422, ["query", "move_items_to"]),
])
async def test_bad_pipeline_changes_are_refused_naming_the_field_and_change_nothing(
    stack, method, path, body, status, loc
):
    http = stack.http
    flow = await pipeline(http, ["NEW", "WON"])
    before = ok(await http.get(f"/pipelines/{flow['id']}"))
    refused = await http.request(method, f"/pipelines/{flow['id']}{path}", json=body)
    assert refused.status_code == status, refused.text
    if loc is not None:
        assert refused.json()["detail"][0]["loc"][: len(loc)] == loc
    assert ok(await http.get(f"/pipelines/{flow['id']}")) == before


async def test_the_last_stage_is_not_removed_and_members_change_no_pipeline(stack):
    http = stack.http
    flow = await pipeline(http, ["ONLY"])
    refused = await http.delete(f"/pipelines/{flow['id']}/stages/ONLY")
    assert refused.status_code == 409
    assert refused.json()["detail"] == (f"stage Only (ONLY) is the only stage of pipeline Sales ({flow['id']}); "
                                        "a pipeline keeps one")
    assert (await stack.member.patch(f"/pipelines/{flow['id']}", json={"name": "x"})).status_code == 403
    assert (await stack.member.post(f"/pipelines/{flow['id']}/stages", json={"code": "X", "name": "x"})).status_code == 403
    assert (await stack.member.delete(f"/pipelines/{flow['id']}/stages/ONLY")).status_code == 403
    assert (await http.patch("/pipelines/99999", json={"name": "x"})).status_code == 404
