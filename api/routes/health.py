"""GET /health: the database and Temporal, checked on each call (no key needed)."""

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


@router.get(
    "/health",
    response_model=Health,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Health, "description": "A dependency is down"}},
)
async def health(request: Request, client: ClientDep):
    database = await _check("database", run_in_threadpool(_ping_database, request.app.state.engine))
    temporal = await _check(
        "temporal",
        client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=timedelta(seconds=CHECK_TIMEOUT)),
    )
    ok = database == "ok" and temporal == "ok"
    body = Health(status="ok" if ok else "error", database=database, temporal=temporal)
    return JSONResponse(body.model_dump(), status_code=status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE)
