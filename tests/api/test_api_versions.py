"""Automation versions through the API: `ETag` and `If-Match` (no save lost, a stale one refused and nothing
changed), every save kept with who and why, read back, compared rule by rule, restored; and the version each stage
entry runs, on `/pending` and on the `rule_*` timeline entries."""

from __future__ import annotations

import asyncio

import pytest

from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user

NOTE = {"name": "note", "type": "add_timeline_entry", "settings": {"text": "Hello"}}
LATER = {"name": "later", "type": "add_timeline_entry", "delay": "30d", "settings": {"text": "A month on"}}
TASK = {"name": "task", "type": "create_task", "settings": {"title": "Call the client"}}


def first(rules: list[dict]) -> dict:
    return {"stages": {"NEW": {"rules": rules}}}


async def put(http, pipeline_id: int, body: dict, *, version: int | str | None = None, **params):
    headers = {"If-Match": f'"{version}"' if isinstance(version, int) else version} if version is not None else {}
    return await http.put(f"/pipelines/{pipeline_id}/automation", json=body, headers=headers, params=params)


@pytest.fixture
async def sales(stack):
    return await pipeline(stack.http, ["NEW", "CALLED", "WON"])


async def test_the_automation_has_an_etag_and_a_save_based_on_an_older_version_is_a_409(stack, sales):
    http, p = stack.http, sales["id"]
    fresh = await http.get(f"/pipelines/{p}/automation")
    assert fresh.headers["ETag"] == '"0"'
    saved = await put(http, p, {**first([NOTE]), "note": "first rules"}, version=0)
    assert saved.status_code == 200 and saved.headers["ETag"] == '"1"' and saved.json()["version"] == 1

    stale = await put(http, p, first([LATER]), version=0)
    assert stale.status_code == 409 and stale.headers["ETag"] == '"1"'
    assert "version 1" in stale.json()["detail"] and "saved by bootstrap" in stale.json()["detail"]
    assert "based on version 0" in stale.json()["detail"]
    now = ok(await http.get(f"/pipelines/{p}/automation"))
    assert [rule["name"] for rule in now["stages"]["NEW"]["rules"]] == ["note"] and now["version"] == 1

    unchecked = await put(http, p, first([LATER]))
    assert unchecked.status_code == 200 and unchecked.json()["version"] == 2
    assert (await put(http, p, first([NOTE]), version="*")).status_code == 200


@pytest.mark.parametrize("header", ["7", '"seven"', "'3'", '"3', '""', '"-1"', '"99999999999"'])
async def test_a_malformed_if_match_is_a_422_naming_the_header_and_changes_nothing(stack, sales, header):
    http, p = stack.http, sales["id"]
    await put(http, p, first([NOTE]))
    refused = await put(http, p, first([LATER]), version=header)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"] == ["header", "If-Match"]
    assert ok(await http.get(f"/pipelines/{p}/automation"))["version"] == 1


@pytest.mark.parametrize(("params", "body", "loc"), [
    ({"in_flight": "sometimes"}, first([NOTE]), ["query", "in_flight"]),
    ({}, {**first([NOTE]), "note": 5}, ["body", "note"]),
    ({}, {**first([NOTE]), "note": "x" * 501}, ["body", "note"]),
])
async def test_a_bad_in_flight_or_note_is_a_422_and_changes_nothing(stack, sales, params, body, loc):
    refused = await put(stack.http, sales["id"], body, **params)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == loc
    assert ok(await stack.http.get(f"/pipelines/{sales['id']}/automation"))["version"] == 0


async def test_two_saves_from_the_same_version_make_one_200_and_one_409_and_keep_every_rule_of_the_winner(stack, sales):
    http, p = stack.http, sales["id"]
    await put(http, p, first([NOTE]), version=0)
    mine, theirs = first([NOTE, LATER]), first([NOTE, TASK])
    for _ in range(3):
        version = ok(await http.get(f"/pipelines/{p}/automation"))["version"]
        one, two = await asyncio.gather(put(http, p, mine, version=version), put(http, p, theirs, version=version))
        assert sorted([one.status_code, two.status_code]) == [200, 409], (one.text, two.text)
        winner = mine if one.status_code == 200 else theirs
        now = ok(await http.get(f"/pipelines/{p}/automation"))
        assert now["version"] == version + 1
        assert [rule["name"] for rule in now["stages"]["NEW"]["rules"]] == [
            rule["name"] for rule in winner["stages"]["NEW"]["rules"]]
    assert len(ok(await http.get(f"/pipelines/{p}/automation/versions"))) == 4


