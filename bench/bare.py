"""The bare-engine baseline: plain Temporal workflows with trivial activities, a signal/query/update workflow, an
item workflow created by update-with-start, and a workflow that waits for a moment, then runs one local activity.

`python bench/bare.py --address HOST:PORT --task-queue QUEUE` runs their worker (one Python process), with the
same slot settings stageflow's worker uses, until SIGTERM. bench/run.py starts it beside the stageflow stack on
the same Temporal server.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

STEP_TIMEOUT = timedelta(seconds=30)


@activity.defn(name="bare_step")
async def bare_step(value: int) -> int:
    return value + 1


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    """K trivial activities in sequence."""

    @workflow.run
    async def run(self, k: int) -> int:
        value = 0
        for _ in range(k):
            value = await workflow.execute_activity(bare_step, value, start_to_close_timeout=STEP_TIMEOUT)
        return value


@workflow.defn(name="BareTimerWorkflow")
class BareTimerWorkflow:
    """A rule due at a moment, written by hand: a timer until `due` (ISO 8601), then one trivial local activity."""

    @workflow.run
    async def run(self, due: str) -> int:
        remaining = (datetime.fromisoformat(due) - workflow.now()).total_seconds()
        if remaining > 0:
            await workflow.sleep(remaining)
        return await workflow.execute_local_activity(bare_step, 0, start_to_close_timeout=STEP_TIMEOUT)


@workflow.defn(name="BareSignalWorkflow")
class BareSignalWorkflow:
    """Holds the last value signalled; a query reads it. Ends on a `stop` signal."""

    @workflow.init
    def __init__(self) -> None:
        self.value = 0
        self.stopped = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.stopped)
        return self.value

    @workflow.signal
    def set_value(self, value: int) -> None:
        self.value = value

    @workflow.signal
    def stop(self) -> None:
        self.stopped = True

    @workflow.update
    def set_and_read(self, value: int) -> int:
        """The update round trip: the value set, answered from the workflow."""
        self.value = value
        return self.value

    @workflow.query
    def current(self) -> int:
        return self.value


@workflow.defn(name="BareItemWorkflow")
class BareItemWorkflow:
    """An item created by update-with-start, as stageflow creates one: the update enters a stage and answers."""

    @workflow.init
    def __init__(self) -> None:
        self.stage: str | None = None

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.stage is not None and workflow.all_handlers_finished())
        return self.stage or ""

    @workflow.update
    def enter(self, stage: str) -> str:
        self.stage = stage
        return stage


def slot_settings() -> dict[str, int]:
    """stageflow's default slot counts (models/settings.py), so both workers run with the same."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from models.settings import Settings

    fields = Settings.model_fields
    return {
        "max_concurrent_activities": fields["worker_activity_slots"].default,
        "max_concurrent_workflow_tasks": fields["worker_workflow_task_slots"].default,
    }


def build_bare_worker(client: Client, task_queue: str) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWorkflow, BareSignalWorkflow, BareItemWorkflow, BareTimerWorkflow],
        activities=[bare_step],
        **slot_settings(),
    )


async def main(args: argparse.Namespace) -> None:
    client = await Client.connect(args.address, namespace=args.namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with build_bare_worker(client, args.task_queue):
        print("bare worker ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="worker of the bare-engine baseline")
    parser.add_argument("--address", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the event loop: asyncio's, as `asyncio.run` gives, or uvloop's")
    arguments = parser.parse_args()
    if arguments.loop == "uvloop":
        import uvloop

        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
