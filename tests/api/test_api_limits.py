"""Bad input never gets past validation: oversized bodies, malformed JSON, absurd ids, garbage on every route."""

from __future__ import annotations

import re
from http import HTTPStatus

from tests.api.support import api_routes, total
from tests.crm import ok, pipeline, user

# 2147483648: one past the largest id an INTEGER column holds on PostgreSQL.
GARBAGE_IDS = ("abc", "-1", "0", "2147483648", "99999999999999999999999", "1.5", "%00")
TOO_LARGE_ID = 2**31


async def test_oversized_bodies_are_refused_with_a_detail_and_change_nothing(stack):
    limit = stack.settings.max_body_bytes
    huge = {"name": "x" * (limit + 10)}
    refused = await stack.http.post("/users", json=huge)
    assert refused.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert refused.json() == {"detail": f"Request body is larger than {limit} bytes"}

    async def chunks():
        for _ in range(limit // 50_000 + 2):
            yield b" " * 50_000

    streamed = await stack.http.post("/contacts", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert "detail" in streamed.json()
    assert await total(stack.http, "/users") == 0
    assert await total(stack.http, "/contacts") == 0


async def test_malformed_json_is_a_422_naming_the_body(stack):
    for raw in (b'{"name": "Anna"', b"{'name': 'Anna'}", b"", b"null", b"[]", b'"Anna"'):
        response = await stack.member.post("/contacts", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY, (raw, response.text)
        assert response.json()["detail"][0]["loc"][0] == "body"
    nested = b"[" * 100_000 + b"]" * 100_000
    deep = await stack.member.post("/contacts", content=nested, headers={"Content-Type": "application/json"})
    assert HTTPStatus.BAD_REQUEST <= deep.status_code < HTTPStatus.INTERNAL_SERVER_ERROR
    text = await stack.member.post("/contacts", content=b"name=Anna", headers={"Content-Type": "text/plain"})
    assert text.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert await total(stack.member, "/contacts") == 0


async def test_no_route_answers_garbage_with_a_server_error(stack):
    contact = ok(await stack.http.post("/contacts", json={"name": "Anna"}), HTTPStatus.CREATED)
    bodies = [None, [], "text", {"unknown": 1}, {"name": None, "stage": 5, "type": {}, "amount": -1e308}]
    for method, path in api_routes(stack.app):
        if path in ("/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect", "/health"):
            continue
        for concrete_path in sorted({re.sub(r"\{\w+\}", garbage, path) for garbage in GARBAGE_IDS}):
            for body in bodies if method in ("POST", "PUT", "PATCH") else [None]:
                response = await stack.http.request(method, concrete_path, json=body)
                assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR, (method, concrete_path, body, response.text)
    assert ok(await stack.http.get(f"/contacts/{contact['id']}")) == contact
    assert await total(stack.http, "/contacts") == 1
    assert await total(stack.http, "/users") == 0


async def test_ids_in_bodies_and_queries_beyond_what_the_database_holds_are_a_422_naming_the_field(stack):
    flow = await pipeline(stack.http, ["NEW", "WON"])
    manager = await user(stack.http, "Manager")
    refused = await stack.http.post(
        "/deals", json={"pipeline_id": flow["id"], "title": "Sofa", "responsible_id": TOO_LARGE_ID})
    assert refused.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert refused.json()["detail"][0]["loc"] == ["body", "responsible_id"]
    for path, name in (("/deals", "responsible_id"), ("/timeline", "item_id"), ("/notifications", "user_id")):
        listed = await stack.http.get(path, params={name: TOO_LARGE_ID})
        assert listed.status_code == HTTPStatus.UNPROCESSABLE_ENTITY, (path, listed.text)
        assert listed.json()["detail"][0]["loc"] == ["query", name]
    largest = await stack.http.get("/deals", params={"responsible_id": TOO_LARGE_ID - 1})
    assert ok(largest) == []
    assert await total(stack.http, "/deals") == 0
    assert ok(await stack.http.get(f"/users/{manager['id']}"))["name"] == "Manager"
