"""GET /health and GET /ready: the database and Temporal, checked on each call (no key needed). /ready is for
load balancers and orchestrators: 200 only when both answer, 503 otherwise, so traffic goes to replicas that can
serve it."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import Engine
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from api.deps import ClientDep
from api.schemas import Health

log = logging.getLogger(__name__)
router = APIRouter(tags=["service"])
CHECK_TIMEOUT = 5.0


def _ping_database(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


async def _check(name: str, probe) -> str:
    try:
        await asyncio.wait_for(probe, timeout=CHECK_TIMEOUT)
    except Exception as exc:  # any failure of the dependency is reported, not raised
        log.warning("health check of %s failed: %r", name, exc)
        return f"error: {type(exc).__name__}: {exc}"[:300]
    return "ok"


async def _checked(request: Request, client: Client) -> JSONResponse:
    """Both dependencies checked: 200 with `ok` for each, or 503 naming what failed."""
    database = await _check("database", run_in_threadpool(_ping_database, request.app.state.engine))
    temporal = await _check(
        "temporal",
        client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=timedelta(seconds=CHECK_TIMEOUT)),
    )
    ok = database == "ok" and temporal == "ok"
    body = Health(status="ok" if ok else "error", database=database, temporal=temporal)
    code = status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body.model_dump(), status_code=code)


DOWN = {status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Health, "description": "A dependency is down"}}


@router.get("/health", response_model=Health, responses=DOWN)
async def health(request: Request, client: ClientDep):
    return await _checked(request, client)


@router.get("/ready", response_model=Health, responses=DOWN)
async def ready(request: Request, client: ClientDep):
    """Whether this replica can take traffic: its database and Temporal both answer."""
    return await _checked(request, client)
