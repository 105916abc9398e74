"""Changing automation that items are waiting on: with `keep` they go on with the version they entered with, with
`apply` they follow the new one (a removed rule is cancelled and never fires, a changed delay moves the due time),
and the preview counts, before the save, the items the change touches."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user

HELLO = {"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hello"}}


def later(name: str, delay: str) -> dict:
    return {"name": name, "type": "add_timeline_entry", "delay": delay, "settings": {"text": f"{name} {delay}"}}


async def apply(stack, pipeline_id: int, stages: dict, **params) -> dict:
    """The automation saved with `in_flight=apply`; returns once the apply has told every waiting entry."""
    answer = ok(await stack.http.put(f"/pipelines/{pipeline_id}/automation", json={"stages": stages},
                                     params={"in_flight": "apply", **params}))
    assert answer["in_flight"] == "apply"
    await stack.client.get_workflow_handle(answer["apply_workflow_id"]).result()
    return answer


async def kinds_of(http, item_id: int, rule: str) -> list[str]:
    return [entry["kind"] for entry in await timeline(http, item_id) if entry["rule_name"] == rule]


# -- on the time-skipping server: six months in seconds -----------------------------------------------------------


async def waiting_six_months(stack):
    manager = await user(stack.http, "Marek")
    flow = await pipeline(stack.http, ["NEW", "WON"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [HELLO, later("check-in", "6mo")]}})
    item = await deal(stack.http, flow["id"], manager["id"])
    assert await eventually(lambda: _has(stack.http, item["id"], "hello", "rule_done"))
    return flow, item


async def _has(http, item_id: int, rule: str, kind: str) -> bool:
    return kind in await kinds_of(http, item_id, rule)


async def test_a_rule_removed_with_keep_still_fires_once(ts_stack):
    flow, item = await waiting_six_months(ts_stack)
    saved = ok(await ts_stack.http.put(f"/pipelines/{flow['id']}/automation", json={"stages": {"NEW": {"rules": [HELLO]}}}))
    assert saved["in_flight"] == "keep"
    await ts_stack.env.sleep(timedelta(days=190))
    assert await eventually(lambda: _has(ts_stack.http, item["id"], "check-in", "rule_done"))
    assert (await kinds_of(ts_stack.http, item["id"], "check-in")).count("rule_done") == 1


async def test_a_rule_removed_with_apply_never_fires_and_the_timeline_says_why(ts_stack):
    flow, item = await waiting_six_months(ts_stack)
    assert [rule["rule"] for rule in ok(await ts_stack.http.get(f"/deals/{item['id']}/pending"))] == ["check-in"]

    await apply(ts_stack, flow["id"], {"NEW": {"rules": [HELLO]}})

    # The apply has signalled the entry; the entry records what the version did to it right after.
    [cancelled] = await eventually(lambda: timeline(ts_stack.http, item["id"], kind="rule_cancelled"))
    assert (cancelled["rule_name"], cancelled["data"]["reason"], cancelled["data"]["version"]) == ("check-in", "removed", 2)
    assert "version 2" in cancelled["text"]
    assert ok(await ts_stack.http.get(f"/deals/{item['id']}/pending")) == []
    await ts_stack.env.sleep(timedelta(days=190))
    assert "rule_done" not in await kinds_of(ts_stack.http, item["id"], "check-in")
    assert ok(await ts_stack.http.get(f"/deals/{item['id']}"))["stage"] == "NEW"


async def test_a_delay_changed_with_apply_is_rescheduled_and_fires_at_the_new_time(ts_stack):
    flow, item = await waiting_six_months(ts_stack)
    [entered] = await timeline(ts_stack.http, item["id"], kind="stage_changed")
    entered_at = datetime.fromisoformat(entered["at"])

    await apply(ts_stack, flow["id"], {"NEW": {"rules": [HELLO, later("check-in", "1mo"), later("added", "1d")]}})

    [moved] = await eventually(lambda: timeline(ts_stack.http, item["id"], kind="rule_rescheduled"))
    assert moved["data"]["version"] == 2 and "version 2" in moved["text"]
    old, new = datetime.fromisoformat(moved["data"]["from"]), datetime.fromisoformat(moved["data"]["to"])
    assert 180 <= (old - entered_at).days <= 185 and 28 <= (new - entered_at).days <= 31
    [pending] = ok(await ts_stack.http.get(f"/deals/{item['id']}/pending"))
    assert (pending["rule"], datetime.fromisoformat(pending["due"]), pending["version"]) == ("check-in", new, 2)
    await ts_stack.env.sleep(timedelta(days=35))
    assert await eventually(lambda: _has(ts_stack.http, item["id"], "check-in", "rule_done"))
    [done] = [entry for entry in await timeline(ts_stack.http, item["id"])
              if entry["kind"] == "rule_done" and entry["rule_name"] == "check-in"]
    assert abs(datetime.fromisoformat(done["at"]) - new) < timedelta(minutes=5)
    assert await kinds_of(ts_stack.http, item["id"], "added") == []


# -- the preview counts what apply then does -------------------------------------------------------------------


async def test_the_preview_counts_the_items_that_apply_then_cancels_and_reschedules(stack):
    http = stack.http
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "CALLED", "OFFER", "WON"])
    v1 = {code: {"rules": [HELLO, later("soon", "60d"), later("check", "60d")]} for code in ("NEW", "CALLED", "OFFER")}
    await automate(http, flow["id"], v1)
    placed = {"NEW": 3, "CALLED": 2, "OFFER": 4}
    items: dict[str, list[int]] = {code: [] for code in placed}
    for code, count in placed.items():
        for _ in range(count):
            item = await deal(http, flow["id"], manager["id"])
            if code != "NEW":
                ok(await http.post(f"/deals/{item['id']}/move", json={"stage": code}))
            items[code].append(item["id"])
    for ids in items.values():
        for item_id in ids:
            assert await eventually(lambda: _has(http, item_id, "hello", "rule_done"))
    draft = {
        "NEW": {"rules": [HELLO, later("check", "60d")]},
        "CALLED": {"rules": [HELLO, later("soon", "60d"), later("check", "90d"), later("new", "1d")]},
        "OFFER": {"rules": [HELLO, later("check", "60d")]},
    }

    preview = ok(await http.post(f"/pipelines/{flow['id']}/automation/preview", json={"stages": draft}))

    assert preview["base_version"] == 1
    waiting = {(row["stage"], row["rule"], row["change"]): (row["items"], sorted(row["item_ids"]))
               for row in preview["waiting"]}
    assert waiting == {
        ("NEW", "soon", "removed"): (3, sorted(items["NEW"])),
        ("CALLED", "check", "changed"): (2, sorted(items["CALLED"])),
        ("OFFER", "soon", "removed"): (4, sorted(items["OFFER"])),
    }
    assert ("CALLED", "rule", "new", "added") in {(c["stage"], c["kind"], c["name"], c["change"]) for c in preview["changes"]}
    assert ok(await http.get(f"/pipelines/{flow['id']}/automation"))["version"] == 1

    await apply(stack, flow["id"], draft)

    async def applied() -> tuple[dict, dict] | None:
        cancelled, rescheduled = {}, {}
        for code, ids in items.items():
            for item_id in ids:
                for entry in await timeline(http, item_id):
                    if entry["kind"] == "rule_cancelled" and entry["data"].get("reason") == "removed":
                        cancelled.setdefault((code, entry["rule_name"]), []).append(item_id)
                    if entry["kind"] == "rule_rescheduled" and entry["data"].get("version") == 2:
                        rescheduled.setdefault((code, entry["rule_name"]), []).append(item_id)
        counted = ({key: len(ids) for key, ids in cancelled.items()},
                   {key: len(ids) for key, ids in rescheduled.items()})
        return counted if counted == ({("NEW", "soon"): 3, ("OFFER", "soon"): 4}, {("CALLED", "check"): 2}) else None

    # The apply has signalled every entry; each records what the version did to it right after.
    assert await eventually(applied)
    for item_id in items["OFFER"]:
        assert [rule["rule"] for rule in ok(await http.get(f"/deals/{item_id}/pending"))] == ["check"]
    for item_id in items["CALLED"]:
        assert [(rule["rule"], rule["version"]) for rule in ok(await http.get(f"/deals/{item_id}/pending"))] == [
            ("soon", 2), ("check", 2)]
    again = ok(await http.post(f"/pipelines/{flow['id']}/automation/preview", json={"stages": draft}))
    assert again["waiting"] == [] and again["base_version"] == 2
