"""Settings that hold a user id take one placeholder too (`{{Constants.Boss}}`): it is checked at save time and
resolved when the rule runs, so what the save accepted runs."""

from __future__ import annotations

from tests.crm import ok, user
from tests.custom.flows import finished, problem_at, shop_deal


async def test_change_responsible_resolves_a_constant_that_names_the_user(stack):
    boss = await user(stack.http, "Beata Boss")
    item = await shop_deal(stack.http, {"NEW": {"rules": [
        {"name": "to boss", "type": "change_responsible", "settings": {"user_id": "{{Constants.Boss}}"}},
    ]}}, automation={"constants": {"Boss": boss["id"]}})

    done = await finished(stack.http, item["id"], "to boss")
    assert done["kind"] == "rule_done", done
    assert done["data"]["result"]["user_id"] == boss["id"]
    assert ok(await stack.http.get(f"/deals/{item['id']}"))["responsible_id"] == boss["id"]


async def test_a_variable_that_holds_no_user_id_fails_the_rule_naming_the_setting(stack):
    item = await shop_deal(stack.http, {"NEW": {"rules": [
        {"name": "to boss", "type": "change_responsible", "settings": {"user_id": "{{Variables.Boss}}"}},
    ]}}, automation={"variables": {"Boss": "somebody"}})

    failed = await finished(stack.http, item["id"], "to boss")
    assert failed["kind"] == "rule_failed"
    assert "settings.user_id: {{Variables.Boss}}: holds 'somebody', not a user id" in failed["text"]
    assert ok(await stack.http.get(f"/deals/{item['id']}"))["responsible_id"] != "somebody"


async def test_a_constant_naming_a_missing_user_is_refused_at_save(stack):
    manager = await user(stack.http, "Marek Manager")
    flow = ok(await stack.http.post("/pipelines", json={
        "entity_type": "deal", "name": "Sales", "stages": [{"code": "NEW", "name": "New"}]}), 201)
    response = await stack.http.put(f"/pipelines/{flow['id']}/automation", json={
        "constants": {"Boss": manager["id"] + 100},
        "stages": {"NEW": {"rules": [
            {"name": "to boss", "type": "change_responsible", "settings": {"user_id": "{{Constants.Boss}}"}}]}},
    })
    assert "does not exist" in problem_at(response, "settings", "user_id")["msg"]
    assert ok(await stack.http.get(f"/pipelines/{flow['id']}/automation"))["stages"] == {}
