"""kill -9 of the Temporal dev server while 50 items wait for delayed rules; restarted on its SQLite file.

The worker and the API keep running and reconnect. Every pending rule fires once, no later than the restart
allows. Rules whose activities were running at the kill finish on the worker while the server is down; the
server does not learn of it and runs them again once their timeout passes, and they find their effect stored.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.cluster import Cluster, record_figures
from tests.faults.effects import (
    create_items,
    crm_with_delayed_rules,
    effects_done,
    outcome,
    timeline_kinds,
    until,
)

ITEMS = 50
RULES = ("note", "ping")
DELAY_SECONDS = 15
DOWN_SECONDS = 8
FINISH_BOUND = 150.0
# A rule activity whose completion was lost with the server is retried once its heartbeat (or, without one,
# its start-to-close) timeout has passed; beyond that, nothing may wait longer than the server was down.
LATE_MARGIN = 30.0


@pytest.mark.timeout(360)
async def test_temporal_server_killed_and_restarted_on_its_file(cluster: Cluster):
    cluster.start()
    async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
        flow, manager, _ = await crm_with_delayed_rules(http, f"{DELAY_SECONDS}s")
        items = await create_items(http, flow["id"], manager["id"], ITEMS)
        engine = cluster.engine()
        expected = len(items) * len(RULES)
        scheduled = await until(lambda: sum(timeline_kinds(engine, items, "rule_scheduled").values()) == expected, 30)
        assert scheduled, "the rules of every item were scheduled"

        done_at_kill = effects_done(engine, items)
        killed = time.monotonic()
        cluster.kill("temporal")
        time.sleep(DOWN_SECONDS)
        health = await http.get("/health")
        done_while_down = effects_done(engine, items)
        cluster.start_temporal()
        restarted = time.monotonic()
        await until(lambda: effects_done(engine, items) > min(done_while_down, expected - 1), FINISH_BOUND, 0.1)
        first = time.monotonic() - restarted
        complete = await until(lambda: effects_done(engine, items) >= expected, timeout=FINISH_BOUND, interval=0.5)
        finished = time.monotonic() - restarted
        time.sleep(2)
        after = await http.get("/health")
    result = outcome(engine, items, RULES)
    figures = {
        "items": len(items),
        **result.figures(),
        "pending_at_kill": expected - done_at_kill,
        # Activities running when the server died finish on the worker; their results reach the server later.
        "done_while_down": done_while_down - done_at_kill,
        "seconds_down": round(restarted - killed, 1),
        "seconds_to_first_effect_after_restart": round(first, 1),
        "seconds_to_finish_after_restart": round(finished, 1),
        "max_seconds_late": round(max(result.late), 1),
    }
    figures["unexpected_effects"] = result.extra[:10]
    record_figures("temporal_killed", figures)
    assert health.status_code == 503 and health.json()["temporal"].startswith("error"), health.text
    assert complete, f"effects missing {FINISH_BOUND:.0f} s after the restart: {figures}"
    result.check_each_rule_once(items, RULES, figures)
    assert max(result.late) < restarted - killed + LATE_MARGIN, f"rules fired later than the restart allows: {figures}"
    assert after.status_code == 200, after.text
    assert {process.name for process in cluster.processes} == {"temporal", "worker", "api"}
    assert cluster.running["worker"].alive() and cluster.running["api"].alive()
