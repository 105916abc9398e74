"""Helpers for the HTTP API tests."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import httpx
from fastapi.routing import iter_route_contexts

from tests.crm import eventually, ok, pipeline, user

PUBLIC_PREFIXES = ("/health", "/ready", "/metrics", "/public/", "/sign/", "/hooks/", "/callbacks/", "/t/", "/docs",
                   "/openapi.json", "/redoc", "/ui", "/payments/stripe", "/channels/")
"""Routes without an API key: the service's health, readiness and metrics (the metrics' own key has tests in
tests/operations/), public links, docs, the console (its session has tests of its own), and the webhooks of Stripe and
of the messenger and call providers (their signatures have tests of their own)."""
SAMPLE_PARAMS = {"code": "sample_code", "token": "sample-token-0123456789", "kind": "pdf", "secret": "sample"}


def api_routes(app) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, HEAD left out."""
    routes = []
    for route in iter_route_contexts(app.routes):
        for method in sorted(getattr(route, "methods", None) or []):
            if method != "HEAD":
                routes.append((method, route.path))
    return routes


def concrete(path: str) -> str:
    """A path template with sample values for its parameters (ids are 1)."""
    return re.sub(r"\{(\w+)\}", lambda match: SAMPLE_PARAMS.get(match.group(1), "1"), path)


async def total(client: httpx.AsyncClient, path: str, **params: Any) -> int:
    response = await client.get(path, params=params)
    assert response.status_code == HTTPStatus.OK, response.text
    return int(response.headers["X-Total-Count"])


def problem_locs(response: httpx.Response) -> list[list]:
    """The `loc` of every field problem in a 4xx answer."""
    detail = response.json()["detail"]
    assert isinstance(detail, list), detail
    return [problem["loc"] for problem in detail]


def assert_problem(response: httpx.Response, status: int, *loc: str | int) -> None:
    assert response.status_code == status, response.text
    assert list(loc) in problem_locs(response), response.text


async def stage_of(stack, entity: str, item_id: int) -> str | None:
    return ok(await stack.http.get(f"/{entity}s/{item_id}"))["stage"]


async def wait_for_stage(stack, entity: str, item_id: int, stage: str) -> None:
    async def there() -> bool:
        return await stage_of(stack, entity, item_id) == stage

    await eventually(there)


async def crm(stack, stages: list[str], *, entity: str = "deal", automation: dict | None = None) -> tuple[dict, dict]:
    """A manager and a pipeline with the given stages (and automation)."""
    manager = await user(stack.http, "Manager", email="manager@example.com")
    flow = await pipeline(stack.http, stages, entity=entity)
    if automation is not None:
        ok(await stack.http.put(f"/pipelines/{flow['id']}/automation", json={"stages": automation}))
    return flow, manager


def insert(stack, *rows):
    """Rows written straight to the test's database (what rules would have made); returns them with ids."""
    with stack.session() as session:
        for row in rows:
            session.add(row)
        session.flush()
        for row in rows:
            session.refresh(row)
    return rows
