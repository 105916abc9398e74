"""SIGTERM to a worker in the middle of an outside call (a webhook whose endpoint takes 5 s to answer): the worker
stops taking tasks, lets the call finish and exits; the rule takes effect once (one request at the endpoint, one
`rule_done`, one effect row), finished by the stopping worker while a second one, started for the deploy, carries the
entry on. Also: the API started with STAGEFLOW_METRICS_KEY refuses /metrics without that key."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from models.tables import Effect, TimelineEntry
from scripts.local import free_port
from tests.crm import automate, deal, pipeline, user
from tests.faults.cluster import Cluster, wait_for
from tests.faults.effects import until
from tests.operations.support import record_figures, slow_endpoint

ANSWER_SECONDS = 5.0
SHUTDOWN_SECONDS = 30.0
METRICS_KEY = "metrics-" + "k" * 24


def rule_rows(engine, item_id: int) -> dict[str, int]:
    key = f"deal-{item_id}/entry-1/call"
    with Session(engine) as session:
        done = session.exec(select(TimelineEntry).where(
            TimelineEntry.item_id == item_id, TimelineEntry.rule_name == "call",
            col(TimelineEntry.kind).in_(("rule_done", "rule_failed", "rule_cancelled")))).all()
        effects = session.exec(select(Effect).where(Effect.key == key)).all()
    return {
        "rule_done": sum(entry.kind == "rule_done" for entry in done),
        "rule_failed": sum(entry.kind == "rule_failed" for entry in done),
        "rule_cancelled": sum(entry.kind == "rule_cancelled" for entry in done),
        "effects": len(effects),
        "effects_done": sum(effect.status == "done" for effect in effects),
    }


async def rule_attempts(address: str, workflow_id: str) -> list[tuple[str, int, str]]:
    """(event, attempt, worker identity) of the webhook activity's started and completed events in the entry's
    history."""
    client = await Client.connect(address)
    seen = []
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            seen.append(("started", started.attempt, started.identity))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            seen.append(("completed", 0, event.activity_task_completed_event_attributes.identity))
    return seen


@pytest.mark.timeout(300)
async def test_sigterm_lets_a_running_outside_call_finish(cluster: Cluster):
    cluster.env.update(STAGEFLOW_METRICS_KEY=METRICS_KEY, STAGEFLOW_WORKER_SHUTDOWN_SECONDS=str(SHUTDOWN_SECONDS))
    with slow_endpoint(ANSWER_SECONDS) as endpoint:
        cluster.start()
        first = cluster.running["worker"]
        async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
            manager = await user(http, "Manager")
            flow = await pipeline(http, ["NEW", "DONE"])
            await automate(http, flow["id"], {"NEW": {"rules": [
                {"name": "call", "type": "webhook", "settings": {"url": endpoint.url, "timeout_seconds": 20}},
            ]}})
            item = (await deal(http, flow["id"], manager["id"], title="Sofa"))["id"]
        assert endpoint.first.wait(60), "the webhook never reached the endpoint"
        time.sleep(0.5)

        exited: dict[str, float] = {}
        signalled = time.monotonic()
        os.kill(first.pid, signal.SIGTERM)
        threading.Thread(target=lambda: exited.setdefault("at", (first.popen.wait(), time.monotonic())[1]),
                         daemon=True).start()
        # The deploy starts the next worker at once (its own metrics port: both run on this host for a while).
        cluster.env["STAGEFLOW_WORKER_METRICS_PORT"] = str(free_port())
        cluster.start_worker()

        wait_for(lambda: "at" in exited, SHUTDOWN_SECONDS + 30, "the signalled worker exits")
        stop_seconds = exited["at"] - signalled
        engine = cluster.engine()
        done = await until(lambda: rule_rows(engine, item)["rule_done"] == 1, timeout=60)
        time.sleep(3)  # room for a duplicate, if anything were to retry the call
        rows = rule_rows(engine, item)
        attempts = await rule_attempts(cluster.temporal_address, f"deal-{item}/entry-1")
        answered_before_exit = bool(endpoint.answered) and endpoint.answered[0] <= exited["at"]

    completed_by = [identity for event, _, identity in attempts if event == "completed"]
    figures = {
        "endpoint_answer_seconds": ANSWER_SECONDS,
        "seconds_from_sigterm_to_exit": round(stop_seconds, 2),
        "seconds_from_request_to_sigterm": round(signalled - endpoint.arrived[0], 2),
        "worker_exit_code": first.popen.returncode,
        "requests_at_endpoint": len(endpoint.arrived),
        "activity_attempts": [attempt for event, attempt, _ in attempts if event == "started"],
        "finished_on": "stopping worker" if completed_by and completed_by[0].startswith(f"{first.pid}@")
        else "second worker",
        **rows,
    }
    record_figures("graceful_stop", figures)
    assert done, figures
    assert first.popen.returncode == 0, (figures, first.output()[-3000:])
    assert len(endpoint.arrived) == 1, figures
    assert rows == {"rule_done": 1, "rule_failed": 0, "rule_cancelled": 0, "effects": 1, "effects_done": 1}, figures
    assert answered_before_exit, figures
    assert figures["finished_on"] == "stopping worker" and figures["activity_attempts"] == [1], figures
    assert ANSWER_SECONDS - 1.0 <= stop_seconds < SHUTDOWN_SECONDS, figures
    assert "stopping: no new tasks" in first.output() and "stopped in" in first.output()


def test_the_metrics_key_is_asked_for_when_set(cluster: Cluster):
    cluster.env.update(STAGEFLOW_METRICS_KEY=METRICS_KEY)
    cluster.start_temporal()
    cluster.start_api()
    url = f"{cluster.api_url}/metrics"
    refused = {
        "none": httpx.get(url, timeout=10),
        "wrong": httpx.get(url, headers={"Authorization": "Bearer " + "x" * len(METRICS_KEY)}, timeout=10),
        "admin key": httpx.get(url, headers=cluster.headers, timeout=10),
        "not bearer": httpx.get(url, headers={"Authorization": f"Basic {METRICS_KEY}"}, timeout=10),
        "longer": httpx.get(url, headers={"Authorization": f"Bearer {METRICS_KEY}x"}, timeout=10),
    }
    for how, answer in refused.items():
        assert answer.status_code == 401, (how, answer.status_code, answer.text)
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert "stageflow_http_requests_total" not in answer.text
    allowed = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_KEY}"}, timeout=10)
    assert allowed.status_code == 200, allowed.text
    assert 'route="/metrics",status="401"' in allowed.text
    assert httpx.get(f"{cluster.api_url}/ready", timeout=15).status_code == 200
