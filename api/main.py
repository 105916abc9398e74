"""The FastAPI application: `uvicorn api.main:create_app --factory`."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from sqlalchemy.exc import IntegrityError
from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from api.console.routes import STATIC as CONSOLE_STATIC
from api.console.routes import router as console_router
from api.console.pages import ERROR_WORDS, error_page, wants_page
from api.console.session import SignInNeeded
from api.limits import BodyLimitMiddleware
from api.metrics import ApiMetrics, MetricsMiddleware
from api.texts import TextOnlyMiddleware
from models.logs import install_redaction
from api.routes import api_router
from api.routes.document_templates import TEMPLATE_UPLOAD_MAX_BYTES
from api.routes.settings import COMPANY_MAX_BODY_BYTES
from models.db import create_schema, make_engine
from models.settings import Settings, get_settings
from workflows.connection import connect

log = logging.getLogger(__name__)


def json_safe(value: Any) -> Any:
    """The value with NaN and infinities (echoed back from a refused input) as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


ECHO_LIMIT = 200
"""How much of a refused text a 422 echoes back as its `input`."""
UNREADABLE_BODY = "There was an error parsing the body"
"""FastAPI's 400 for a body it could not parse beyond JSON's own errors (nested deeper than Python reads)."""


def short_input(problem: dict[str, Any]) -> dict[str, Any]:
    """A problem with the refused input it echoes kept short: a long text cut (its length said), a large object or
    list left out; the `loc` and `msg` say where and what."""
    value = problem.get("input")
    if isinstance(value, str) and len(value) > ECHO_LIMIT:
        return {**problem, "input": f"{value[:ECHO_LIMIT]}… ({len(value):,} characters)"}
    if isinstance(value, (dict, list)) and len(repr(value)) > ECHO_LIMIT * 5:
        return {key: item for key, item in problem.items() if key != "input"}
    return problem


def create_app(settings: Settings | None = None, *, temporal_client: Client | None = None) -> FastAPI:
    """The API app. Its lifespan makes the DB engine and one Temporal client (or uses the one given)."""
    settings = settings or get_settings()
    install_redaction()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.effective_database_url)
        create_schema(engine)
        client = temporal_client or await connect(settings)
        app.state.engine = engine
        app.state.temporal_client = client
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="stageflow",
        summary="CRM automation rules and triggers, run as durable workflows on Temporal",
        version="0.10.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(TextOnlyMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        larger={
            "/document-templates": max(settings.max_body_bytes, TEMPLATE_UPLOAD_MAX_BYTES),
            "/settings/company": max(settings.max_body_bytes, COMPANY_MAX_BODY_BYTES),
        },
    )
    app.state.metrics = ApiMetrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = json_safe(jsonable_encoder([short_input(problem) for problem in exc.errors()]))
        if wants_page(request):
            return error_page(request, status.HTTP_422_UNPROCESSABLE_CONTENT, problems)
        return JSONResponse({"detail": problems}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(RPCError)
    async def _temporal_error(request: Request, exc: RPCError) -> JSONResponse:
        log.warning("Temporal call failed for %s %s: %s", request.method, request.url.path, exc)
        if exc.status == RPCStatusCode.NOT_FOUND:
            return JSONResponse(
                {"detail": "The item's workflow was not found on the workflow service"},
                status_code=status.HTTP_409_CONFLICT,
            )
        return JSONResponse(
            {"detail": f"The workflow service is unavailable: {exc.message}"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.exception_handler(WorkflowUpdateRPCTimeoutOrCancelledError)
    async def _no_answer(request: Request, exc: WorkflowUpdateRPCTimeoutOrCancelledError) -> JSONResponse:
        log.warning("No answer from the item workflow for %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": "The item's workflow did not answer in time (is a worker running?); retry with the same "
             "Idempotency-Key"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.exception_handler(IntegrityError)
    async def _conflict(request: Request, exc: IntegrityError) -> JSONResponse:
        log.info("Integrity conflict for %s %s: %s", request.method, request.url.path, exc.orig)
        return JSONResponse(
            {"detail": "The request conflicts with the current data; read it again and retry"},
            status_code=status.HTTP_409_CONFLICT,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _refused(request: Request, exc: StarletteHTTPException) -> Response:
        if (exc.status_code == status.HTTP_400_BAD_REQUEST and exc.detail == UNREADABLE_BODY
                and "json" in request.headers.get("content-type", "") and not wants_page(request)):
            return JSONResponse({"detail": [{
                "type": "json_invalid", "loc": ["body"],
                "msg": "the body could not be read as JSON: it is nested too deep or is not JSON"}]},
                status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
        if wants_page(request) and exc.status_code in ERROR_WORDS:
            return error_page(request, exc.status_code, exc.detail)
        return await http_exception_handler(request, exc)

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        if request.method == "GET":
            return RedirectResponse("/ui/login", status_code=status.HTTP_303_SEE_OTHER)
        return JSONResponse({"detail": "Sign in to the console first"}, status_code=status.HTTP_401_UNAUTHORIZED)

    app.include_router(api_router)
    app.include_router(console_router)
    app.mount("/ui/static", StaticFiles(directory=CONSOLE_STATIC), name="console-static")
    return app
