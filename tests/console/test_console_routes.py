"""The console's doors: no page without a session, no change without its CSRF token, no 5xx from bad input."""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import unquote

import httpx
import pytest

from tests.console.support import form_values, signed_in
from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from tests.stacks import ADMIN_KEY, MEMBER_KEY


@pytest.fixture
async def crm(stack):
    manager = await user(stack.http, "Marek Manager")
    sales = await pipeline(stack.http, ["NEW", "WON"])
    await automate(stack.http, sales["id"], {"NEW": {"rules": [
        {"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hello {{Deal.Title}}"}}]}})
    item = await deal(stack.http, sales["id"], manager["id"], title="Sofa")
    return {"pipeline": sales, "deal": item, "manager": manager}


def routes(crm) -> list[tuple[str, str]]:
    p, d = crm["pipeline"]["id"], crm["deal"]["id"]
    return [
        ("GET", "/ui/"), ("GET", "/ui/pipelines"), ("GET", f"/ui/pipelines/{p}"), ("GET", f"/ui/pipelines/{p}/items"),
        ("GET", f"/ui/pipelines/{p}/automation/rules/new?stage=NEW"), ("GET", f"/ui/pipelines/{p}/automation/rules/NEW/hello"),
        ("GET", f"/ui/pipelines/{p}/automation/triggers/new?stage=NEW"), ("GET", f"/ui/items/deal/{d}"),
        ("GET", f"/ui/items/deal/{d}/pending"), ("GET", "/ui/documents/1/pdf"), ("GET", f"/ui/pipelines/{p}/simulate"),
        ("GET", "/ui/simulations/0123456789abcdef/documents/1/pdf"),
        ("POST", "/ui/logout"), ("POST", f"/ui/pipelines/{p}/automation/rules"), ("POST", f"/ui/pipelines/{p}/automation/triggers"),
        ("POST", f"/ui/pipelines/{p}/automation/rules/NEW/hello/delete"), ("POST", f"/ui/pipelines/{p}/automation/rules/NEW/order"),
        ("POST", f"/ui/pipelines/{p}/items"), ("POST", f"/ui/items/deal/{d}/move"), ("POST", f"/ui/pipelines/{p}/simulate"),
        ("GET", f"/ui/pipelines/{p}/stages"), ("POST", "/ui/pipelines"), ("POST", f"/ui/pipelines/{p}/rename"),
        ("POST", f"/ui/pipelines/{p}/stages"), ("POST", f"/ui/pipelines/{p}/stages/NEW"),
        ("POST", f"/ui/pipelines/{p}/stages/NEW/remove"), ("POST", f"/ui/pipelines/{p}/automation/rules/simulate"),
        ("POST", f"/ui/items/deal/{d}/fields"), ("POST", f"/ui/items/deal/{d}/comments"),
        ("POST", f"/ui/items/deal/{d}/archive"), ("POST", f"/ui/items/deal/{d}/restore"),
        ("POST", f"/ui/items/deal/{d}/simulate"), ("GET", "/ui/failures"), ("POST", "/ui/failures/retry"),
        ("GET", "/ui/operations/0123456789abcdef"), ("GET", "/ui/people"), ("POST", "/ui/people"),
        ("GET", "/ui/clients"), ("POST", "/ui/clients"),
        ("GET", f"/ui/deals/{d}"), ("GET", f"/ui/leads/{d}"),
    ]


async def test_every_console_route_refuses_a_request_without_a_session(stack, crm):
    for method, path in routes(crm):
        response = await stack.anon.request(method, path, data={"stage": "WON"}, follow_redirects=False)
        if method == "GET":
            assert (response.status_code, response.headers.get("location")) == (303, "/ui/login"), (method, path)
        else:
            assert response.status_code == 401, (method, path, response.status_code)
    assert ok(await stack.http.get(f"/deals/{crm['deal']['id']}"))["stage"] == "NEW"


async def test_a_form_posted_without_the_csrf_token_is_refused_and_changes_nothing(stack, crm):
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        for method, path in routes(crm):
            if method == "POST":
                response = await client.post(path, data={"stage": "WON", "csrf_token": "0" * 40})
                assert response.status_code == 403, (path, response.status_code)
                assert "CSRF" in response.json()["detail"]
        moved = await client.post(f"/ui/items/deal/{crm['deal']['id']}/move", data={"stage": "WON"},
                                  headers={"X-CSRF-Token": csrf})
        assert moved.json() == {"moved": True, "stage": "WON"}
    assert ok(await stack.http.get(f"/deals/{crm['deal']['id']}"))["stage"] == "WON"
    rules = ok(await stack.http.get(f"/pipelines/{crm['pipeline']['id']}/automation"))["stages"]["NEW"]["rules"]
    assert [rule["name"] for rule in rules] == ["hello"]


async def test_a_member_sees_and_moves_and_reads_rules_but_does_not_edit_automation(stack, crm):
    p = crm["pipeline"]["id"]
    async with signed_in(stack, MEMBER_KEY) as (client, csrf):
        assert (await client.get(f"/ui/pipelines/{p}")).status_code == 200
        read = await client.get(f"/ui/pipelines/{p}/automation/rules/NEW/hello")
        assert read.status_code == 200 and '<fieldset disabled class="read-only">' in read.text
        assert "Hello {{Deal.Title}}" in html.unescape(read.text) and "Save rule" not in read.text
        assert (await client.get(f"/ui/pipelines/{p}/automation/rules/new", params={"stage": "NEW"})).status_code == 403
        refused = await client.post(f"/ui/pipelines/{p}/automation/rules", data={**form_values(read.text),
                                                                               "csrf_token": csrf})
        assert refused.status_code == 403
        refused = await client.post(f"/ui/pipelines/{p}/automation/rules/NEW/hello/delete", data={"csrf_token": csrf})
        assert refused.status_code == 403
        for path, data in [("/ui/pipelines", {"name": "Mine", "entity_type": "deal", "stage_name": "One", "stage_code": ""}),
                           (f"/ui/pipelines/{p}/rename", {"name": "Mine"}),
                           (f"/ui/pipelines/{p}/stages", {"name": "Extra"}),
                           (f"/ui/pipelines/{p}/stages/NEW", {"name": "Renamed"}),
                           (f"/ui/pipelines/{p}/stages/WON/remove", {"move_items_to": "NEW"}),
                           (f"/ui/pipelines/{p}/automation/rules/simulate", {"stage": "NEW", "type": "add_timeline_entry"}),
                           ("/ui/failures/retry", {"dry_run": "1"})]:
            refused = await client.post(path, data={**data, "csrf_token": csrf}, headers={"Accept": "text/html"})
            assert refused.status_code == 403 and "Not for this key" in refused.text, (path, refused.status_code)
        moved = await client.post(f"/ui/items/deal/{crm['deal']['id']}/move", data={"stage": "WON", "csrf_token": csrf})
        assert moved.json()["moved"] is True
    pipelines = ok(await stack.http.get("/pipelines"))
    assert [(row["name"], [stage["name"] for stage in row["stages"]]) for row in pipelines] == [("Sales", ["New", "Won"])]


