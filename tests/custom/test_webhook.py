"""The webhook rule against a real HTTP endpoint on loopback, driven through the HTTP API."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.crm import eventually, ok
from tests.custom.endpoint import Endpoint
from tests.custom.flows import comments, finished, result_of, rule_entries, shop_deal


def _key(item: dict, rule: str, entry: int = 1) -> str:
    return hashlib.sha256(f"deal-{item['id']}/entry-{entry}/{rule}".encode()).hexdigest()


def _note(text: str) -> dict:
    return {"name": "note", "type": "add_timeline_entry", "settings": {"text": text}}


async def test_the_endpoint_gets_the_item_data_and_its_answer_feeds_a_later_rule(stack, outside: Endpoint):
    outside.default = (201, {"order_no": "A-17", "ignored": "x"})
    item = await shop_deal(stack.http, {"NEW": {"rules": [
        {"name": "hook", "type": "webhook", "settings": {
            "url": outside.url("/orders?deal={{Deal.Id}}&who={{Deal.Contact.Name}}"),
            "headers": {"X-Api-Key": "{{Constants.ErpKey}}"},
            "returns": ["order_no"]}},
        _note("Order {{Rule.hook.order_no}} ({{Rule.hook.status_code}}) for {{Deal.Title}}"),
    ]}}, automation={"constants": {"ErpKey": "erp-secret"}}, title="Sofa", amount=1500,
        contact_id=ok(await stack.http.post("/contacts", json={"name": "Anna & Co"}), 201)["id"])

    assert (await finished(stack.http, item["id"], "note"))["kind"] == "rule_done"
    assert await comments(stack.http, item["id"]) == ["Order A-17 (201) for Sofa"]
    [request] = outside.requests
    assert (request.method, request.path) == ("POST", "/orders")
    assert request.query == {"deal": [str(item["id"])], "who": ["Anna & Co"]}
    assert request.headers["x-api-key"] == "erp-secret"
    assert request.headers["idempotency-key"] == _key(item, "hook")
    assert request.headers["content-type"] == "application/json"
    sent = request.json()
    assert (sent["rule"], sent["entity"], sent["item_id"], sent["stage"]) == ("hook", "deal", item["id"], "NEW")
    assert (sent["item"]["Title"], sent["item"]["Amount"]) == ("Sofa", 1500)
    assert sent["item"]["Contact"]["Name"] == "Anna & Co"
    assert "ErpKey" not in request.body.decode()
    assert await result_of(stack.http, item["id"], "hook") == {"status_code": 201, "order_no": "A-17"}


async def test_a_body_template_is_rendered_keeping_numbers_numbers(stack, outside: Endpoint):
    item = await shop_deal(stack.http, {"NEW": {"rules": [
        {"name": "hook", "type": "webhook", "settings": {
            "url": outside.url(), "method": "PUT",
            "body": {"title": "{{Deal.Title}}", "amount": "{{Deal.Amount}}",
                     "line": "{{Deal.Title}} for {{Deal.Amount}} {{Deal.Currency}}", "fixed": [1, True]}}},
        {"name": "raw", "type": "webhook", "settings": {
            "url": outside.url("/text"), "body": "Deal {{Deal.Title}} moved to {{Deal.Stage}}"}},
    ]}}, title="Sofa", amount=99.5, currency="EUR")

    for rule in ("hook", "raw"):
        assert (await finished(stack.http, item["id"], rule))["kind"] == "rule_done"
    by_path = {request.path: request for request in outside.requests}
    assert by_path["/hook"].method == "PUT"
    assert by_path["/hook"].json() == {"title": "Sofa", "amount": 99.5, "line": "Sofa for 99.50 EUR", "fixed": [1, True]}
    assert by_path["/text"].body == b"Deal Sofa moved to NEW"
    assert by_path["/text"].headers["content-type"].startswith("text/plain")


async def test_a_temporary_error_is_retried_with_the_same_idempotency_key_and_takes_effect_once(
    stack, outside: Endpoint
):
    outside.replies = [(503, {"error": "busy"}), (200, {"order_no": "B-1"})]
    item = await shop_deal(stack.http, {"NEW": {"rules": [
        {"name": "hook", "type": "webhook", "settings": {"url": outside.url(), "returns": ["order_no"]}},
        _note("Order {{Rule.hook.order_no}}"),
    ]}})

    assert (await finished(stack.http, item["id"], "note"))["kind"] == "rule_done"
    assert [request.headers["idempotency-key"] for request in outside.requests] == [_key(item, "hook")] * 2
    assert await comments(stack.http, item["id"]) == ["Order B-1"]
    assert [entry["kind"] for entry in await rule_entries(stack.http, item["id"], "hook")] == [
        "rule_scheduled", "rule_done"
    ]


async def test_a_client_error_fails_the_rule_at_once_naming_the_answer(stack, outside: Endpoint):
    outside.default = (422, {"error": "unknown customer"})
    item = await shop_deal(stack.http, {"NEW": {"rules": [
        {"name": "hook", "type": "webhook", "settings": {"url": outside.url()}},
        {**_note("after the hook"), "start": "after_previous"},
    ]}})

    failed = await finished(stack.http, item["id"], "hook")
    assert failed["kind"] == "rule_failed"
    assert "settings.url" in failed["text"] and "422" in failed["text"] and "unknown customer" in failed["text"]
    assert (await finished(stack.http, item["id"], "note"))["kind"] == "rule_skipped"
    assert len(outside.requests) == 1
    assert await comments(stack.http, item["id"]) == []


async def test_an_endpoint_that_stays_down_fails_the_rule_after_its_retries(stack):
    with socket_closed() as url:
        item = await shop_deal(stack.http, {"NEW": {"rules": [
            {"name": "hook", "type": "webhook", "settings": {"url": url, "timeout_seconds": 2}},
        ]}})
        failed = await finished(stack.http, item["id"], "hook", timeout=30)
    assert failed["kind"] == "rule_failed"
    assert "cannot be reached" in failed["text"]


@contextmanager
def socket_closed() -> Iterator[str]:
    """A loopback URL whose port is taken but not listened on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


