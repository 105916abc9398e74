"""What an operator scrapes after a short run matches what happened: the worker's endpoint counts each rule once by
type and final outcome, exactly as the timeline shows them, times how late rules started and serves the Temporal
SDK's own metrics beside them; the API's /metrics counts the requests made, by route pattern, method and status."""

from __future__ import annotations

import re
from collections import Counter

import httpx
import pytest
from sqlmodel import Session, col, select

from models.tables import TimelineEntry
from tests.crm import automate, deal, ok, pipeline, user
from tests.faults.cluster import Cluster
from tests.faults.effects import until
from tests.operations.support import Requests, RouteTable, record_figures, scrape, summed

DEALS = 4
RULE_TYPES = {"note": "add_timeline_entry", "later": "add_timeline_entry", "never": "add_timeline_entry",
              "ping": "notify_employee"}
PAID_IN_FULL = {"field": "Deal.Paid", "op": ">=", "value": "{{Deal.Amount}}"}
OUTCOMES = {"rule_done": "done", "rule_skipped": "skipped", "rule_cancelled": "cancelled", "rule_failed": "failed"}


def timeline_rules(engine, items: list[int]) -> Counter:
    """(rule type, outcome) → rules the items' timelines say ran to that outcome."""
    with Session(engine) as session:
        rows = session.exec(select(TimelineEntry.kind, TimelineEntry.rule_name).where(
            col(TimelineEntry.kind).in_(OUTCOMES), col(TimelineEntry.item_id).in_(items))).all()
    return Counter((RULE_TYPES[rule], OUTCOMES[kind]) for kind, rule in rows)


def trigger_events(engine, items: list[int]) -> Counter:
    """matched / missed → events on the items' timelines that fired a trigger, or that triggers of their type let
    pass (a payment short of the amount)."""
    with Session(engine) as session:
        events = session.exec(select(TimelineEntry).where(
            TimelineEntry.kind == "event_received", col(TimelineEntry.item_id).in_(items))).all()
    return Counter(
        "matched" if entry.data.get("matched") else "missed"
        for entry in events if entry.data.get("matched") or entry.data.get("why_not")
    )


