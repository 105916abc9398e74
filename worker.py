"""Starts the Temporal worker that runs stageflow's workflows and rule activities."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from datetime import timedelta

import uvloop
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client

from activities.metrics import RuleMetrics, worker_runtime
from activities.services.pdf_runner import resume_pending_pdfs
from activities.rule import Deps
from activities.worker import build_worker
from models.logs import install_redaction
from models.db import create_schema, make_engine
from models.settings import get_settings
from workflows.connection import connect
from workflows.types import SEARCH_ATTRIBUTES

log = logging.getLogger("stageflow.worker")
async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Registers the search attributes admins use to find an item's workflows in the Temporal UI."""
    existing = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    missing = {
        name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for name in SEARCH_ATTRIBUTES
        if name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    install_redaction()
    settings = get_settings()
    engine = make_engine(settings.effective_database_url)
    create_schema(engine)
    runtime = worker_runtime(settings)
    client = await connect(settings, runtime=runtime)
    await ensure_search_attributes(client, settings.temporal_namespace)
    metrics = RuleMetrics(runtime.metric_meter if runtime is not None else None)
    worker = build_worker(
        client, Deps(settings=settings, database=engine, client=client, metrics=metrics),
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_seconds),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if runtime is not None:
        log.info("worker metrics at http://0.0.0.0:%s/metrics", settings.worker_metrics_port)
    log.info("worker on task queue %s at %s", settings.temporal_task_queue, settings.effective_temporal_address)
    async with worker:
        resumed = await resume_pending_pdfs(engine)
        if resumed:
            log.info("resumed %d document PDF renders", resumed)
        await stop.wait()
        log.info(
            "stopping: no new tasks; running activities get up to %g s to finish", settings.worker_shutdown_seconds
        )
        stopping = time.monotonic()
    log.info("stopped in %.1f s", time.monotonic() - stopping)
    engine.dispose()


if __name__ == "__main__":
    # uvloop's event loop: the worker's Temporal calls, activity results and database threads wake it less dearly
    # than asyncio's own loop. Workflow code runs on the SDK's deterministic loop either way.
    uvloop.run(main())
