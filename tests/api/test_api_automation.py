"""A pipeline's automation: replaced as a whole, validated as a whole, webhook secrets kept across saves."""

from __future__ import annotations

from http import HTTPStatus

from tests.api.support import assert_problem
from tests.crm import ok, pipeline, user

STAGES = ["NEW", "INVOICE", "PAID"]


def config(*, hook: str | None = "erp", text: str = "Hello {{Deal.Contact.Name}}") -> dict:
    triggers = [{"name": "paid", "type": "payment_received"}]
    if hook:
        triggers.append({"name": hook, "type": "webhook"})
    return {
        "constants": {"Courier": 3},
        "stages": {
            "NEW": {"rules": [
                {"name": "ack", "type": "send_sms", "delay": None, "settings": {"text": text}},
                {"name": "late", "type": "notify_supervisor", "delay": "24h",
                 "settings": {"text": "{{Deal.Responsible.Name}} has not moved {{Deal.Title}}"}},
            ]},
            "PAID": {"rules": [], "triggers": triggers},
        },
    }


async def test_automation_is_stored_versioned_and_read_back(stack):
    flow = await pipeline(stack.http, STAGES)
    empty = ok(await stack.member.get(f"/pipelines/{flow['id']}/automation"))
    assert (empty["version"], empty["stages"], empty["hooks"]) == (0, {}, {})

    saved = ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json=config()))
    assert saved["version"] == 1
    assert saved["constants"] == {"Courier": 3}
    rules = saved["stages"]["NEW"]["rules"]
    assert [(rule["name"], rule["start"]) for rule in rules] == [("ack", "on_entry"), ("late", "on_entry")]
    assert ok(await stack.member.get(f"/pipelines/{flow['id']}/automation")) == saved

    again = ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json=saved))
    assert again["version"] == 2
    assert again["stages"] == saved["stages"]


async def test_webhook_triggers_keep_their_secret_url_while_they_exist(stack):
    flow = await pipeline(stack.http, STAGES)
    first = ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json=config()))
    url = first["hooks"]["PAID/erp"]
    assert url.startswith(f"{stack.settings.effective_public_url}/hooks/")
    secret = url.rsplit("/", 1)[1]
    assert len(secret) >= 40

    kept = ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json=config(text="Hi {{Deal.Title}}")))
    assert kept["hooks"] == {"PAID/erp": url}

    removed = ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json=config(hook=None)))
    assert removed["hooks"] == {}
    gone = await stack.anon.post(f"/hooks/{secret}", json={"deal_id": 1})
    assert gone.status_code == HTTPStatus.NOT_FOUND

    back = ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json=config()))
    assert set(back["hooks"]) == {"PAID/erp"}
    assert back["hooks"]["PAID/erp"] != url


async def test_a_bad_automation_is_refused_whole_and_nothing_changes(stack):
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, STAGES)
    saved = ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json=config()))

    bad_placeholder = config(text="Hello {{Deal.Nobody}}")
    response = await stack.http.put(f"/pipelines/{flow['id']}/automation", json=bad_placeholder)
    assert_problem(response, HTTPStatus.UNPROCESSABLE_ENTITY, "body", "stages", "NEW", "rules", 0, "settings", "text")

    several = config(hook="other")
    several["stages"]["NOPE"] = {"rules": []}
    several["stages"]["NEW"]["rules"][1]["delay"] = "soon"
    several["stages"]["NEW"]["rules"].append({"name": "x", "type": "teleport", "settings": {}})
    response = await stack.http.put(f"/pipelines/{flow['id']}/automation", json=several)
    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    locs = [problem["loc"] for problem in response.json()["detail"]]
    assert ["body", "stages", "NOPE"] in locs
    assert any(loc[:6] == ["body", "stages", "NEW", "rules", 1, "delay"] for loc in locs), locs
    assert any(loc[:6] == ["body", "stages", "NEW", "rules", 2, "type"] for loc in locs), locs

    unknown_user = {"stages": {"NEW": {"rules": [
        {"name": "n", "type": "notify_employee", "settings": {"text": "x", "user_ids": [manager["id"] + 99]}},
    ]}}}
    response = await stack.http.put(f"/pipelines/{flow['id']}/automation", json=unknown_user)
    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert any("user_ids" in problem["loc"] for problem in response.json()["detail"]), response.text
    for body in ([1, 2], "text", {"stages": "NEW"}):
        response = await stack.http.put(f"/pipelines/{flow['id']}/automation", json=body)
        assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY, response.text

    member = await stack.member.put(f"/pipelines/{flow['id']}/automation", json=config(hook="member"))
    assert member.status_code == HTTPStatus.FORBIDDEN
    assert ok(await stack.http.get(f"/pipelines/{flow['id']}/automation")) == saved


async def test_automation_of_an_unknown_pipeline_is_not_found(stack):
    assert (await stack.http.put("/pipelines/999/automation", json=config())).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.member.get("/pipelines/999/automation")).status_code == HTTPStatus.NOT_FOUND


async def test_custom_rule_types_and_uploaded_templates_can_be_used_in_rules(stack):
    flow = await pipeline(stack.http, STAGES)
    body = {"name": "geocode", "handler_url": "https://geo.example.com/h", "returns": ["lat"],
            "settings_schema": {"type": "object", "properties": {"address": {"type": "string"}}}}
    stages = {"NEW": {"rules": [
        {"name": "geo", "type": "geocode", "settings": {"address": "{{Deal.Title}}"}},
        {"name": "tell", "type": "add_timeline_entry", "start": "after_previous",
         "settings": {"text": "at {{Rule.geo.lat}}"}},
    ]}}
    refused = await stack.http.put(f"/pipelines/{flow['id']}/automation", json={"stages": stages})
    assert refused.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    ok(await stack.http.post("/rule-types", json=body), HTTPStatus.CREATED)
    saved = ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json={"stages": stages}))
    assert [rule["type"] for rule in saved["stages"]["NEW"]["rules"]] == ["geocode", "add_timeline_entry"]