@pytest.mark.timeout(300)
async def test_worker_and_api_metrics_match_what_ran(cluster: Cluster):
    cluster.start()
    worker_metrics = f"http://127.0.0.1:{cluster.env['STAGEFLOW_WORKER_METRICS_PORT']}/metrics"
    made = Requests()
    async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60,
                                 event_hooks={"response": [made.hook]}) as http:
        manager = await user(http, "Manager")
        courier = await user(http, "Courier")
        flow = await pipeline(http, ["NEW", "PAID"])
        await automate(http, flow["id"], {
            "NEW": {"rules": [
                {"name": "note", "type": "add_timeline_entry", "settings": {"text": "New: {{Deal.Title}}"}},
                {"name": "later", "type": "add_timeline_entry", "delay": "2s",
                 "settings": {"text": "Call back about {{Deal.Title}}"}},
                {"name": "never", "type": "add_timeline_entry",
                 "condition": {"all": [{"field": "Deal.Amount", "op": ">", "value": 1_000_000}]},
                 "settings": {"text": "A very large order"}},
            ]},
            "PAID": {
                "rules": [{"name": "ping", "type": "notify_employee",
                           "settings": {"user_ids": [courier["id"]], "text": "Deliver {{Deal.Title}}"}}],
                "triggers": [{"name": "paid", "type": "payment_received", "condition": PAID_IN_FULL}],
            },
        })
        items = [(await deal(http, flow["id"], manager["id"], title=f"Order {n}", amount=100))["id"]
                 for n in range(DEALS)]
        engine = cluster.engine()
        settled = await until(lambda: sum(timeline_rules(engine, items).values()) == DEALS * 3, timeout=60)
        assert settled, timeline_rules(engine, items)
        ok(await http.post(f"/deals/{items[0]}/payments", json={"amount": 100}), 202)
        ok(await http.post(f"/deals/{items[1]}/payments", json={"amount": 10}), 202)
        ok(await http.get(f"/deals/{items[1]}"))
        missing = await http.get("/deals/999999")
        assert missing.status_code == 404
        stranger = await http.get(f"/no-such-place/{items[0]}")
        assert stranger.status_code == 404

    expected_rules = Counter({("add_timeline_entry", "done"): DEALS * 2, ("add_timeline_entry", "skipped"): DEALS,
                              ("notify_employee", "done"): 1})
    await until(lambda: timeline_rules(engine, items) == expected_rules and sum(trigger_events(engine, items).values())
                == 2, timeout=60)
    ran = timeline_rules(engine, items)
    assert ran == expected_rules, ran

    def counted() -> Counter:
        return summed(scrape(worker_metrics), "stageflow_rules_total", "type", "outcome")

    await until(lambda: counted() == ran, timeout=20, interval=0.5)
    worker = scrape(worker_metrics)
    rules = summed(worker, "stageflow_rules_total", "type", "outcome")
    late_count = summed(worker, "stageflow_rule_lateness_seconds_count").get((), 0)
    late_sum = summed(worker, "stageflow_rule_lateness_seconds_sum").get((), 0)
    triggers = summed(worker, "stageflow_trigger_matches_total", "outcome")
    sdk = sorted({name for name, _, _ in worker if name.startswith("temporal_")})

    api = scrape(f"{cluster.api_url}/metrics")
    requests = summed(api, "stageflow_http_requests_total", "route", "method", "status")
    durations = summed(api, "stageflow_http_request_duration_seconds_count", "route", "method")
    expected_requests = made.by_route(RouteTable())

    figures = {
        "rules_on_timeline": {f"{kind}/{outcome}": count for (kind, outcome), count in sorted(ran.items())},
        "rules_counted": {f"{kind}/{outcome}": count for (kind, outcome), count in sorted(rules.items())},
        "lateness_samples": late_count,
        "lateness_mean_seconds": round(late_sum / late_count, 3) if late_count else None,
        "trigger_matches": dict(triggers),
        "sdk_metric_names": len(sdk),
        "api_requests_made": len(made.made),
        "api_routes_counted": len(requests),
    }
    record_figures("metrics", figures)

    assert rules == ran, figures
    assert late_count >= sum(ran.values()), figures
    assert triggers == trigger_events(engine, items) == Counter({"matched": 1, "missed": 1}), figures
    assert any(name.startswith("temporal_activity_") or name.startswith("temporal_workflow_") for name in sdk), sdk
    assert "temporal_worker_task_slots_available" in sdk, sdk

    for key, count in expected_requests.items():
        assert requests[key] == count, (key, requests[key], count)
    assert ("/deals/{deal_id}/payments", "POST", "202") in expected_requests
    assert ("/deals/{deal_id}", "GET", "404") in expected_requests
    assert ("unmatched", "GET", "404") in expected_requests
    assert sum(durations[(route, method)] for route, method, _ in set(expected_requests)) >= len(made.made)
    for route, _, _ in requests:
        assert route == "unmatched" or not re.search(r"/\d+(/|$)", route), f"a concrete path became a label: {route}"
    assert not [route for route, _, _ in requests if str(items[0]) in route]


async def test_the_metrics_need_no_key_unless_one_is_set(cluster: Cluster):
    """Without STAGEFLOW_METRICS_KEY the API's /metrics answers anyone; tests/operations/test_graceful_stop.py runs
    an API with the key set."""
    cluster.start_temporal()
    cluster.start_api()
    answer = httpx.get(f"{cluster.api_url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert "stageflow_http_requests_total" in answer.text
    with_any_key = httpx.get(f"{cluster.api_url}/metrics", headers={"Authorization": "Bearer whatever"}, timeout=10)
    assert with_any_key.status_code == 200
