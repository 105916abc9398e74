"""Rule types that apps register over the API: listed, checked at save time, run through their handler URL."""

from __future__ import annotations

import hashlib

from tests.crm import deal, ok, pipeline, user
from tests.custom.endpoint import Endpoint
from tests.custom.flows import automation_of, comments, finished, problem_at, result_of

SCHEMA = {
    "type": "object",
    "properties": {
        "sku": {"type": "string", "minLength": 1},
        "quantity": {"type": "integer", "minimum": 1, "default": 1},
        "note": {"type": "string"},
    },
    "required": ["sku"],
}


async def _register(http, outside: Endpoint, **extra) -> dict:
    body = {"name": "erp_order", "title": "Order in the ERP", "settings_schema": SCHEMA,
            "handler_url": outside.url("/rules/erp_order"), "returns": ["order_no", "eta"], **extra}
    return ok(await http.post("/rule-types", json=body), 201)


def _rules(settings: dict) -> dict:
    return {"NEW": {"rules": [
        {"name": "erp", "type": "erp_order", "settings": settings},
        {"name": "note", "type": "add_timeline_entry",
         "settings": {"text": "ERP order {{Rule.erp.order_no}} arrives {{Rule.erp.eta}}"}},
    ]}}


async def test_a_registered_rule_type_is_listed_and_runs_through_its_handler(stack, outside: Endpoint):
    outside.default = (200, {"order_no": "E-1", "eta": "2025-07-01", "extra": "not declared"})
    await _register(stack.http, outside)
    listed = {kind["name"]: kind for kind in ok(await stack.http.get("/rule-types", params={"limit": 500}))}
    mine = listed["erp_order"]
    assert (mine["custom"], mine["group"], mine["returns"]) == (True, "custom", ["order_no", "eta"])
    assert mine["settings_schema"]["required"] == ["sku"]

    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW", "WON"])
    ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json={"stages": _rules(
        {"sku": "SOFA-{{Deal.Id}}", "quantity": 2, "note": "{{Deal.Title}} for {{Deal.Amount}}"})}))
    item = await deal(stack.http, flow["id"], manager["id"], title="Sofa", amount=1500)

    assert (await finished(stack.http, item["id"], "note"))["kind"] == "rule_done"
    assert await comments(stack.http, item["id"]) == ["ERP order E-1 arrives 2025-07-01"]
    [request] = outside.requests
    assert (request.method, request.path) == ("POST", "/rules/erp_order")
    assert request.headers["idempotency-key"] == hashlib.sha256(f"deal-{item['id']}/entry-1/erp".encode()).hexdigest()
    sent = request.json()
    assert (sent["rule"], sent["type"], sent["item_id"]) == ("erp", "erp_order", item["id"])
    assert sent["settings"] == {"sku": f"SOFA-{item['id']}", "quantity": 2, "note": "Sofa for 1500"}
    assert (sent["item"]["Title"], sent["item"]["Responsible"]["Name"]) == ("Sofa", "Marek Manager")
    assert await result_of(stack.http, item["id"], "erp") == {"order_no": "E-1", "eta": "2025-07-01"}


async def test_settings_that_break_the_type_schema_are_refused_at_save_time_naming_the_field(
    stack, outside: Endpoint
):
    await _register(stack.http, outside)
    flow = await pipeline(stack.http, ["NEW", "WON"])
    before = await automation_of(stack.http, {"pipeline_id": flow["id"]})

    bad_quantity = await stack.http.put(f"/pipelines/{flow['id']}/automation",
                                        json={"stages": _rules({"sku": "S-1", "quantity": 0})})
    assert "greater than or equal to 1" in problem_at(bad_quantity, "settings", "quantity")["msg"]
    missing = await stack.http.put(f"/pipelines/{flow['id']}/automation", json={"stages": _rules({"quantity": 2})})
    problem_at(missing, "settings", "sku")
    unknown = await stack.http.put(f"/pipelines/{flow['id']}/automation",
                                   json={"stages": _rules({"sku": "S-1", "colour": "red"})})
    problem_at(unknown, "settings", "colour")
    wrong_result = await stack.http.put(f"/pipelines/{flow['id']}/automation", json={"stages": {"NEW": {"rules": [
        {"name": "erp", "type": "erp_order", "settings": {"sku": "S-1"}},
        {"name": "note", "type": "add_timeline_entry", "settings": {"text": "{{Rule.erp.invoice_no}}"}},
    ]}}})
    assert "order_no" in problem_at(wrong_result, "settings", "text")["msg"]
    assert await automation_of(stack.http, {"pipeline_id": flow["id"]}) == before


async def test_a_registration_with_a_bad_schema_or_url_is_refused_and_not_listed(stack, outside: Endpoint):
    bad_type = await stack.http.post("/rule-types", json={
        "name": "erp_order", "handler_url": outside.url(),
        "settings_schema": {"type": "object", "properties": {"sku": {"type": "date"}}}})
    assert "not supported" in problem_at(bad_type, "settings_schema", "properties", "sku", "type")["msg"]
    bad_url = await stack.http.post("/rule-types", json={
        "name": "erp_order", "handler_url": "ftp://erp.example/rules", "settings_schema": SCHEMA})
    problem_at(bad_url, "handler_url")
    names = [kind["name"] for kind in ok(await stack.http.get("/rule-types", params={"limit": 500}))]
    assert "erp_order" not in names


async def test_a_handler_that_refuses_the_rule_fails_it_with_the_answer(stack, outside: Endpoint):
    outside.default = (400, {"error": "sku SOFA-X is unknown"})
    await _register(stack.http, outside)
    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW", "WON"])
    ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json={"stages": _rules({"sku": "SOFA-X"})}))
    item = await deal(stack.http, flow["id"], manager["id"])

    failed = await finished(stack.http, item["id"], "erp")
    assert failed["kind"] == "rule_failed"
    assert "erp_order" in failed["text"] and "400" in failed["text"] and "SOFA-X is unknown" in failed["text"]
    assert len(outside.requests) == 1
    assert await comments(stack.http, item["id"]) == []


async def test_a_private_handler_url_is_refused_at_registration_as_every_call_of_it_is(guarded_stack, outside):
    stack = guarded_stack
    for url in (outside.url("/rules/erp_order"), "http://localhost:9/rules", "https://10.1.2.3/rules",
                "http://[::1]:8080/rules"):
        response = await stack.http.post("/rule-types", json={
            "name": "erp_order", "handler_url": url, "settings_schema": SCHEMA})
        assert "STAGEFLOW_ALLOW_PRIVATE_URLS" in problem_at(response, "handler_url")["msg"], url
    names = [kind["name"] for kind in ok(await stack.http.get("/rule-types", params={"limit": 500}))]
    assert "erp_order" not in names
    assert outside.requests == []


async def test_a_handler_registered_while_private_urls_were_allowed_is_refused_when_called(stack, outside):
    await _register(stack.http, outside)
    stack.settings.allow_private_urls = False
    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW", "WON"])
    ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json={"stages": _rules({"sku": "SOFA-1"})}))
    item = await deal(stack.http, flow["id"], manager["id"])

    failed = await finished(stack.http, item["id"], "erp")
    assert failed["kind"] == "rule_failed" and "STAGEFLOW_ALLOW_PRIVATE_URLS" in failed["text"]
    assert outside.requests == []
