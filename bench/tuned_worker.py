"""stageflow's worker with Worker options given as JSON, for measuring worker tuning: `bench/run.py --worker-options`.

Same start-up as `python worker.py` (settings from the environment, schema, search attributes), then
`build_worker(client, deps, **options)`. Besides the Worker's own keyword options (max_cached_workflows,
max_concurrent_activities, max_concurrent_workflow_task_polls, ...) it understands
  "sandbox": "passthrough"  the workflow sandbox with every module passed through (restrictions kept; what
                            build_worker runs with STAGEFLOW_WORKFLOW_SANDBOX=1)
  "sandbox": "reimport"     the stock sandbox, which re-imports the workflow modules for each workflow run
  "sandbox": "off"          no sandbox (UnsandboxedWorkflowRunner, the default of build_worker)
  "db_threads": N           size of the default thread pool the DB work runs in
  "loop": "asyncio"         the standard library's event loop instead of uvloop's, which worker.py runs on
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import signal
import sys
from pathlib import Path

import uvloop
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

sys.path.insert(0, str(Path.cwd()))

from activities.rule import Deps  # noqa: E402
from models.db import create_schema, make_engine  # noqa: E402
from models.settings import get_settings  # noqa: E402
from activities.worker import build_worker  # noqa: E402
from worker import connect, ensure_search_attributes  # noqa: E402


def worker_options(raw: dict) -> dict:
    options = dict(raw)
    sandbox = options.pop("sandbox", None)
    options.pop("db_threads", None)
    options.pop("loop", None)
    if sandbox == "passthrough":
        options["workflow_runner"] = SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
        )
    elif sandbox == "reimport":
        options["workflow_runner"] = SandboxedWorkflowRunner()
    elif sandbox == "off":
        options["workflow_runner"] = UnsandboxedWorkflowRunner()
    return options


async def main(raw: dict) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if raw.get("db_threads"):
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=int(raw["db_threads"]))
        )
    settings = get_settings()
    engine = make_engine(settings.effective_database_url)
    create_schema(engine)
    client = await connect(settings)
    if settings.temporal_search_attributes:
        await ensure_search_attributes(client, settings.temporal_namespace)
    worker = build_worker(client, Deps(settings=settings, database=engine, client=client), **worker_options(raw))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    logging.getLogger("stageflow.worker").info(
        "worker on task queue %s at %s with %s", settings.temporal_task_queue, settings.effective_temporal_address, raw
    )
    async with worker:
        await stop.wait()
    engine.dispose()


if __name__ == "__main__":
    raw = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    if raw.get("loop", "uvloop") == "uvloop":
        uvloop.run(main(raw))
    else:
        asyncio.run(main(raw))