async def test_a_wrong_key_gets_no_session_and_signing_out_ends_it(stack, crm):
    async with signed_in(stack, ADMIN_KEY) as (client, _):
        page = await client.get("/ui/pipelines")
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        kept = dict(client.cookies)
        assert (await client.post("/ui/logout", data={"csrf_token": csrf})).status_code == 303
        assert (await client.get("/ui/pipelines")).status_code == 303
        client.cookies.update(kept)  # the old cookie, replayed after signing out
        assert (await client.get("/ui/pipelines")).status_code == 303
        login = await client.get("/ui/login")
        token = login.text.split('name="login_token" value="')[1].split('"')[0]
        wrong = await client.post("/ui/login", data={"api_key": "not-a-key", "login_token": token})
        assert wrong.status_code == 401 and "not valid" in wrong.text and "stageflow_console=" not in wrong.headers.get("set-cookie", "")
        no_token = await client.post("/ui/login", data={"api_key": ADMIN_KEY})
        assert no_token.status_code == 403


async def test_bad_console_input_is_a_4xx_and_changes_nothing(stack, crm):
    p, d = crm["pipeline"]["id"], crm["deal"]["id"]
    before = ok(await stack.http.get(f"/pipelines/{p}/automation"))
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        for path, data in [
            (f"/ui/pipelines/{p}/automation/rules", {"stage": "NOPE", "type": "add_timeline_entry", "name": "x"}),
            (f"/ui/pipelines/{p}/automation/rules", {"stage": "NEW", "type": "no_such_type", "name": "x"}),
            (f"/ui/pipelines/{p}/automation/rules", {"stage": "NEW", "type": "add_timeline_entry", "name": "x", "condition": "{"}),
            (f"/ui/pipelines/{p}/automation/rules", {"stage": "NEW", "type": "add_timeline_entry", "name": "x",
                                                     "settings.text": "t",
                                                     "condition": '{"field": "Deal.Amount", "op": ">", "value": ""}'}),
            (f"/ui/pipelines/{p}/automation/rules", {"stage": "NEW", "type": "add_timeline_entry", "name": "a\x00b"}),
            (f"/ui/pipelines/{p}/automation/rules/NEW/nope/delete", {}),
            (f"/ui/pipelines/{p}/automation/rules/NEW/order", {"order": "3,x"}),
            (f"/ui/pipelines/{p}/automation/rules/NEW/order", {"order": "[" * 5000}),
            (f"/ui/pipelines/{p}/automation/rules", {"stage": "NEW", "type": "add_timeline_entry", "name": "x",
                                                     "settings.text": "t", "condition": "[" * 5000}),
            (f"/ui/pipelines/{p}/automation/rules", {"stage": "NEW", "type": "webhook", "name": "x",
                                                     "settings.url": "https://example.com/h", "settings.headers": "[" * 5000}),
            (f"/ui/items/deal/{d}/move", {"stage": "NOPE"}),
            (f"/ui/items/deal/{d}/move", {"stage": "bad stage"}),
            ("/ui/items/deal/99999/move", {"stage": "WON"}),
            (f"/ui/pipelines/{p}/simulate", {"title": "S", "script": "+1d fly away", "horizon": "3y"}),
            ("/ui/pipelines/99999/automation/rules", {"stage": "NEW"}),
            (f"/ui/pipelines/{p}/automation/rules", {"stage": "NEW", "type": "add_timeline_entry", "name": "x",
                                                     "settings.text": "t", "delay_kind": "sometime"}),
            (f"/ui/pipelines/{p}/automation/rules", {"stage": "NEW", "type": "add_timeline_entry", "name": "x",
                                                     "settings.text": "t", "delay_kind": "clock"}),
            (f"/ui/pipelines/{p}/automation/rules/simulate", {"stage": "NEW", "type": "add_timeline_entry", "name": "x",
                                                              "settings.text": "t", "sample_horizon": "3y"}),
            (f"/ui/pipelines/{p}/automation/rules/simulate", {"stage": "NEW", "type": "add_timeline_entry", "name": "x",
                                                              "settings.text": "t", "sample_script": "+1d dance"}),
            (f"/ui/pipelines/{p}/automation/rules/simulate", {"stage": "NEW", "type": "add_timeline_entry", "name": "x",
                                                              "settings.text": "t", "sample_responsible_id": "99999"}),
            (f"/ui/pipelines/{p}/automation/triggers/simulate", {"stage": "NEW", "type": "nope", "name": "x"}),
            ("/ui/pipelines", {"name": "", "entity_type": "deal", "stage_name": "One", "stage_code": ""}),
            ("/ui/pipelines", {"name": "P", "entity_type": "thing", "stage_name": "One", "stage_code": ""}),
            ("/ui/pipelines", {"name": "P", "entity_type": "deal", "stage_name": "One", "stage_code": "bad code"}),
            ("/ui/pipelines", {"name": "P", "entity_type": "deal"}),
            ("/ui/pipelines", {"name": "P", "entity_type": "deal", "stage_name": "One", "stage_code": "",
                               "stage_kind": "maybe"}),
            (f"/ui/pipelines/{p}/rename", {"name": ""}),
            (f"/ui/pipelines/{p}/rename", {"name": "x" * 300}),
            (f"/ui/pipelines/{p}/stages", {"name": "Again", "code": "NEW"}),
            (f"/ui/pipelines/{p}/stages", {"name": "", "code": "EMPTY"}),
            (f"/ui/pipelines/{p}/stages", {"name": "Lower", "code": "lower"}),
            (f"/ui/pipelines/{p}/stages", {"name": "Odd", "semantic": "weird"}),
            (f"/ui/pipelines/{p}/stages/NOPE", {"name": "Nope"}),
            (f"/ui/pipelines/{p}/stages/NEW", {"semantic": "weird"}),
            (f"/ui/pipelines/{p}/stages/NEW", {"name": ""}),
            (f"/ui/pipelines/{p}/stages/NEW/remove", {}),
            (f"/ui/pipelines/{p}/stages/NEW/remove", {"move_items_to": "NOPE"}),
            (f"/ui/pipelines/{p}/stages/NEW/remove", {"move_items_to": "NEW"}),
            (f"/ui/pipelines/{p}/stages/NOPE/remove", {"move_items_to": "NEW"}),
            (f"/ui/items/deal/{d}/fields", {"title": "Sofa", "amount": "lots", "responsible_id": "1"}),
            (f"/ui/items/deal/{d}/fields", {"title": "", "responsible_id": "1"}),
            (f"/ui/items/deal/{d}/comments", {"text": ""}),
            (f"/ui/items/deal/{d}/restore", {}),
            (f"/ui/items/deal/{d}/simulate", {"horizon": "9y"}),
            ("/ui/failures/retry", {"rate": "fast"}),
            ("/ui/failures/retry", {"rate": "500", "dry_run": "1"}),
            ("/ui/failures/retry", {"since": "someday"}),
            ("/ui/failures/retry", {"since": "2026-12-06", "until": "2026-12-01"}),
            ("/ui/failures/retry", {"automation": "newest"}),
            ("/ui/failures/retry", {"pipeline_id": "-3"}),
        ]:
            response = await client.post(path, data={**data, "csrf_token": csrf})
            assert 400 <= response.status_code < 500, (path, data, response.status_code, response.text[:300])
        for path in ["/ui/failures?since=x", "/ui/failures?until=2020-01-01&since=2021-01-01", "/ui/operations/nope",
                     "/ui/operations/0123456789abcdef", "/ui/operations/0123456789abcdef/progress",
                     f"/ui/pipelines/{p}/automation/rules/NEW/nope", "/ui/pipelines/99999", f"/ui/items/lead/{d}",
                     f"/ui/pipelines/{p}/automation/rules/new?stage=bad", "/ui/documents/99999/pdf", "/ui/items/deal/0"]:
            response = await client.get(path)
            assert 400 <= response.status_code < 500, (path, response.status_code)
    assert ok(await stack.http.get(f"/pipelines/{p}/automation")) == before
    seen = ok(await stack.http.get(f"/deals/{d}"))
    assert (seen["stage"], seen["title"], seen["amount"], seen["archived_at"]) == ("NEW", "Sofa", None, None)
    assert kinds_of(await timeline(stack.http, d)) == sorted(["stage_changed", "rule_scheduled", "comment", "rule_done"])
    pipelines = ok(await stack.http.get("/pipelines"))
    assert [(row["name"], [(stage["code"], stage["name"], stage["semantic"]) for stage in row["stages"]])
            for row in pipelines] == [("Sales", [("NEW", "New", "process"), ("WON", "Won", "process")])]