async def test_private_addresses_are_refused_unless_allowed(guarded_stack, outside: Endpoint):
    item = await shop_deal(guarded_stack.http, {"NEW": {"rules": [
        {"name": "hook", "type": "webhook", "settings": {"url": outside.url()}},
    ]}})

    failed = await finished(guarded_stack.http, item["id"], "hook")
    assert failed["kind"] == "rule_failed"
    assert "loopback" in failed["text"] and "STAGEFLOW_ALLOW_PRIVATE_URLS" in failed["text"]
    assert outside.requests == []


async def _callback(stack, outside: Endpoint) -> tuple[str, dict]:
    await eventually(lambda: outside.requests)
    request = outside.requests[0]
    return request.headers["x-stageflow-callback"], request.json()


async def test_values_posted_to_the_callback_url_reach_the_later_rules(stack, outside: Endpoint):
    outside.default = (202, {"accepted": True})
    item = await shop_deal(stack.http, {"NEW": {"rules": [
        {"name": "hook", "type": "webhook", "settings": {
            "url": outside.url(), "wait_for_callback": True, "callback_timeout": "1h", "returns": ["order_no"]}},
        {**_note("Order {{Rule.hook.order_no}}, timed out: {{Rule.hook.timed_out}}"), "start": "after_previous"},
    ]}})

    callback, sent = await _callback(stack, outside)
    assert sent["callback_url"] == callback and sent["item"]["Id"] == item["id"]
    await asyncio.sleep(1)
    assert await comments(stack.http, item["id"]) == []
    waiting = [entry["kind"] for entry in await rule_entries(stack.http, item["id"], "hook")]
    assert waiting == ["rule_scheduled", "rule_waiting"], waiting
    [pending] = ok(await stack.http.get(f"/deals/{item['id']}/pending", params={"limit": 1}))
    assert (pending["rule"], pending["state"]) == ("hook", "waiting_callback")

    path = httpx.URL(callback).raw_path.decode()
    ok(await stack.anon.post(path, json={"order_no": "C-3", "eta": "tomorrow"}), 202)
    assert (await finished(stack.http, item["id"], "note"))["kind"] == "rule_done"
    assert await comments(stack.http, item["id"]) == ["Order C-3, timed out: false"]
    done = [entry for entry in await rule_entries(stack.http, item["id"], "hook") if entry["kind"] == "rule_done"]
    assert [entry["data"]["result"] for entry in done] == [
        {"status_code": 202, "order_no": "C-3", "eta": "tomorrow", "timed_out": False}]
    again = await stack.anon.post(path, json={"order_no": "C-4"})
    assert again.status_code == 404
    assert await comments(stack.http, item["id"]) == ["Order C-3, timed out: false"]


async def test_without_a_callback_the_rule_goes_on_after_its_timeout_and_says_so(stack, outside: Endpoint):
    item = await shop_deal(stack.http, {"NEW": {"rules": [
        {"name": "hook", "type": "webhook", "settings": {
            "url": outside.url(), "wait_for_callback": True, "callback_timeout": "1s", "returns": ["order_no"],
            "body": {"contact": "{{Deal.Contact.Name}}"}}},
        {**_note("Order '{{Rule.hook.order_no}}', timed out: {{Rule.hook.timed_out}}"), "start": "after_previous"},
    ]}})

    assert (await finished(stack.http, item["id"], "note"))["kind"] == "rule_done"
    assert await comments(stack.http, item["id"]) == ["Order '', timed out: true"]
    kinds = [entry["kind"] for entry in await rule_entries(stack.http, item["id"], "hook")]
    assert kinds == ["rule_scheduled", "rule_waiting", "rule_timed_out", "rule_done"], kinds
    texts = " ".join(entry["text"] for entry in await rule_entries(stack.http, item["id"], "hook")).lower()
    assert "timed out" in texts or "timeout" in texts
    # What rendered as nothing is said when each rule is done: the one that waited, and the one after it.
    [hook_done] = [entry for entry in await rule_entries(stack.http, item["id"], "hook") if entry["kind"] == "rule_done"]
    assert hook_done["data"]["empty_placeholders"] == ["Deal.Contact.Name"]
    assert hook_done["text"].endswith("; these placeholders had no value: Deal.Contact.Name")
    note_done = await finished(stack.http, item["id"], "note")
    assert note_done["data"]["empty_placeholders"] == ["Rule.hook.order_no"]
