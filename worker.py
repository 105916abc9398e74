"""Starts the Temporal worker that runs stageflow's workflows and rule activities."""

from __future__ import annotations

import asyncio
import logging
import signal

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.document_store import resume_pending_pdfs
from activities.engine import EngineActivities
from activities.rule import Deps
from activities.rules import APP_RULES, RULE_TYPES
from api.logs import install_redaction
from models.db import create_schema, make_engine
from models.settings import Settings, get_settings
from workflows.entry import StageEntryWorkflow
from workflows.item import ItemWorkflow
from workflows.types import SEARCH_ATTRIBUTES

log = logging.getLogger("stageflow.worker")
WORKFLOWS = [ItemWorkflow, StageEntryWorkflow]


def build_worker(client: Client, deps: Deps, task_queue: str | None = None, **options) -> Worker:
    activities = EngineActivities(deps, RULE_TYPES, APP_RULES)
    # Few workflow task slots: they share one event loop, and when many timers fire at once 200 slots made every
    # task slow (thousands over 5 s in a burst of 1,000) where 20 keep each short at the same rate.
    options.setdefault("max_concurrent_activities", deps.settings.worker_activity_slots)
    options.setdefault("max_concurrent_workflow_tasks", deps.settings.worker_workflow_task_slots)
    # Workflow modules import only the standard library, temporalio and plain data, so every import is passed
    # through instead of being re-imported for each workflow run; the sandbox still refuses non-deterministic
    # calls such as datetime.now().
    options.setdefault(
        "workflow_runner",
        SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_all_modules()),
    )
    return Worker(
        client,
        task_queue=task_queue or deps.settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        **options,
    )


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


async def connect(settings: Settings, attempts: int = 60) -> Client:
    for attempt in range(attempts):
        try:
            return await Client.connect(settings.effective_temporal_address, namespace=settings.temporal_namespace)
        except RuntimeError as error:
            if attempt == attempts - 1:
                raise
            log.info("Temporal at %s not ready (%s); retrying", settings.effective_temporal_address, error)
            await asyncio.sleep(1)
    raise RuntimeError("unreachable")


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    install_redaction()
    settings = get_settings()
    engine = make_engine(settings.effective_database_url)
    create_schema(engine)
    client = await connect(settings)
    await ensure_search_attributes(client, settings.temporal_namespace)
    worker = build_worker(client, Deps(settings=settings, database=engine, client=client))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker on task queue %s at %s", settings.temporal_task_queue, settings.effective_temporal_address)
    async with worker:
        resumed = await resume_pending_pdfs(engine)
        if resumed:
            log.info("resumed %d document PDF renders", resumed)
        await stop.wait()
    engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
