"""Scale-out under sustained load: PostgreSQL, the Temporal dev server, two workers and two API processes behind
HAProxy, all on loopback, a real SMTP server for the emails. For two minutes a load generator creates deals at a
fixed rate and moves, pays and re-dates them (tests/scale/load.py). At 35 s one worker and one API are killed with
kill -9 and started again; at 75 s the other worker and API are restarted one by one with SIGTERM, as a rolling
deployment does. In the end every accepted request's effect is there exactly once, every rule due took effect once
and none early, every email reached the SMTP server once, and no workflow task failed."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.faults.cluster import Mailbox, record_figures
from tests.faults.effects import until
from tests.scale.deploy import Installation, installation
from tests.scale.load import Load, due_rules_done, expected_outcomes, lateness_after, problems

RATE = 1.5
"""Deals created a second; with their moves, payments and PATCHes, about 2.3 requests a second."""
SECONDS = 120
KILL_AT, ROLL_AT = 35, 75


async def failed_workflow_tasks(address: str) -> list[str]:
    """The workflows whose history holds a failed workflow task (a bug or a non-deterministic change; a worker
    killed mid-task leaves a timed-out one instead, which the next worker takes over)."""
    client = await Client.connect(address)
    failed = []
    async for execution in client.list_workflows():
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        if any(event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for event in history.events):
            failed.append(execution.id)
    return failed


async def chaos(deploy: Installation, load: Load, marks: dict[str, float]) -> None:
    """kill -9 of worker-1 and api-1, started again; later a rolling restart (SIGTERM) of worker-2, then api-2."""
    await asyncio.sleep(max(0.0, KILL_AT - load.now()))
    marks["kill"] = load.now()
    deploy.cluster.kill("worker-1")
    deploy.cluster.kill("api-1")
    await asyncio.sleep(3)
    await asyncio.to_thread(deploy.start_worker, "worker-1")
    await asyncio.to_thread(deploy.start_api, "api-1")
    marks["restarted"] = load.now()
    await asyncio.sleep(max(0.0, ROLL_AT - load.now()))
    marks["roll"] = load.now()
    marks["worker_stop_seconds"] = await asyncio.to_thread(deploy.cluster.terminate, "worker-2")
    await asyncio.to_thread(deploy.start_worker, "worker-2")
    marks["api_stop_seconds"] = await asyncio.to_thread(deploy.cluster.terminate, "api-2")
    await asyncio.to_thread(deploy.start_api, "api-2")
    marks["rolled"] = load.now()


@pytest.mark.timeout(600)
async def test_two_workers_and_two_apis_behind_a_balancer_keep_every_promise_through_kills_and_a_rolling_restart(
    tmp_path: Path,
):
    with installation(tmp_path, STAGEFLOW_RULE_RETRY_INITIAL_SECONDS="0.5") as deploy:
        mailbox = Mailbox(int(deploy.cluster.env["SMTP_PORT"]))
        mailbox.up()
        try:
            began = time.monotonic()
            deploy.cluster.start_temporal()
            for name in ("worker-1", "worker-2"):
                deploy.start_worker(name)
            for name in ("api-1", "api-2"):
                deploy.start_api(name)
            deploy.start_balancer()
            started_in = time.monotonic() - began
            load = Load(deploy.url, deploy.cluster.headers, RATE, SECONDS)
            await load.prepare()
            marks: dict[str, float] = {}
            await asyncio.gather(load.run(), chaos(deploy, load, marks))
            engine = deploy.cluster.engine()
            drained = time.monotonic()
            settled = await until(lambda: due_rules_done(engine, load.pipeline_id, expected_outcomes(load)),
                                  timeout=120, interval=1.0)
            drain_seconds = time.monotonic() - drained
            mails = Counter(re.sub(r"^Your order ", "", str(message["Subject"])) for message in mailbox.messages)
            found = problems(load, engine, mails)
            failed = await failed_workflow_tasks(deploy.cluster.temporal_address)
            lateness = lateness_after(engine, load.pipeline_id, load, marks["kill"], marks["kill"] + 10)
        finally:
            mailbox.down()

    figures = {
        **load.figures(),
        "processes": "PostgreSQL, Temporal dev server, 2 workers, 2 APIs, HAProxy",
        "seconds_to_start": round(started_in, 1),
        "latency_before_kill": load.latency(0, marks["kill"]),
        "latency_kill_to_restarted_plus_10s": load.latency(marks["kill"], marks["restarted"] + 10),
        "latency_rolling_restart": load.latency(marks["roll"], marks["rolled"] + 5),
        "latency_after": load.latency(marks["rolled"] + 5, SECONDS),
        "killed_at_second": round(marks["kill"], 1),
        "killed_restarted_after_seconds": round(marks["restarted"] - marks["kill"], 1),
        "graceful_worker_stop_seconds": round(marks["worker_stop_seconds"], 1),
        "graceful_api_stop_seconds": round(marks["api_stop_seconds"], 1),
        "max_lateness_of_rules_due_in_the_10s_after_the_kill": lateness,
        "seconds_to_settle_after_the_load": round(drain_seconds, 1),
        "emails": sum(mails.values()),
        "problems": len(found),
        "workflows_with_a_failed_task": len(failed),
    }
    record_figures("scale_out", figures)
    assert settled, figures
    assert found == [], found[:20]
    assert failed == [], failed[:20]
    assert figures["failed_requests"] == 0, figures
    assert figures["deals_created_per_second"] >= RATE * 0.95, figures