def kinds_of(entries: list[dict]) -> list[str]:
    return sorted(entry["kind"] for entry in entries)


async def test_rules_are_reordered_and_deleted_through_the_console_and_saved_whole(stack, crm):
    p = crm["pipeline"]["id"]
    ok(await stack.http.put(f"/pipelines/{p}/automation", json={"stages": {"NEW": {"rules": [
        {"name": "first", "type": "add_timeline_entry", "settings": {"text": "1"}},
        {"name": "second", "type": "add_timeline_entry", "settings": {"text": "2"}},
        {"name": "third", "type": "add_timeline_entry", "start": "after_previous", "settings": {"text": "{{Rule.first.entry_id}}"}},
    ]}}}))
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        moved = await client.post(f"/ui/pipelines/{p}/automation/rules/NEW/order",
                                 data={"order": '["second", "first", "third"]', "csrf_token": csrf})
        assert moved.json() == {"order": ["second", "first", "third"]}
        board = await client.get(f"/ui/pipelines/{p}")
        assert board.text.index("second") < board.text.index("first") < board.text.index("third")
        assert "after the previous rule" not in board.text.split("third")[0]
        assert '<span class="semantic semantic-process">in progress</span>' in board.text  # the stage's kind in words
        deleted = await client.post(f"/ui/pipelines/{p}/automation/rules/NEW/first/delete", data={"csrf_token": csrf})
        assert deleted.status_code == 422 and "first" in deleted.text  # third reads Rule.first: nothing is saved
    rules = ok(await stack.http.get(f"/pipelines/{p}/automation"))["stages"]["NEW"]["rules"]
    assert [rule["name"] for rule in rules] == ["second", "first", "third"]


async def test_the_console_creates_an_item_with_the_checks_and_the_idempotency_key_of_the_api(stack, crm):
    """The board's form and `POST /deals` are one use case: the same refusal for an unknown contact, the same item for
    the same Idempotency-Key, whichever of the two is called first."""
    p, manager = crm["pipeline"]["id"], crm["manager"]["id"]
    deals_before = ok(await stack.http.get("/deals"))

    refused = await stack.http.post("/deals", json={
        "title": "Armchair", "pipeline_id": p, "responsible_id": manager, "contact_id": 99999})
    assert refused.status_code == 422
    [problem] = refused.json()["detail"]
    assert (problem["loc"], problem["msg"]) == (["body", "contact_id"], "contact 99999 does not exist")
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        form = {"title": "Armchair", "responsible_id": str(manager), "contact_id": "99999", "csrf_token": csrf}
        shown = await client.post(f"/ui/pipelines/{p}/items", data=form)
        assert shown.status_code == 422 and "Contact: contact 99999 does not exist" in shown.text
        assert 'value="Armchair"' in shown.text
        assert ok(await stack.http.get("/deals")) == deals_before

        created = ok(await stack.http.post("/deals", headers={"Idempotency-Key": "form-7"}, json={
            "title": "Armchair", "pipeline_id": p, "responsible_id": manager}), 201)
        form = {"title": "Armchair", "responsible_id": str(manager), "idempotency_key": "form-7", "csrf_token": csrf}
        for _ in range(2):
            again = await client.post(f"/ui/pipelines/{p}/items", data=form)
            assert (again.status_code, again.headers["location"]) == (303, f"/ui/items/deal/{created['id']}")
        board = await client.get(f"/ui/pipelines/{p}/items")
        key = board.text.split('name="idempotency_key" value="')[1].split('"')[0]
        first = await client.post(f"/ui/pipelines/{p}/items", data={**form, "title": "Lamp", "idempotency_key": key})
        second = await client.post(f"/ui/pipelines/{p}/items", data={**form, "title": "Lamp", "idempotency_key": key})
        assert first.headers["location"] == second.headers["location"] != f"/ui/items/deal/{created['id']}"
    titles = [item["title"] for item in ok(await stack.http.get("/deals"))]
    assert titles.count("Armchair") == 1 and titles.count("Lamp") == 1


