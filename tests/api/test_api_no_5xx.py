"""Inputs that once made the API answer 500 (found by generated requests): an explicit null for a field that
cannot be empty in a PATCH body, strings holding an unpaired UTF-16 surrogate, and a NUL character (on
PostgreSQL). Each is a 422 naming the field, and nothing changes."""

from __future__ import annotations

import json

import pytest

from tests.crm import automate, deal, eventually, ok, pipeline, user


def _at(response, *path) -> dict:
    assert response.status_code == 422, response.text
    found = [problem for problem in response.json()["detail"] if problem["loc"][-len(path):] == list(path)]
    assert found, response.text
    return found[0]


@pytest.mark.parametrize("field", ["title", "responsible_id", "fields", "products"])
async def test_patching_an_item_field_that_cannot_be_empty_with_null_is_refused(stack, field):
    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW", "WON"])
    item = await deal(stack.http, flow["id"], manager["id"], fields={"colour": "red"},
                      products=[{"name": "Sofa", "quantity": 1, "price": 10}])
    response = await stack.http.patch(f"/deals/{item['id']}", json={field: None})
    assert "must not be null" in _at(response, "body", field)["msg"]
    after = ok(await stack.http.get(f"/deals/{item['id']}"))
    assert (after["title"], after["responsible_id"], after["fields"], len(after["products"])) == (
        item["title"], manager["id"], {"colour": "red"}, 1)


async def test_patching_a_field_that_may_be_empty_with_null_empties_it(stack):
    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW"])
    item = await deal(stack.http, flow["id"], manager["id"], amount=100, currency="EUR")
    changed = ok(await stack.http.patch(f"/deals/{item['id']}", json={"amount": None, "close_date": None}))
    assert (changed["amount"], changed["currency"], changed["close_date"]) == (None, "EUR", None)


async def test_patching_a_user_or_a_task_with_null_where_a_value_is_needed_is_refused(stack):
    manager = await user(stack.http, "Marek Manager")
    assert "must not be null" in _at(await stack.http.patch(f"/users/{manager['id']}", json={"name": None}),
                                     "body", "name")["msg"]
    assert ok(await stack.http.get(f"/users/{manager['id']}"))["name"] == "Marek Manager"
    flow = await pipeline(stack.http, ["NEW"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "task", "type": "create_task", "settings": {"title": "Call the client"}}]}})
    item = await deal(stack.http, flow["id"], manager["id"])
    [task] = await eventually(lambda: _tasks(stack, item["id"]))
    for field in ("status", "title", "observers"):
        response = await stack.http.patch(f"/tasks/{task['id']}", json={field: None})
        assert "must not be null" in _at(response, "body", field)["msg"]
    assert ok(await stack.http.get(f"/tasks/{task['id']}")) == task


async def _tasks(stack, item_id: int) -> list[dict]:
    return ok(await stack.http.get("/tasks", params={"deal_id": item_id}))


def _raw(body: dict) -> dict:
    """A request whose JSON holds the escapes as written (json.dumps keeps a lone surrogate as \\udXXX)."""
    return {"content": json.dumps(body), "headers": {"Content-Type": "application/json"}}


async def test_a_string_with_an_unpaired_surrogate_is_refused_wherever_it_is(stack):
    stages = [{"code": "NEW", "name": "New \ud874"}]
    response = await stack.http.post("/pipelines", **_raw({"entity_type": "deal", "name": "Sales", "stages": stages}))
    assert "surrogate" in _at(response, "body", "stages", 0, "name")["msg"]
    assert ok(await stack.http.get("/pipelines")) == []

    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW"])
    response = await stack.http.post("/deals", **_raw({"title": "Sofa", "pipeline_id": flow["id"],
                                                       "responsible_id": manager["id"], "fields": {"\udc00": "x"}}))
    assert "surrogate" in _at(response, "body", "fields", "\\udc00")["msg"]
    response = await stack.http.put(f"/pipelines/{flow['id']}/automation",
                                    **_raw({"constants": {"Name": ["ok", "\ud83d"]}}))
    assert "surrogate" in _at(response, "body", "constants", "Name", 1)["msg"]
    assert ok(await stack.http.get("/deals")) == []
    assert ok(await stack.http.get(f"/pipelines/{flow['id']}/automation"))["constants"] == {}

    paired = "Sofa \ud83d\ude00"  # a pair of surrogate escapes is one character, and stays text
    created = ok(await stack.http.post("/deals", **_raw({"title": paired, "pipeline_id": flow["id"],
                                                          "responsible_id": manager["id"]})), 201)
    assert created["title"] == "Sofa 😀"


async def test_a_nul_character_is_refused_in_bodies_queries_and_paths(stack):
    await user(stack.http, "Marek Manager")
    response = await stack.http.post("/users", **_raw({"name": "Ann", "email": "ann\u0000@shop.example"}))
    assert "NUL" in _at(response, "body", "email")["msg"]
    response = await stack.http.get("/timeline", params={"kind": "comment\x00"})
    assert "NUL" in _at(response, "query", "kind")["msg"]
    response = await stack.http.get("/public/documents/abc%00def")
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["path"]
    assert [row["name"] for row in ok(await stack.http.get("/users"))] == ["Marek Manager"]