async def test_versions_are_listed_read_compared_and_restored(stack, sales):
    http, p = stack.http, sales["id"]
    v1 = {"constants": {"Shop": "Oak"}, "stages": {"NEW": {"rules": [NOTE, {**LATER, "delay": "3d"}], "triggers": []}}}
    await put(http, p, {**v1, "note": "the first rules"})
    v2 = {"stages": {
        "NEW": {"rules": [{**LATER, "delay": "7d"}, TASK]},
        "WON": {"triggers": [{"name": "paid", "type": "payment_received"}]},
    }}
    await put(http, p, {**v2, "note": "a week, and a task"})

    listed = ok(await http.get(f"/pipelines/{p}/automation/versions"))
    assert [(row["version"], row["saved_by"], row["note"]) for row in listed] == [
        (2, "bootstrap", "a week, and a task"), (1, "bootstrap", "the first rules")]
    one = ok(await http.get(f"/pipelines/{p}/automation/versions/1"))
    assert one["note"] == "the first rules" and one["automation"]["constants"] == {"Shop": "Oak"}
    assert [rule["name"] for rule in one["automation"]["stages"]["NEW"]["rules"]] == ["note", "later"]

    diff = ok(await http.get(f"/pipelines/{p}/automation/versions/2/diff"))
    assert (diff["from"], diff["to"]) == (1, 2)
    assert {(c["stage"], c["kind"], c["name"], c["change"], tuple(c["fields"])) for c in diff["changes"]} == {
        ("NEW", "rule", "later", "changed", ("delay",)), ("NEW", "rule", "task", "added", ()),
        ("NEW", "rule", "note", "removed", ()), ("WON", "trigger", "paid", "added", ()),
    }
    back = ok(await http.get(f"/pipelines/{p}/automation/versions/1/diff", params={"against": 2}))
    assert ("NEW", "rule", "note", "added") in {(c["stage"], c["kind"], c["name"], c["change"]) for c in back["changes"]}
    from_nothing = ok(await http.get(f"/pipelines/{p}/automation/versions/1/diff"))
    assert from_nothing["from"] == 0 and {c["change"] for c in from_nothing["changes"]} == {"added"}

    restored = await http.post(f"/pipelines/{p}/automation/versions/1/restore", headers={"If-Match": '"2"'})
    assert restored.status_code == 200 and restored.headers["ETag"] == '"3"'
    now = ok(await http.get(f"/pipelines/{p}/automation"))
    assert {key: now[key] for key in ("constants", "stages")} == {key: one["automation"][key] for key in ("constants", "stages")}
    assert ok(await http.get(f"/pipelines/{p}/automation/versions/3"))["note"] == "restored version 1"
    assert ok(await http.get(f"/pipelines/{p}/automation/versions/3/diff", params={"against": 1}))["changes"] == []
    stale = await http.post(f"/pipelines/{p}/automation/versions/2/restore", headers={"If-Match": '"2"'})
    assert stale.status_code == 409 and ok(await http.get(f"/pipelines/{p}/automation"))["version"] == 3


@pytest.mark.parametrize(("path", "status", "loc"), [
    ("/automation/versions/9", 404, None),
    ("/automation/versions/9/diff", 404, None),
    ("/automation/versions/1/diff?against=1", 422, ["query", "against"]),
    ("/automation/versions/1/diff?against=9", 422, ["query", "against"]),
    ("/automation/versions/1/diff?against=-1", 422, ["query", "against"]),
    ("/automation/versions/0", 422, ["path", "version"]),
    ("/automation/versions/abc", 422, ["path", "version"]),
])
async def test_unknown_versions_and_bad_comparisons_are_refused(stack, sales, path, status, loc):
    await put(stack.http, sales["id"], first([NOTE]))
    refused = await stack.http.get(f"/pipelines/{sales['id']}{path}")
    assert refused.status_code == status, refused.text
    if status == 404:
        assert refused.json()["detail"] == f"Pipeline {sales['id']} has no version 9 of its automation"
    if loc is not None:
        assert refused.json()["detail"][0]["loc"] == loc


async def test_restoring_an_unknown_version_or_with_a_bad_choice_is_refused_and_changes_nothing(stack, sales):
    http, p = stack.http, sales["id"]
    await put(http, p, first([NOTE]))
    assert (await http.post(f"/pipelines/{p}/automation/versions/9/restore")).status_code == 404
    bad = await http.post(f"/pipelines/{p}/automation/versions/1/restore", params={"in_flight": "never"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "in_flight"]
    assert (await stack.member.post(f"/pipelines/{p}/automation/versions/1/restore")).status_code == 403
    assert ok(await http.get(f"/pipelines/{p}/automation"))["version"] == 1


async def test_each_entry_names_the_version_it_runs_on_pending_and_on_its_timeline(stack, sales):
    http, p = stack.http, sales["id"]
    manager = await user(http, "Marek")
    await automate(http, p, {"NEW": {"rules": [NOTE, LATER]}})
    item = await deal(http, p, manager["id"])
    await automate(http, p, {"NEW": {"rules": [NOTE, {**LATER, "delay": "60d"}]}})

    async def done() -> list[dict]:
        return [entry for entry in await timeline(http, item["id"]) if entry["kind"] == "rule_done"]

    [note] = await eventually(done)
    assert note["data"]["version"] == 1
    scheduled = [entry for entry in await timeline(http, item["id"]) if entry["kind"] == "rule_scheduled"]
    assert {entry["data"]["version"] for entry in scheduled} == {1}
    [waiting] = ok(await http.get(f"/deals/{item['id']}/pending"))
    assert (waiting["rule"], waiting["version"]) == ("later", 1)
    later = await deal(http, p, manager["id"])
    [waiting] = await eventually(lambda: _pending(http, later["id"]))
    assert waiting["version"] == 2


async def _pending(http, item_id: int) -> list[dict]:
    return ok(await http.get(f"/deals/{item_id}/pending"))