@pytest.mark.parametrize("stage, problem", [
    ("NOPE", "Stage: "), ("won", "Stage: "), ("W" * 60, None),
])
async def test_an_item_made_in_a_stage_that_is_not_the_pipelines_is_refused_at_the_stage(stack, crm, stage, problem):
    p, manager = crm["pipeline"]["id"], crm["manager"]["id"]
    deals_before = ok(await stack.http.get("/deals"))
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        shown = await client.post(f"/ui/pipelines/{p}/items", data={
            "title": "Desk", "responsible_id": str(manager), "stage": stage, "csrf_token": csrf})
        assert shown.status_code == 422
        if problem:
            assert problem in shown.text and 'value="Desk"' in shown.text
    assert ok(await stack.http.get("/deals")) == deals_before


async def test_the_board_makes_an_item_in_the_stage_chosen_and_runs_that_stages_rules_only(stack, crm):
    p, manager = crm["pipeline"]["id"], crm["manager"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        board = await client.get(f"/ui/pipelines/{p}/items")
        assert '<option value="WON" >Won</option>' in board.text
        made = await client.post(f"/ui/pipelines/{p}/items", data={
            "title": "Desk", "responsible_id": str(manager), "stage": "WON", "csrf_token": csrf})
        first = await client.post(f"/ui/pipelines/{p}/items", data={
            "title": "Chair", "responsible_id": str(manager), "stage": "", "csrf_token": csrf})
        assert made.status_code == first.status_code == 303
    desk, chair = (int(answer.headers["location"].rsplit("/", 1)[1]) for answer in (made, first))
    assert ok(await stack.http.get(f"/deals/{desk}"))["stage"] == "WON"
    assert ok(await stack.http.get(f"/deals/{chair}"))["stage"] == "NEW"
    await eventually(lambda: timeline(stack.http, chair, kind="comment"))
    kinds = [entry["kind"] for entry in await timeline(stack.http, desk)]
    assert "stage_changed" in kinds and "comment" not in kinds


async def test_clients_are_listed_and_added_in_the_console_and_a_deal_can_be_for_one(stack, crm):
    p, d = crm["pipeline"]["id"], crm["deal"]["id"]
    async with signed_in(stack, MEMBER_KEY) as (client, csrf):
        empty = html.unescape((await client.get("/ui/clients")).text)
        assert "No clients yet: add the first one below." in empty and '<a href="/ui/clients">Clients</a>' in empty
        board = html.unescape((await client.get(f"/ui/pipelines/{p}/items")).text)
        assert 'No clients yet: <a href="/ui/clients">add one</a>.' in board
        refused = await client.post("/ui/clients", data={"csrf_token": csrf, "name": "Anna Nowak",
                                                         "email": "anna-at-example", "phone": "12"})
        assert refused.status_code == 422
        said = html.unescape(refused.text)
        assert "E-mail: is not an e-mail address such as name@example.com" in said
        assert "Phone: is not a phone number such as +48 601 234 567" in said
        assert form_values(refused.text)["email"] == "anna-at-example"
        assert ok(await stack.http.get("/contacts")) == []
        no_number = await client.post("/ui/clients", data={"csrf_token": csrf, "name": "Anna Nowak",
                                                           "whatsapp": "call me"})
        assert no_number.status_code == 422
        assert "Messengers: " in html.unescape(no_number.text) and form_values(no_number.text)["whatsapp"] == "call me"
        added = await client.post("/ui/clients", data={"csrf_token": csrf, "name": "Anna Nowak",
                                                       "email": "anna@example.com", "phone": "+48 601 234 567",
                                                       "telegram": "424242", "whatsapp": "+48 601 234 567"})
        assert added.status_code == 303
        listed = html.unescape((await client.get(added.headers["location"])).text)
        assert "Anna Nowak added." in listed and "anna@example.com" in listed
        [anna] = ok(await stack.http.get("/contacts"))
        assert (anna["name"], anna["email"], anna["phone"]) == ("Anna Nowak", "anna@example.com", "+48 601 234 567")
        assert anna["channels"] == {"telegram": "424242", "whatsapp": "+48601234567"}
        assert "telegram, whatsapp" in listed
        item_page = (await client.get(f"/ui/items/deal/{d}")).text
        assert f'<option value="{anna["id"]}" >Anna Nowak</option>' in item_page


async def test_removing_a_stage_asks_naming_its_items_and_rules_and_an_older_version_says_to_add_it_again(stack, crm):
    p = crm["pipeline"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        ok(await stack.http.patch(f"/pipelines/{p}/stages/NEW", json={"name": "Tom's R&D"}))
        page = html.unescape((await client.get(f"/ui/pipelines/{p}/stages")).text)
        question = page.split("/stages/NEW/remove", 1)[1].split("return confirm(", 1)[1].split(")'", 1)[0]
        assert json.loads(question) == (
            "Remove the stage Tom's R&D? Its 1 deal moves to the stage you chose. Its rules and triggers (hello) leave "
            "the automation as a new version; restoring an older version needs the stage added again first.")
        before = ok(await stack.http.get(f"/pipelines/{p}/automation"))["version"]
        removed = await client.post(f"/ui/pipelines/{p}/stages/NEW/remove", data={"csrf_token": csrf,
                                                                                 "move_items_to": "WON"})
        assert removed.status_code == 303
        restored = await client.post(f"/ui/pipelines/{p}/versions/{before}/restore", data={"csrf_token": csrf})
        said = html.unescape(restored.text)
        assert restored.status_code == 409
        assert (f"Version {before} has rules or triggers in stage NEW, removed since. Add it again on the Stages page "
                f"with the same code, then restore version {before}.") in said
        assert "body.stages" not in said
    assert ok(await stack.http.get(f"/pipelines/{p}/automation"))["version"] == before + 1


async def test_every_page_names_the_consoles_icon_and_the_icon_is_served(stack, crm):
    async with signed_in(stack, ADMIN_KEY) as (client, _csrf):
        page = await client.get("/ui/people")
        assert '<link rel="icon" href="/ui/static/favicon.svg"' in page.text
    icon = await stack.anon.get("/ui/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")


async def test_a_new_pipelines_stages_take_their_kinds_from_the_form(stack):
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        form = await client.get("/ui/pipelines")
        assert form.text.count('name="stage_kind"') == 3 and '<option value="success" selected>won</option>' in form.text
        made = await client.post("/ui/pipelines", data={
            "csrf_token": csrf, "name": "Orders", "entity_type": "deal",
            "stage_name": ["New", "Won", "Lost", ""], "stage_code": ["", "", "", ""],
            "stage_kind": ["process", "success", "failure", "process"]})
        assert made.status_code == 303
        refused = await client.post("/ui/pipelines", data={
            "csrf_token": csrf, "name": "Odd", "entity_type": "deal", "stage_name": ["New", "Later"],
            "stage_code": ["", ""], "stage_kind": ["process", "someday"]})
        assert refused.status_code == 422 and "Stage 2, kind: " in refused.text and 'value="Later"' in refused.text
    [orders] = [row for row in ok(await stack.http.get("/pipelines")) if row["name"] == "Orders"]
    assert [(stage["code"], stage["semantic"]) for stage in orders["stages"]] == [
        ("NEW", "process"), ("WON", "success"), ("LOST", "failure")]
    assert [row["name"] for row in ok(await stack.http.get("/pipelines"))] == ["Orders"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        moved = await client.post(f"/ui/pipelines/{orders['id']}/stages/LOST", data={"csrf_token": csrf, "move": "up"})
        said = html.unescape(unquote((await client.get(moved.headers["location"])).text))
        assert "Saved: Lost moved one place earlier" in said
        assert '<button type="submit" name="move" value="up" title="one place earlier" disabled>' in said
    assert [stage["code"] for stage in ok(await stack.http.get(f"/pipelines/{orders['id']}"))["stages"]] == [
        "NEW", "LOST", "WON"]


def create_task_form(csrf: str, responsible: int) -> dict[str, str]:
    """The new-rule form of a create_task rule on WON that starts at once, filled but for its name."""
    return {"csrf_token": csrf, "stage": "WON", "type": "create_task", "delay_kind": "now",
            "settings.title": "Call {{Deal.Title}}", "settings.responsible_id": str(responsible)}


def field_block(page: str, name: str) -> str:
    """The HTML of one form field's block (its label, input, hint and error)."""
    return page.split(f'data-field="{name}"', 1)[1].split("</div>", 1)[0]


async def test_a_rules_settings_that_name_people_offer_them_by_name_and_take_one_per_line(stack, crm):
    p, manager = crm["pipeline"]["id"], crm["manager"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        form = await client.get(f"/ui/pipelines/{p}/automation/rules/new", params={"stage": "WON", "type": "create_task"})
        responsible = form.text.split('name="settings.responsible_id"', 1)[1].split(">", 1)[0]
        assert 'list="people"' in responsible
        assert f'<datalist id="people"><option value="{manager}">Marek Manager</option></datalist>' in form.text
        assert '<textarea id="f-settings.observers" name="settings.observers"' in form.text
        fields = {**create_task_form(csrf, manager), "name": "follow up"}
        refused = await client.post(f"/ui/pipelines/{p}/automation/rules",
                                    data={**fields, "settings.observers": f"{manager}\nsomeone"})
        assert refused.status_code == 422 and 'data-field="settings.observers"' in refused.text
        assert "Observers" in field_block(refused.text, "settings.observers")
        saved = await client.post(f"/ui/pipelines/{p}/automation/rules",
                                  data={**fields, "settings.observers": f"{manager}\n\n{manager}"})
        assert saved.status_code == 303, saved.text
        reopened = form_values((await client.get(f"/ui/pipelines/{p}/automation/rules/WON/follow up")).text)
        assert (reopened["settings.responsible_id"], reopened["settings.observers"]) == (
            "Marek Manager", "Marek Manager\nMarek Manager")
        unchanged = await client.post(f"/ui/pipelines/{p}/automation/rules", data={**reopened, "csrf_token": csrf})
        assert unchanged.status_code == 303 and "unchanged" in unchanged.headers["location"]
    [rule] = ok(await stack.http.get(f"/pipelines/{p}/automation"))["stages"]["WON"]["rules"]
    assert (rule["settings"]["responsible_id"], rule["settings"]["observers"]) == (manager, [manager, manager])


async def test_a_rule_form_names_every_problem_at_once_with_a_person_no_one_is(stack, crm):
    p = crm["pipeline"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        refused = await client.post(f"/ui/pipelines/{p}/automation/rules", data={
            "csrf_token": csrf, "stage": "WON", "type": "notify_employee", "name": "", "settings.text": "",
            "delay_kind": "clock", "delay_at": "25:99", "settings.user_ids": "Nobody"})
        assert refused.status_code == 422
        said = html.unescape(refused.text)
        assert "no person is named 'Nobody'" in html.unescape(field_block(refused.text, "settings.user_ids"))
        assert 'class="error"' in field_block(refused.text, "settings.text")
        assert "25:99" in said and "Name" in said
        assert said.count('class="error"') >= 4, said
    assert ok(await stack.http.get(f"/pipelines/{p}/automation"))["stages"].get("WON", {}).get("rules") in (None, [])


async def test_a_deadline_is_typed_as_the_api_takes_it_without_quotes(stack, crm):
    p, manager = crm["pipeline"]["id"], crm["manager"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        form = await client.get(f"/ui/pipelines/{p}/automation/rules/new", params={"stage": "WON", "type": "create_task"})
        assert "Text as typed, or JSON.</small>" in field_block(form.text, "settings.deadline")
        fields = create_task_form(csrf, manager)
        refused = await client.post(f"/ui/pipelines/{p}/automation/rules",
                                    data={**fields, "name": "soon", "settings.deadline": "soonish"})
        assert refused.status_code == 422 and 'data-field="settings.deadline"' in refused.text
        error = html.unescape(field_block(refused.text, "settings.deadline"))
        assert "<p class=\"error\">Deadline: 'soonish': give a relative time (+3d)" in error
        assert '{"in_days": 1, "at": "14:00"}' in error
        assert 'soonish</textarea>' in refused.text
        for name, typed in (("in three days", "+3d"), ("on a date", '"2027-01-15"'),
                            ("tomorrow at two", '{"in_days": 1, "at": "14:00"}')):
            saved = await client.post(f"/ui/pipelines/{p}/automation/rules",
                                      data={**fields, "name": name, "settings.deadline": typed})
            assert saved.status_code == 303, saved.text
        edit = await client.get(f"/ui/pipelines/{p}/automation/rules/WON/in three days")
        assert '+3d</textarea>' in edit.text
    rules = ok(await stack.http.get(f"/pipelines/{p}/automation"))["stages"]["WON"]["rules"]
    assert [(rule["name"], rule["settings"]["deadline"]) for rule in rules] == [
        ("in three days", "+3d"), ("on a date", "2027-01-15"), ("tomorrow at two", {"in_days": 1, "at": "14:00"})]


async def test_a_forged_session_cookie_nested_too_deep_signs_nobody_in(stack):
    payload = base64.urlsafe_b64encode(b"[" * 1400).decode().rstrip("=")
    async with httpx.AsyncClient(transport=stack.http._transport, base_url="http://testserver",
                                 cookies={"stageflow_console": f"{payload}.forged"}) as client:
        answer = await client.get("/ui/pipelines")
    assert answer.status_code == 303 and answer.headers["location"].endswith("/ui/login")


async def test_a_rule_saved_on_a_version_another_admin_saved_meanwhile_takes_their_change_and_names_a_clash(stack, crm):
    """Anna edits a rule while Boris saves a change of the same rule: her stale save (409) brings back her form
    with his change taken in where she left the field alone, and names the field they both changed; saving again
    keeps both changes. A rule saved unchanged makes no version."""
    p = crm["pipeline"]["id"]
    remind = {"name": "remind", "type": "add_timeline_entry", "delay": "30d", "settings": {"text": "A month on"}}
    hello = {"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hello"}}
    ok(await stack.http.put(f"/pipelines/{p}/automation", json={"stages": {"NEW": {"rules": [remind, hello]}}}))

    async def boris_saves(**changes) -> int:
        automation = ok(await stack.http.get(f"/pipelines/{p}/automation"))
        rules = automation["stages"]["NEW"]["rules"]
        for rule in rules:
            rule.update(changes.get(rule["name"], {}))
        return ok(await stack.http.put(f"/pipelines/{p}/automation", json={"stages": {"NEW": {"rules": rules}}}))["version"]

    def remind_rule(automation: dict) -> dict:
        return next(rule for rule in automation["stages"]["NEW"]["rules"] if rule["name"] == "remind")

    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        opened = form_values((await client.get(f"/ui/pipelines/{p}/automation/rules/NEW/remind")).text)
        assert opened["delay_after"] == "30d" and opened["settings.text"] == "A month on"
        version = await boris_saves(remind={"delay": "7d"}, hello={"settings": {"text": "Hi"}})

        stale = await client.post(f"/ui/pipelines/{p}/automation/rules",
                                  data={**opened, "settings.text": "A month on, says Anna", "csrf_token": csrf})
        assert stale.status_code == 409
        news = html.unescape(stale.text)
        assert f"Version {version} changed this rule's Delay: the form below has that change now" in news
        again = form_values(stale.text)
        assert again["delay_after"] == "7d" and again["settings.text"] == "A month on, says Anna"
        assert again["base_version"] == str(version)
        assert remind_rule(ok(await stack.http.get(f"/pipelines/{p}/automation")))["settings"]["text"] == "A month on"

        saved = await client.post(f"/ui/pipelines/{p}/automation/rules", data={**again, "csrf_token": csrf})
        assert saved.status_code == 303, saved.text
        automation = ok(await stack.http.get(f"/pipelines/{p}/automation"))
        assert automation["version"] == version + 1
        assert (remind_rule(automation)["delay"], remind_rule(automation)["settings"]["text"]) == ("7d", "A month on, says Anna")
        assert automation["stages"]["NEW"]["rules"][1]["settings"]["text"] == "Hi"

        opened = form_values((await client.get(f"/ui/pipelines/{p}/automation/rules/NEW/remind")).text)
        version = await boris_saves(remind={"settings": {"text": "Boris's month"}})
        stale = await client.post(f"/ui/pipelines/{p}/automation/rules",
                                  data={**opened, "settings.text": "Anna's month", "csrf_token": csrf})
        assert stale.status_code == 409
        news = html.unescape(stale.text)
        assert f'You both changed Text (version {version} has "Boris\'s month"): the form keeps what you typed' in news
        assert form_values(stale.text)["settings.text"] == "Anna's month"
        changes = html.unescape((await client.get(f"/ui/pipelines/{p}/versions/{version}")).text)
        assert ('<td>changed</td><td><div class="field-change"><span title="settings.text">Text</span>: '
                '"A month on, says Anna" → '
                '"Boris\'s month"</div></td>') in changes
        assert '<tr class="change-changed"><td>New</td>' in changes
        history = (await client.get(f"/ui/pipelines/{p}/versions")).text
        assert history.count('<div class="actions">') == version

        unchanged = form_values((await client.get(f"/ui/pipelines/{p}/automation/rules/NEW/remind")).text)
        same = await client.post(f"/ui/pipelines/{p}/automation/rules", data={**unchanged, "csrf_token": csrf})
        assert same.status_code == 303 and "unchanged" in same.headers["location"]
        board = await client.get(same.headers["location"])
        assert "rule remind unchanged, no new version" in html.unescape(board.text)
    assert ok(await stack.http.get(f"/pipelines/{p}/automation"))["version"] == version


async def test_an_item_at_the_apis_address_opens_its_page_and_an_unknown_page_is_a_page(stack, crm):
    d = crm["deal"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        moved = await client.get(f"/ui/deals/{d}")
        assert moved.status_code == 303 and moved.headers["location"] == f"/ui/items/deal/{d}"
        shown = await client.get(moved.headers["location"])
        assert shown.status_code == 200 and "Sofa" in shown.text
        missing = await client.get("/ui/no-such-page", headers={"accept": "text/html"})
        assert missing.status_code == 404 and "<title>" in missing.text and "Not found" in missing.text
        unknown = await client.get("/ui/deals/999999", follow_redirects=True, headers={"accept": "text/html"})
        assert unknown.status_code == 404 and "Not found" in unknown.text
        bad = await client.get("/ui/deals/abc", headers={"accept": "text/html"})
        assert bad.status_code == 422 and "<title>" in bad.text and "Not this address" in bad.text
        form_address = await client.get(f"/ui/pipelines/{crm['pipeline']['id']}/automation/rules",
                                        headers={"accept": "text/html"})
        assert form_address.status_code == 405 and "Not a page" in form_address.text
    script = await stack.http.get("/no-such-route")
    assert script.status_code == 404 and script.json() == {"detail": "Not Found"}


async def test_the_item_page_shows_when_each_activity_is_due(stack, crm):
    p, manager = crm["pipeline"]["id"], crm["manager"]["id"]
    await automate(stack.http, p, {"NEW": {"rules": [{"name": "call", "type": "schedule_activity", "settings": {
        "kind": "call", "description": "Call about the sofa", "when": "2031-03-04T09:30:00+00:00"}}]}})
    item = await deal(stack.http, p, manager, title="Armchair")
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        async def shown() -> str | None:
            text = html.unescape((await client.get(f"/ui/items/deal/{item['id']}")).text)
            return text if "Call about the sofa" in text else None

        text = await eventually(shown)
        assert "call: Call about the sofa, due 2031-03-04 09:30" in text


async def test_the_update_fields_form_says_how_to_name_a_custom_field(stack, crm):
    p = crm["pipeline"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        form = await client.get(f"/ui/pipelines/{p}/automation/rules/new", params={"stage": "WON", "type": "update_fields"})
        help_text = html.unescape(field_block(form.text, "settings.fields"))
        assert "a custom field as Fields.<its name>" in help_text and '"Fields.delivery": "courier"' in help_text


async def test_a_stale_save_shows_the_other_save_before_asking_about_waiting_items(stack, crm):
    """Items wait on a rule Anna edits while Boris saves it: her save is refused with his change first; only her
    save on his version asks what happens to the waiting items."""
    p = crm["pipeline"]["id"]
    remind = {"name": "remind", "type": "add_timeline_entry", "delay": "30d", "settings": {"text": "A month on"}}
    ok(await stack.http.put(f"/pipelines/{p}/automation", json={"stages": {"NEW": {"rules": [remind]}}}))
    await deal(stack.http, p, crm["manager"]["id"], title="Waiting chair")
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        opened = form_values((await client.get(f"/ui/pipelines/{p}/automation/rules/NEW/remind")).text)
        boris = ok(await stack.http.put(f"/pipelines/{p}/automation", json={"stages": {"NEW": {"rules": [
            {**remind, "delay": "7d"}]}}}))["version"]
        stale = await client.post(f"/ui/pipelines/{p}/automation/rules",
                                  data={**opened, "settings.text": "A month on, says Anna", "csrf_token": csrf})
        assert stale.status_code == 409
        said = html.unescape(stale.text)
        assert f"Version {boris} changed this rule's Delay" in said and "Items are waiting" not in said
        asked = await client.post(f"/ui/pipelines/{p}/automation/rules", data={**form_values(stale.text),
                                                                               "csrf_token": csrf})
        assert asked.status_code == 200
        question = html.unescape(asked.text)
        assert "Items are waiting on what you changed" in question and "Keep: their rules run as they were" in question
        assert ok(await stack.http.get(f"/pipelines/{p}/automation"))["version"] == boris


async def test_a_rule_renamed_by_another_admin_meanwhile_is_not_added_again_under_its_old_name(stack, crm):
    p = crm["pipeline"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        opened = form_values((await client.get(f"/ui/pipelines/{p}/automation/rules/NEW/hello")).text)
        automation = ok(await stack.http.get(f"/pipelines/{p}/automation"))
        automation["stages"]["NEW"]["rules"][0]["name"] = "greeting"
        ok(await stack.http.put(f"/pipelines/{p}/automation", json={"stages": automation["stages"]}))

        stale = await client.post(f"/ui/pipelines/{p}/automation/rules",
                                  data={**opened, "settings.text": "Hi {{Deal.Title}}", "csrf_token": csrf})
        assert stale.status_code == 409
        assert "changed this rule's Name: the form below has that change now" in html.unescape(stale.text)
        again = form_values(stale.text)
        assert (again["name"], again["original"], again["settings.text"]) == ("greeting", "greeting", "Hi {{Deal.Title}}")
        saved = await client.post(f"/ui/pipelines/{p}/automation/rules", data={**again, "csrf_token": csrf})
        assert saved.status_code == 303, saved.text
    rules = ok(await stack.http.get(f"/pipelines/{p}/automation"))["stages"]["NEW"]["rules"]
    assert [(rule["name"], rule["settings"]["text"]) for rule in rules] == [("greeting", "Hi {{Deal.Title}}")]


async def test_pending_says_when_no_workflow_waits_on_the_entry_and_asks_the_one_that_does(stack, crm):
    p, manager = crm["pipeline"]["id"], crm["manager"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        at_once = html.unescape((await client.get(f"/ui/items/deal/{crm['deal']['id']}/pending")).text)
        assert "Nothing pending." in at_once and "no workflow waits on it" in at_once
        assert "asked of the stage entry's workflow" not in at_once

        await automate(stack.http, p, {"NEW": {"rules": [
            {"name": "later", "type": "add_timeline_entry", "delay": "30d", "settings": {"text": "A month on"}}]}})
        item = await deal(stack.http, p, manager, title="Armchair")

        async def waiting() -> str | None:
            text = html.unescape((await client.get(f"/ui/items/deal/{item['id']}/pending")).text)
            return text if "<td>later</td>" in text else None

        text = await eventually(waiting)
        assert "asked of the stage entry's workflow" in text and "no workflow waits" not in text


async def test_a_person_field_takes_a_name_as_typed_and_says_when_no_one_or_several_have_it(stack, crm):
    p, manager = crm["pipeline"]["id"], crm["manager"]["id"]
    await user(stack.http, "Ola Nowak")
    await user(stack.http, "Ola Nowak")
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        form = {"stage": "NEW", "type": "add_timeline_entry", "name": "signed", "settings.text": "Hi",
                "csrf_token": csrf}
        for typed, problem in (("Nobody Here", "Author: no person is named 'Nobody Here'"),
                               ("ola nowak", "Author: 2 people are named 'ola nowak'")):
            refused = await client.post(f"/ui/pipelines/{p}/automation/rules", data={**form, "settings.author_id": typed})
            assert refused.status_code == 422
            assert problem in html.unescape(refused.text)
            assert form_values(refused.text)["settings.author_id"] == typed
        saved = await client.post(f"/ui/pipelines/{p}/automation/rules",
                                  data={**form, "settings.author_id": "marek manager"})
        assert saved.status_code == 303, saved.text
    rules = ok(await stack.http.get(f"/pipelines/{p}/automation"))["stages"]["NEW"]["rules"]
    assert [(rule["name"], rule["settings"].get("author_id")) for rule in rules] == [
        ("hello", None), ("signed", manager)]


async def test_a_too_long_title_or_comment_is_refused_by_name_and_each_form_keeps_what_was_typed(stack, crm):
    p, d, manager = crm["pipeline"]["id"], crm["deal"]["id"], crm["manager"]["id"]
    before = ok(await stack.http.get("/deals"))
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        board = await client.get(f"/ui/pipelines/{p}/items")
        key = form_values(board.text)["idempotency_key"]
        long_title = "Oak " * 60
        refused = await client.post(f"/ui/pipelines/{p}/items", data={
            "csrf_token": csrf, "idempotency_key": key, "title": long_title, "amount": "1200", "currency": "EURO",
            "responsible_id": str(manager), "stage": "NEW"})
        assert refused.status_code == 422
        text = html.unescape(refused.text)
        assert "Title" in text and "200" in text and "Currency" in text
        kept = form_values(refused.text)
        assert (kept["title"], kept["amount"], kept["currency"]) == (long_title, "1200", "EURO")

        comment = await client.post(f"/ui/items/deal/{d}/comments", data={"csrf_token": csrf, "text": "x" * 10_001})
        assert comment.status_code == 422
        assert "Comment: at most 10,000 characters; this one has 10,001" in html.unescape(comment.text)
        assert form_values(comment.text)["text"] == "x" * 10_001
    assert ok(await stack.http.get("/deals")) == before
    assert not [entry for entry in await timeline(stack.http, d) if entry["text"].startswith("xxx")]


async def test_deal_forms_say_what_is_wrong_with_a_number_in_words_and_take_a_decimal_comma(stack, crm):
    p, d, manager = crm["pipeline"]["id"], crm["deal"]["id"], crm["manager"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        board = await client.get(f"/ui/pipelines/{p}/items")
        refused = await client.post(f"/ui/pipelines/{p}/items", data={
            "csrf_token": csrf, "idempotency_key": form_values(board.text)["idempotency_key"], "title": "Desk",
            "amount": "-5", "currency": "eu", "responsible_id": str(manager), "stage": "NEW"})
        assert refused.status_code == 422
        said = html.unescape(refused.text)
        assert "Amount: must be 0 or more" in said and "Currency: is not three letters such as EUR" in said
        assert "Input should" not in said and "String should" not in said
        page = form_values((await client.get(f"/ui/items/deal/{d}")).text)
        typed = {name: value for name, value in page.items() if name in (
            "title", "amount", "currency", "responsible_id", "contact_id", "close_date") or name.startswith("field.")}
        for unreadable in ("12.5.0", "1,500"):
            bad = await client.post(f"/ui/items/deal/{d}/fields", data={**typed, "csrf_token": csrf,
                                                                       "amount": unreadable})
            assert "Amount: is not a number such as 1500.50" in html.unescape(bad.text), unreadable
        saved = await client.post(f"/ui/items/deal/{d}/fields", data={**typed, "csrf_token": csrf, "amount": "12,50",
                                                                     "currency": "pln"})
        assert saved.status_code == 303, saved.text
    item = ok(await stack.http.get(f"/deals/{d}"))
    assert (item["amount"], item["currency"]) == (12.5, "PLN")


async def test_a_simulation_says_when_nothing_happens_and_names_who_is_notified(stack, crm):
    p, d, manager = crm["pipeline"]["id"], crm["deal"]["id"], crm["manager"]["id"]
    await eventually(lambda: _rule_done(stack, d, "hello"))
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        quiet = html.unescape((await client.post(f"/ui/items/deal/{d}/simulate",
                                                 data={"csrf_token": csrf, "horizon": "30d"})).text)
        assert "Nothing happens in this time: no rule runs, no stage changes." in quiet
        assert "None: nothing would be sent, made or called." in quiet
        told = html.unescape((await client.post(f"/ui/pipelines/{p}/automation/rules/simulate", data={
            "csrf_token": csrf, "stage": "WON", "type": "notify_employee", "name": "tell", "delay_kind": "now",
            "settings.user_ids": str(manager), "settings.text": "Won {{Deal.Title}}",
            "sample_responsible_id": str(manager), "sample_horizon": "7d"})).text)
        assert "notification to Marek Manager (tell): Won" in told
        assert "None: nothing would be sent" not in told


async def _rule_done(stack, item_id: int, rule: str) -> bool:
    return any(entry["rule_name"] == rule and entry["kind"] == "rule_done" for entry in await timeline(stack.http, item_id))


async def test_a_new_deal_form_sent_again_changed_after_it_made_a_deal_says_so_and_becomes_a_new_form(stack, crm):
    p, manager = crm["pipeline"]["id"], crm["manager"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        key = form_values((await client.get(f"/ui/pipelines/{p}/items")).text)["idempotency_key"]
        fields = {"csrf_token": csrf, "idempotency_key": key, "title": "Oak desk", "responsible_id": str(manager),
                  "stage": "NEW"}
        made = await client.post(f"/ui/pipelines/{p}/items", data=fields)
        assert made.status_code == 303
        desk = int(made.headers["location"].rsplit("/", 1)[1])
        again = await client.post(f"/ui/pipelines/{p}/items", data={**fields, "title": "Oak desk, large"})
        assert again.status_code == 409
        assert f"This form made deal {desk} (Oak desk) already" in html.unescape(again.text)
        fresh = form_values(again.text)
        assert fresh["idempotency_key"] != key and fresh["title"] == "Oak desk, large"
        second = await client.post(f"/ui/pipelines/{p}/items", data={**fields, "title": "Oak desk, large",
                                                                     "idempotency_key": fresh["idempotency_key"]})
        assert second.status_code == 303
    titles = sorted(row["title"] for row in ok(await stack.http.get("/deals")))
    assert titles == ["Oak desk", "Oak desk, large", "Sofa"]


async def test_the_simulate_form_names_every_problem_at_once_in_words(stack, crm):
    p, manager = crm["pipeline"]["id"], crm["manager"]["id"]
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        refused = await client.post(f"/ui/pipelines/{p}/simulate", data={
            "csrf_token": csrf, "title": "S", "amount": "lots", "responsible_id": str(manager),
            "horizon": "3 parsecs", "script": "+1d move WON\n\n+2d fly away"})
        assert refused.status_code == 422
        text = html.unescape(refused.text)
        assert "Amount: " in text and "Simulate for: " in text and "Script, line 3: write +<time> move" in text
        assert "amount: Input" not in text and "horizon:" not in text and "Value error" not in text
        unknown = html.unescape((await client.post(f"/ui/pipelines/{p}/simulate", data={
            "csrf_token": csrf, "title": "S", "responsible_id": str(manager), "horizon": "30d",
            "script": "+1d move WON\n+2d move MARS"})).text)
        assert "Script, line 2" in unknown and "MARS" in unknown and "script.1" not in unknown
        item = await client.post(f"/ui/items/deal/{crm['deal']['id']}/simulate",
                                 data={"csrf_token": csrf, "horizon": "3 parsecs"})
        assert item.status_code == 422
        said = html.unescape(item.text)
        assert "Simulate for: " in said and "is not a duration" in said and "Value error" not in said


async def test_a_version_comparison_labels_each_setting_as_its_form_does(stack, crm):
    p = crm["pipeline"]["id"]
    call = {"name": "call", "type": "schedule_activity", "settings": {"kind": "call", "description": "Call them",
                                                                      "when": "+1d"}}
    await automate(stack.http, p, {"NEW": {"rules": [call]}})
    version = (await automate(stack.http, p, {"NEW": {"rules": [
        {**call, "settings": {**call["settings"], "when": "+2d"}}]}}))["version"]
    async with signed_in(stack, ADMIN_KEY) as (client, _):
        changes = html.unescape((await client.get(f"/ui/pipelines/{p}/versions/{version}")).text)
    assert '<span title="settings.when">Due</span>: "+1d" → "+2d"' in changes
