"""Who gets in: an API key on every route but the public ones, admin keys for configuration."""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from http import HTTPStatus
from pathlib import Path

import httpx
from sqlalchemy import create_engine
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tests.api.support import PUBLIC_PREFIXES, api_routes, concrete, total
from tests.stacks import ADMIN_KEY, stack_settings
from tests.crm import ok

ADMIN_ROUTES = {
    ("POST", "/users"),
    ("PATCH", "/users/{user_id}"),
    ("POST", "/api-keys"),
    ("GET", "/api-keys"),
    ("DELETE", "/api-keys/{key_id}"),
    ("POST", "/pipelines"),
    ("PATCH", "/pipelines/{pipeline_id}"),
    ("POST", "/pipelines/{pipeline_id}/stages"),
    ("PATCH", "/pipelines/{pipeline_id}/stages/{code}"),
    ("DELETE", "/pipelines/{pipeline_id}/stages/{code}"),
    ("PUT", "/pipelines/{pipeline_id}/automation"),
    ("POST", "/pipelines/{pipeline_id}/automation/preview"),
    ("POST", "/pipelines/{pipeline_id}/automation/versions/{version}/restore"),
    ("POST", "/rule-types"),
    ("PUT", "/settings/company"),
    ("PUT", "/settings/calendar"),
    ("POST", "/document-templates"),
    ("DELETE", "/document-templates/{code}"),
    ("POST", "/simulations"),
    ("GET", "/simulations/{simulation_id}"),
    ("GET", "/simulations/{simulation_id}/documents/{document_id}/{kind}"),
    ("GET", "/simulations/{simulation_id}/public/documents/{token}"),
    ("GET", "/simulations/{simulation_id}/public/documents/{token}/{kind}"),
    ("POST", "/deals/{deal_id}/simulate"),
    ("POST", "/leads/{lead_id}/simulate"),
    ("POST", "/failures/retry"),
}
BAD_CREDENTIALS = [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}]


def guarded_routes(app) -> list[tuple[str, str]]:
    return [(method, path) for method, path in api_routes(app) if not path.startswith(PUBLIC_PREFIXES)]


async def test_every_route_but_the_public_ones_refuses_a_missing_or_wrong_key(stack):
    routes = guarded_routes(stack.app)
    assert len(routes) > 50
    for method, path in routes:
        for headers in BAD_CREDENTIALS:
            response = await stack.anon.request(method, concrete(path), headers=headers, json={})
            assert response.status_code == HTTPStatus.UNAUTHORIZED, (method, path, headers, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await total(stack.http, "/users") == 0
    assert await total(stack.http, "/pipelines") == 0


async def test_member_keys_are_refused_configuration_and_allowed_the_rest(stack):
    routes = guarded_routes(stack.app)
    assert ADMIN_ROUTES <= set(routes), ADMIN_ROUTES - set(routes)
    for method, path in routes:
        response = await stack.member.request(method, concrete(path), json={})
        if (method, path) in ADMIN_ROUTES:
            assert response.status_code == HTTPStatus.FORBIDDEN, (method, path, response.text)
        else:
            assert response.status_code != HTTPStatus.FORBIDDEN, (method, path, response.text)
    assert await total(stack.http, "/users") == 0
    assert await total(stack.http, "/pipelines") == 0
    assert await total(stack.http, "/api-keys") == 1


async def test_the_openapi_description_and_docs_need_no_key(stack):
    schema = ok(await stack.anon.get("/openapi.json"))
    assert {"/deals/{deal_id}/move", "/leads/{lead_id}/move", "/hooks/{secret}", "/health"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert (await stack.anon.get("/docs")).status_code == HTTPStatus.OK


async def test_api_keys_are_shown_once_stored_hashed_and_can_be_revoked(stack):
    created = ok(await stack.http.post("/api-keys", json={"name": "web shop", "role": "member"}), HTTPStatus.CREATED)
    admin = ok(await stack.http.post("/api-keys", json={"name": "ops", "role": "admin"}), HTTPStatus.CREATED)
    listed = ok(await stack.http.get("/api-keys"))
    assert {key["name"] for key in listed} == {"member", "web shop", "ops"}
    assert all("key" not in key for key in listed)
    assert created["key"] not in str(listed)

    shop = {"Authorization": f"Bearer {created['key']}"}
    ok(await stack.anon.get("/deals", headers=shop))
    forbidden = await stack.anon.post("/users", json={"name": "Eve"}, headers=shop)
    assert forbidden.status_code == HTTPStatus.FORBIDDEN
    ok(await stack.anon.post("/users", json={"name": "Olga"}, headers={"Authorization": f"Bearer {admin['key']}"}), HTTPStatus.CREATED)

    assert (await stack.http.delete(f"/api-keys/{created['id']}")).status_code == HTTPStatus.NO_CONTENT
    refused = await stack.anon.get("/deals", headers=shop)
    assert refused.status_code == HTTPStatus.UNAUTHORIZED
    assert [key["revoked"] for key in ok(await stack.http.get("/api-keys")) if key["id"] == created["id"]] == [True]
    assert (await stack.http.delete("/api-keys/999")).status_code == HTTPStatus.NOT_FOUND


async def test_api_key_requests_are_validated(stack):
    bad_role = await stack.http.post("/api-keys", json={"name": "x", "role": "owner"})
    assert bad_role.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert ["body", "role"] in [problem["loc"] for problem in bad_role.json()["detail"]]
    no_name = await stack.http.post("/api-keys", json={"role": "member"})
    assert no_name.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert await total(stack.http, "/api-keys") == 1


async def test_health_needs_no_key_and_reports_each_part(stack):
    assert ok(await stack.anon.get("/health")) == {"status": "ok", "database": "ok", "temporal": "ok"}

    stack.app.state.engine = create_engine("sqlite:////nonexistent-directory/stageflow.db")
    down = await stack.anon.get("/health")
    assert down.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    body = down.json()
    assert (body["status"], body["temporal"]) == ("error", "ok")
    assert body["database"].startswith("error")


async def test_a_temporal_server_gone_down_is_a_503_never_a_500(tmp_path):
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"), dev_server_log_level="error"
    )
    app = create_app(stack_settings(tmp_path), temporal_client=env.client)
    async with AsyncExitStack() as exit_stack:
        exit_stack.push_async_callback(env.shutdown)
        await exit_stack.enter_async_context(app.router.lifespan_context(app))
        client = await exit_stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        ))
        assert ok(await client.get("/health"))["temporal"] == "ok"
        manager = ok(await client.post("/users", json={"name": "Manager"}), HTTPStatus.CREATED)
        flow = ok(await client.post("/pipelines", json={"entity_type": "deal", "name": "Sales",
                                                        "stages": [{"code": "NEW", "name": "New"}]}), HTTPStatus.CREATED)
        await env.shutdown()
        health = await client.get("/health")
        created = await client.post("/deals", json={"title": "Sofa", "pipeline_id": flow["id"], "responsible_id": manager["id"]})
    assert health.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    body = health.json()
    assert (body["status"], body["database"]) == ("error", "ok")
    assert body["temporal"].startswith("error")
    assert created.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert "workflow service" in created.json()["detail"]
