"""stageflow beside the bare Temporal engine, in one run on one Temporal dev server: `make bench`.

Starts `temporal server start-dev` on a SQLite file (WAL pragmas, log level error, the Stageflow* search
attributes), the bare-engine worker (bench/bare.py), and stageflow as it runs in production: `python worker.py`
and the API as a real uvicorn process, both on a SQLite app database, driven over HTTP with httpx. Then measures

  throughput  bare: workflows/s, each running K trivial activities in sequence;
              stageflow: stage entries/s through POST /deals, each stage with K add_timeline_entry rules, an entry
              counted once all its K rules are recorded as done in the app database; and the ratio, per K;
  latency     bare: signal -> a query shows the new value; stageflow: POST /deals/{id}/payments -> GET /deals/{id}
              shows the stage the payment_received trigger moved it to (p50/p99 over --events events each); and
              the one-call path, POST /deals/{id}/payments?wait=true answering with the new stage, beside a bare
              update round trip (into PAID without rules, and again with a rule that keeps PAID's entry waiting);
  timers      --timers items each waiting on a six-month rule: creation time, worker peak RSS, Temporal database
              growth; then --fire items whose rule falls due at one common moment shortly after they are all
              created (a short delay, so the dev server's real timers fire them; --fire-rule-type notify_employee
              for rules that reach the outside): every rule fires exactly once;
              beside it, as many bare workflows, each a timer until one moment, then one local activity;
  documents   invoices rendered to DOCX + PDF per second (bench/documents.py);
  n8n         (only when named) n8n on the same machine, webhook -> 5 Edit Fields nodes -> one HTTP call, executions/s
              beside stageflow's K=5 entries of the same run (bench/n8n.py).

Prints a table and writes bench/results/latest.json. Options: --help.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import httpx  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client, WithStartWorkflowOperation  # noqa: E402
from temporalio.common import WorkflowIDConflictPolicy  # noqa: E402

import stack  # noqa: E402
from bare import BareItemWorkflow, BareSignalWorkflow, BareTimerWorkflow, BareWorkflow  # noqa: E402

PARTS = ("throughput", "latency", "timers", "firing", "documents", "simulation")
OPTIONAL_PARTS = ("n8n",)
"""Parts run only when named in --parts: n8n downloads n8n and Node.js from npm (bench/n8n.py)."""
RESULTS = ROOT / "bench" / "results" / "latest.json"
API_KEY = "bench-" + secrets.token_urlsafe(16)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p90_ms": round(percentile(ms, 90), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "mean_ms": round(statistics.fmean(ms), 1) if ms else float("nan"),
        "max_ms": round(max(ms), 1) if ms else float("nan"),
    }


async def bounded(count: int, concurrency: int, work) -> list[Any]:
    """Runs `work(i)` for i in range(count), at most `concurrency` at a time; results in order."""
    results: list[Any] = [None] * count
    queue = iter(range(count))

    async def lane() -> None:
        for i in queue:
            results[i] = await work(i)

    await asyncio.gather(*(lane() for _ in range(min(concurrency, count))))
    return results


def ok(response: httpx.Response, status: int = 200) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return response.json() if response.content else None


def cpu_per_item(procs: stack.Processes, before: dict[str, float], count: int, names: tuple[str, ...]) -> dict:
    """Milliseconds of CPU per item spent by each process named (a prefix matches) since `before`."""
    after = procs.cpu()
    used = {name: (after[name] - before.get(name, 0.0)) * 1000 / count for name in after
            if name.startswith(names)}
    machine_ms = (after["machine"] - before["machine"]) * 1000 / count
    ours = sum((after[name] - before.get(name, 0.0)) * 1000 / count for name in after if name != "machine")
    return {name: round(ms, 1) for name, ms in sorted(used.items())} | {
        "total": round(sum(used.values()), 1),
        "other_processes": round(max(0.0, machine_ms - ours), 1),
    }


class Profiler:
    """py-spy on the worker and the API while a phase runs (--profile DIR): raw folded stacks + a summary."""

    def __init__(self, out_dir: Path | None, targets: list[stack.Proc], tag: str) -> None:
        self.out_dir, self.targets, self.tag = out_dir, targets, tag
        self.running: list[tuple[stack.Proc, subprocess.Popen, Path]] = []

    def __enter__(self) -> "Profiler":
        if self.out_dir is None:
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        spy = stack.binary("py-spy", "pip install -e '.[bench]'")
        for proc in self.targets:
            out = self.out_dir / f"{self.tag}-{proc.name}.folded"
            popen = subprocess.Popen([spy, "record", "--pid", str(proc.pid), "--rate", "200", "--nonblocking",
                                      "--format", "raw", "--output", str(out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.running.append((proc, popen, out))
        time.sleep(1.0)
        return self

    def __exit__(self, *exc) -> None:
        import profile_summary

        for proc, popen, out in self.running:
            popen.send_signal(2)
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                popen.kill()
            if out.exists():
                (out.with_suffix(".txt")).write_text(profile_summary.summarize(out))
                log(f"profile of {proc.name}: {out.with_suffix('.txt')}")


# -- stageflow through its API -----------------------------------------------------------------------------------


class Crm:
    """A stageflow API process, its worker, and a look into its database."""

    def __init__(self, http: httpx.AsyncClient, db: stack.AppDb, worker: stack.Proc, api: stack.Proc) -> None:
        self.http = http
        self.db = db
        self.worker = worker
        self.api = api
        self.user_id: int | None = None
        self.pipelines = 0

    async def setup(self) -> None:
        self.user_id = ok(await self.http.post("/users", json={"name": "Bench Manager", "email": "m@example.com"}), 201)["id"]

    async def pipeline(self, stages: list[str], automation: dict[str, Any]) -> int:
        self.pipelines += 1
        body = {"entity_type": "deal", "name": f"Bench {self.pipelines}",
                "stages": [{"code": code, "name": code.title()} for code in stages]}
        pipeline_id = ok(await self.http.post("/pipelines", json=body), 201)["id"]
        ok(await self.http.put(f"/pipelines/{pipeline_id}/automation", json=automation))
        return pipeline_id

    async def deal(self, pipeline_id: int, title: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"title": title, "pipeline_id": pipeline_id, "responsible_id": self.user_id, "amount": 100}
        if fields:
            body["fields"] = fields
        return ok(await self.http.post("/deals", json=body), 201)

    def done_per_item(self, pipeline_id: int, kind: str = "rule_done") -> dict[int, int]:
        rows = self.db.rows(
            "SELECT t.item_id, COUNT(*) FROM timelineentry t JOIN item i ON i.id = t.item_id "
            "WHERE i.pipeline_id = ? AND t.kind = ? GROUP BY t.item_id",
            pipeline_id, kind,
        )
        return dict(rows)

    def effects_per_item(self, pipeline_id: int, rule_type: str) -> dict[int, int]:
        """What the waiting rule of `timer_automation` did, per item: its `followup` entries, or its notifications."""
        if rule_type == "add_timeline_entry":
            return self.done_per_item(pipeline_id, "followup")
        return dict(self.db.rows(
            "SELECT n.item_id, COUNT(*) FROM notification n JOIN item i ON i.id = n.item_id WHERE i.pipeline_id = ? "
            "GROUP BY n.item_id", pipeline_id,
        ))

    def count(self, sql: str, *params) -> int:
        return self.db.rows(sql, *params)[0][0]


# add_timeline_entry runs as a local activity; notify_employee (without e-mail it too only writes the database)
# as a regular activity, like every rule that reaches the outside.
RULE_TYPES = ("add_timeline_entry", "notify_employee")


def rules_automation(k: int, rule_type: str = "add_timeline_entry", user_id: int | None = None) -> dict[str, Any]:
    text = "note {i} on {{{{Deal.Title}}}} for {{{{Deal.Responsible.Name}}}}"
    if rule_type == "add_timeline_entry":
        rules = [{"name": f"note{i}", "type": rule_type, "settings": {"text": text.format(i=i)}} for i in range(1, k + 1)]
    else:
        rules = [{"name": f"ping{i}", "type": rule_type, "settings": {"text": text.format(i=i), "user_ids": [user_id]}}
                 for i in range(1, k + 1)]
    return {"stages": {"RULES": {"rules": rules, "triggers": []}, "DONE": {"rules": [], "triggers": []}}}


async def wait_rules_done(crm: Crm, pipeline_id: int, items: int, k: int, timeout: float) -> float:
    """Polls the app database until `items` items of the pipeline each have K rule_done entries; returns the time."""
    deadline = time.perf_counter() + timeout
    while True:
        done = crm.done_per_item(pipeline_id)
        if sum(1 for count in done.values() if count >= k) >= items:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {len(done)} of {items} entries finished their {k} rules within {timeout:.0f} s")
        crm.worker.check()
        await asyncio.sleep(0.05)


async def stageflow_throughput(
    crm: Crm, k: int, entries: int, concurrency: int, rule_type: str = "add_timeline_entry"
) -> dict[str, Any]:
    pipeline_id = await crm.pipeline(["RULES", "DONE"], rules_automation(k, rule_type, crm.user_id))
    post_seconds: list[float] = []

    async def create(i: int) -> int:
        started = time.perf_counter()
        item = await crm.deal(pipeline_id, f"Bench deal {i}")
        post_seconds.append(time.perf_counter() - started)
        return item["id"]

    started = time.perf_counter()
    ids = await bounded(entries, concurrency, create)
    posted = time.perf_counter()
    finished = await wait_rules_done(crm, pipeline_id, entries, k, timeout=600)
    elapsed = finished - started
    done = crm.done_per_item(pipeline_id)
    exact = all(done.get(i) == k for i in ids)
    if rule_type == "add_timeline_entry":
        notes = crm.done_per_item(pipeline_id, "comment")
        exact = exact and all(notes.get(i) == k for i in ids)
    effects = crm.count("SELECT COUNT(*) FROM effect e JOIN item i ON i.id = e.item_id WHERE i.pipeline_id = ? "
                        "AND e.status = 'done'", pipeline_id)
    return {
        "entries": entries,
        "k": k,
        "rule_type": rule_type,
        "seconds": round(elapsed, 2),
        "posts_seconds": round(posted - started, 2),
        "per_second": round(entries / elapsed, 1),
        "post_latency": summary_ms(post_seconds),
        "each_rule_once": exact and effects == entries * k,
    }


async def trigger_latency(crm: Crm, events: int, concurrency: int) -> dict[str, Any]:
    automation = {"stages": {"NEW": {"rules": [], "triggers": []},
                             "PAID": {"rules": [], "triggers": [{"name": "paid", "type": "payment_received"}]}}}
    pipeline_id = await crm.pipeline(["NEW", "PAID"], automation)
    ids = await bounded(events, concurrency, lambda i: crm.deal(pipeline_id, f"Latency deal {i}"))
    samples: list[float] = []
    polls = 0
    for item in ids:
        started = time.perf_counter()
        ok(await crm.http.post(f"/deals/{item['id']}/payments", json={"amount": 100}), 202)
        while True:
            polls += 1
            if ok(await crm.http.get(f"/deals/{item['id']}"))["stage"] == "PAID":
                break
        samples.append(time.perf_counter() - started)
    return {**summary_ms(samples), "polls_per_event": round(polls / len(ids), 1), "ids": [item["id"] for item in ids]}


WAITING_RULE = {"name": "thank later", "type": "add_timeline_entry", "delay": "30d", "settings": {"text": "Thanks"}}
"""A rule that keeps its entry's workflow waiting (an entry whose rules all run at once has none)."""


async def trigger_wait_latency(
    crm: Crm, events: int, concurrency: int, paid_rules: list | None = None
) -> dict[str, Any]:
    """POST /deals/{id}/payments?wait=true: one call that answers with the new stage, whose rules are `paid_rules`
    (none: the step that enters PAID finishes the entry; a waiting rule: it starts the entry's workflow first)."""
    automation = {"stages": {"NEW": {"rules": [], "triggers": []},
                             "PAID": {"rules": list(paid_rules or []),
                                      "triggers": [{"name": "paid", "type": "payment_received"}]}}}
    pipeline_id = await crm.pipeline(["NEW", "PAID"], automation)
    ids = await bounded(events, concurrency, lambda i: crm.deal(pipeline_id, f"Waiting deal {i}"))
    samples: list[float] = []
    for item in ids:
        started = time.perf_counter()
        answer = ok(await crm.http.post(f"/deals/{item['id']}/payments", params={"wait": "true"}, json={"amount": 100}))
        samples.append(time.perf_counter() - started)
        if answer != {"matched": "paid", "stage": "PAID", "moved": True}:
            raise RuntimeError(f"payment with wait answered {answer}")
    return summary_ms(samples)


async def create_latency(
    crm: Crm, client: Client, procs: stack.Processes, count: int, concurrencies: tuple[int, ...]
) -> dict[str, Any]:
    """POST /deals (an item with no rules enters its first stage) at each number of requests in flight, beside a
    bare update-with-start of the same shape at the same concurrency; each with the CPU a create cost."""
    pipeline_id = await crm.pipeline(["NEW", "DONE"], {"stages": {}})
    measured: dict[str, Any] = {}
    for concurrency in concurrencies:
        posts: list[float] = []
        bare: list[float] = []

        async def post(i: int, samples: list[float] = posts, c: int = concurrency) -> None:
            started = time.perf_counter()
            await crm.deal(pipeline_id, f"Load deal {c}-{i}")
            samples.append(time.perf_counter() - started)

        async def bare_create(i: int, samples: list[float] = bare, c: int = concurrency) -> None:
            started = time.perf_counter()
            operation = WithStartWorkflowOperation(
                BareItemWorkflow.run, id=f"bare-item-{c}-{i}", id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                task_queue="bare",
            )
            await client.execute_update_with_start_workflow(
                BareItemWorkflow.enter, "NEW", id="created", start_workflow_operation=operation
            )
            samples.append(time.perf_counter() - started)

        before = procs.cpu()
        await bounded(count, concurrency, bare_create)
        bare_cpu = cpu_per_item(procs, before, count, ("temporal", "bare-worker", "driver"))
        before = procs.cpu()
        await bounded(count, concurrency, post)
        post_cpu = cpu_per_item(procs, before, count, ("temporal", "worker-main", "api-main", "driver"))
        measured[str(concurrency)] = {"post_deals": summary_ms(posts) | {"cpu_ms": post_cpu},
                                      "bare_update_with_start": summary_ms(bare) | {"cpu_ms": bare_cpu}}
    return measured


async def trigger_breakdown(client: Client, item_ids: list[int]) -> dict[str, Any]:
    """From the item workflows' histories (server clock): signal → its workflow task started on the worker, and
    that task's time on the worker (matching the trigger, entering the stage, starting the entry)."""
    dispatch, on_worker = [], []
    for item_id in item_ids:
        history = await client.get_workflow_handle(f"deal-{item_id}").fetch_history()
        signaled = started = None
        for event in history.events:
            at = event.event_time.ToDatetime()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                signaled, started = at, None
            elif signaled and event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and started is None:
                started = at
            elif started and event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                dispatch.append((started - signaled).total_seconds())
                on_worker.append((at - started).total_seconds())
                break
    return {"signal_to_task_started": summary_ms(dispatch), "task_on_worker": summary_ms(on_worker)}


# -- the bare engine --------------------------------------------------------------------------------------------


async def bare_throughput(client: Client, queue: str, k: int, count: int, concurrency: int, tag: str) -> dict[str, Any]:
    async def start(i: int):
        return await client.start_workflow(BareWorkflow.run, k, id=f"bare-{tag}-k{k}-{i}", task_queue=queue)

    started = time.perf_counter()
    handles = await bounded(count, concurrency, start)
    results = await asyncio.gather(*(handle.result() for handle in handles))
    elapsed = time.perf_counter() - started
    if any(result != k for result in results):
        raise RuntimeError("a bare workflow returned a wrong value")
    return {"workflows": count, "k": k, "seconds": round(elapsed, 2), "per_second": round(count / elapsed, 1)}


async def bare_signal_latency(client: Client, queue: str, events: int, tag: str) -> dict[str, Any]:
    handle = await client.start_workflow(BareSignalWorkflow.run, id=f"bare-signal-{tag}", task_queue=queue)
    samples: list[float] = []
    polls = 0
    for value in range(1, events + 1):
        started = time.perf_counter()
        await handle.signal(BareSignalWorkflow.set_value, value)
        while True:
            polls += 1
            if await handle.query(BareSignalWorkflow.current) == value:
                break
        samples.append(time.perf_counter() - started)
    await handle.signal(BareSignalWorkflow.stop)
    await handle.result()
    return {**summary_ms(samples), "polls_per_event": round(polls / events, 1)}


async def bare_update_latency(client: Client, queue: str, events: int, tag: str) -> dict[str, Any]:
    handle = await client.start_workflow(BareSignalWorkflow.run, id=f"bare-update-{tag}", task_queue=queue)
    samples: list[float] = []
    for value in range(1, events + 1):
        started = time.perf_counter()
        if await handle.execute_update(BareSignalWorkflow.set_and_read, value) != value:
            raise RuntimeError("a bare update answered a wrong value")
        samples.append(time.perf_counter() - started)
    await handle.signal(BareSignalWorkflow.stop)
    await handle.result()
    return summary_ms(samples)


# -- timers -----------------------------------------------------------------------------------------------------


def timer_automation(delay: Any, rule_type: str = "add_timeline_entry", user_id: int | None = None) -> dict[str, Any]:
    """A stage whose one rule waits for `delay`: a `followup` timeline entry, or (`notify_employee`) a notification
    to `user_id`, a rule of the kind that reaches the outside."""
    if rule_type == "add_timeline_entry":
        rule = {"name": "followup", "type": rule_type, "delay": delay,
                "settings": {"text": "follow-up on {{Deal.Title}}", "kind": "followup"}}
    else:
        rule = {"name": "followup", "type": rule_type, "delay": delay,
                "settings": {"text": "follow-up on {{Deal.Title}}", "user_ids": [user_id]}}
    return {"stages": {
        "WAIT": {"rules": [rule], "triggers": []},
        "DONE": {"rules": [], "triggers": []},
    }}


SIX_MONTHS = "6mo"


class RssSampler:
    def __init__(self, proc: stack.Proc) -> None:
        self.proc = proc
        self.peak_kib = 0
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.peak_kib = max(self.peak_kib, self.proc.status_kib("VmRSS"))
            await asyncio.sleep(0.5)

    def __enter__(self) -> "RssSampler":
        self.peak_kib = self.proc.status_kib("VmRSS")
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc) -> None:
        self.peak_kib = max(self.peak_kib, self.proc.status_kib("VmRSS"))
        if self.task:
            self.task.cancel()


async def create_waiting(crm: Crm, count: int, concurrency: int, progress: str, delay: Any = SIX_MONTHS,
                         fields: dict[str, Any] | None = None,
                         rule_type: str = "add_timeline_entry") -> tuple[int, list[int], float, float]:
    """`count` deals in a stage whose one rule waits for `delay`; returns once every rule is scheduled."""
    pipeline_id = await crm.pipeline(["WAIT", "DONE"], timer_automation(delay, rule_type, crm.user_id))
    done = 0
    started = time.perf_counter()

    async def create(i: int) -> int:
        nonlocal done
        item = await crm.deal(pipeline_id, f"Timer deal {i}", fields=fields)
        done += 1
        if done % 1000 == 0:
            log(f"  {progress}: {done}/{count} items created ({done / (time.perf_counter() - started):.1f}/s)")
        return item["id"]

    ids = await bounded(count, concurrency, create)
    posted = time.perf_counter()
    deadline = posted + 600
    while crm.count("SELECT COUNT(*) FROM timelineentry t JOIN item i ON i.id = t.item_id WHERE i.pipeline_id = ? "
                    "AND t.kind = 'rule_scheduled'", pipeline_id) < count:
        if time.perf_counter() > deadline:
            raise RuntimeError("not every item's rule was scheduled within 600 s")
        crm.worker.check()
        await asyncio.sleep(0.2)
    return pipeline_id, ids, posted - started, time.perf_counter() - started


async def timer_scale(crm: Crm, client: Client, temporal_db: Path, count: int, concurrency: int) -> dict[str, Any]:
    db_before = stack.file_bytes(temporal_db)
    rss_before = crm.worker.status_kib("VmRSS")
    with RssSampler(crm.worker) as rss:
        pipeline_id, ids, posted, scheduled = await create_waiting(crm, count, concurrency, "timers")
    await asyncio.sleep(2)
    db_after = stack.file_bytes(temporal_db)
    waiting = await client.count_workflows(
        f"WorkflowType = 'StageEntryWorkflow' AND ExecutionStatus = 'Running' AND StageflowPipelineId = '{pipeline_id}'"
    )
    fired = crm.count("SELECT COUNT(*) FROM timelineentry t JOIN item i ON i.id = t.item_id WHERE i.pipeline_id = ? "
                      "AND t.kind = 'followup'", pipeline_id)
    return {
        "items": count,
        "create_seconds": round(posted, 1),
        "create_per_second": round(count / posted, 1),
        "scheduled_seconds": round(scheduled, 1),
        "entries_waiting": waiting.count,
        "fired_early": fired,
        "worker_rss_before_mib": round(rss_before / 1024, 1),
        "worker_peak_rss_mib": round(rss.peak_kib / 1024, 1),
        "temporal_db_before_mib": round(db_before / 2**20, 1),
        "temporal_db_after_mib": round(db_after / 2**20, 1),
        "temporal_db_kib_per_item": round((db_after - db_before) / 1024 / count, 1),
    }


def slow_workflow_tasks(worker: stack.Proc) -> int:
    """Workflow tasks the worker reported as taking over 5 seconds (the server's task timeout is 10 s)."""
    return worker.log.read_text(errors="replace").count("Workflow task duration exceeded")


async def timer_firing(
    crm: Crm, client: Client, procs: stack.Processes, count: int, concurrency: int, rate_hint: float,
    rule_type: str = "add_timeline_entry",
) -> dict[str, Any]:
    """`count` rules of `rule_type` all due at one moment (a short delay: a date field set a little after the last
    item will have been created), fired by the dev server's real timers; each must take effect exactly once. Beside the rate,
    the CPU each process used per fired rule while they fired, and when the last of their stage entries' workflows
    ended (an entry whose rule its due moment ran ends once told its outcome)."""
    from datetime import datetime, timezone

    lead_time = count / max(rate_hint, 1.0) * 1.5 + 20
    due = datetime.now(timezone.utc) + timedelta(seconds=lead_time)
    slow_before = slow_workflow_tasks(crm.worker)
    pipeline_id, ids, posted, scheduled = await create_waiting(
        crm, count, concurrency, "firing", delay={"field": "Fields.fire_at"}, fields={"fire_at": due.isoformat()},
        rule_type=rule_type,
    )
    early = sum(crm.effects_per_item(pipeline_id, rule_type).values())
    wait = (due - datetime.now(timezone.utc)).total_seconds()
    if wait > 0:
        await asyncio.sleep(wait)
    before = procs.cpu()
    started = time.perf_counter()
    deadline = started + 900
    while sum(1 for n in crm.done_per_item(pipeline_id).values() if n >= 1) < count:
        if time.perf_counter() > deadline:
            raise RuntimeError("not every rule fired within 900 s of its due time")
        crm.worker.check()
        await asyncio.sleep(0.2)
    fired = time.perf_counter() - started
    cpu = cpu_per_item(procs, before, count, ("temporal", "worker-main", "api-main", "driver"))
    running = (f"WorkflowType = 'StageEntryWorkflow' AND ExecutionStatus = 'Running' "
               f"AND StageflowPipelineId = '{pipeline_id}'")
    while (await client.count_workflows(running)).count:
        if time.perf_counter() > deadline:
            raise RuntimeError("not every stage entry ended within 900 s of its rule's due time")
        await asyncio.sleep(0.2)
    closed = time.perf_counter() - started
    cpu_ended = cpu_per_item(procs, before, count, ("temporal", "worker-main", "api-main", "driver"))
    await asyncio.sleep(3)
    done = crm.done_per_item(pipeline_id)
    notes = crm.effects_per_item(pipeline_id, rule_type)
    effects = crm.count("SELECT COUNT(*) FROM effect e JOIN item i ON i.id = e.item_id WHERE i.pipeline_id = ?",
                        pipeline_id)
    once = all(done.get(i) == 1 and notes.get(i) == 1 for i in ids) and effects == count
    return {
        "items": count,
        "rule_type": rule_type,
        "create_seconds": round(posted, 1),
        "fired_before_due": early if wait > 0 else None,
        "due_after_created_seconds": round(wait, 1),
        "fire_seconds": round(fired, 1),
        "fired_per_second": round(count / fired, 1),
        "entries_ended_seconds": round(closed, 1),
        "cpu_ms_per_rule": cpu,
        "cpu_ms_per_rule_until_entries_ended": cpu_ended,
        "slow_workflow_tasks": slow_workflow_tasks(crm.worker) - slow_before,
        "every_rule_once": once,
    }


async def bare_firing(client: Client, procs: stack.Processes, count: int, concurrency: int) -> dict[str, Any]:
    """The same as `timer_firing` written by hand: `count` bare workflows, each a timer until one common moment and
    then one trivial local activity, on the same server; the rate from the due moment until every one ended, as the
    server's visibility counts them (polled five times a second, which the server's CPU includes)."""
    from datetime import datetime, timezone

    due = datetime.now(timezone.utc) + timedelta(seconds=count / 25 + 20)

    async def start(i: int) -> None:
        await client.start_workflow(BareTimerWorkflow.run, due.isoformat(), id=f"bare-fire-{i}", task_queue="bare")

    await bounded(count, concurrency, start)
    wait = (due - datetime.now(timezone.utc)).total_seconds()
    if wait <= 0:
        raise RuntimeError(f"starting {count} bare timer workflows took past their due moment; fire fewer")
    await asyncio.sleep(wait)
    before = procs.cpu()
    started = time.perf_counter()
    done = "WorkflowType = 'BareTimerWorkflow' AND ExecutionStatus = 'Completed'"
    ended = "WorkflowType = 'BareTimerWorkflow' AND ExecutionStatus != 'Running'"
    while (await client.count_workflows(ended)).count < count:
        if time.perf_counter() > started + 900:
            raise RuntimeError("not every bare timer workflow ended within 900 s of its due time")
        await asyncio.sleep(0.2)
    fired = time.perf_counter() - started
    cpu = cpu_per_item(procs, before, count, ("temporal", "bare-worker", "driver"))
    completed = await client.count_workflows(done)
    return {
        "workflows": count,
        "due_after_started_seconds": round(wait, 1),
        "fire_seconds": round(fired, 1),
        "fired_per_second": round(count / fired, 1),
        "cpu_ms_per_workflow": cpu,
        "not_completed": count - completed.count,
    }


# -- documents --------------------------------------------------------------------------------------------------


def documents(count: int, lines: int) -> dict[str, Any]:
    import documents as docbench
    from activities.services.documents import builtin_template, render_docx, render_pdf

    template = builtin_template("invoice")
    contexts = [docbench.invoice(seq, lines) for seq in range(1, count + 1)]
    render_docx(template, contexts[0])
    render_pdf(contexts[0])
    docx_s = docbench.timed(lambda ctx: render_docx(template, ctx), contexts)
    pdf_s = docbench.timed(render_pdf, contexts)
    return {
        "invoices": count,
        "lines_per_invoice": lines,
        "docx_per_second": round(count / docx_s, 1),
        "pdf_per_second": round(count / pdf_s, 1),
        "docx_and_pdf_per_second": round(count / (docx_s + pdf_s), 1),
    }


async def shop_simulations(http: httpx.AsyncClient, runs: int) -> dict[str, Any]:
    """The furniture shop's story (scripts/demo.py) simulated over seven months, `runs` times one after another:
    the wall time each simulation reports, and the request's round trip."""
    from scripts.demo import load_shop, shop_simulation

    shop = await load_shop(http, {"late": "24h", "repeat": "6mo"})
    body = shop_simulation(shop, "7mo")
    walls, trips, entries = [], [], 0
    for _ in range(runs + 1):
        began = time.perf_counter()
        answer = ok(await http.post("/simulations", json=body, timeout=120))
        trips.append(time.perf_counter() - began)
        walls.append(answer["wall_ms"] / 1000)
        entries = len(answer["timeline"])
        if not answer["complete"] or answer["stage"] != "WON":
            raise SystemExit(f"the shop's simulation did not finish as expected: {answer['stopped']}, {answer['stage']}")
    walls, trips = walls[1:], trips[1:]  # the first one warms the API process up
    return {"runs": runs, "horizon": "7mo", "timeline_entries": entries, "wall_ms": summary_ms(walls),
            "request_ms": summary_ms(trips), "server_start_ms": await server_starts(runs)}


async def server_starts(runs: int) -> dict[str, float]:
    """What a simulation's own time-skipping server costs: starting it and shutting it down."""
    from temporalio.testing import WorkflowEnvironment

    binary = str(Path(sys.executable).parent / "temporal-test-server")
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=binary)
        await env.shutdown()
        times.append(time.perf_counter() - began)
    return summary_ms(times)


# -- the run ----------------------------------------------------------------------------------------------------


async def start_stageflow(run_dir: Path, procs: stack.Processes, address: str, name: str, args, **extra: str):
    """The API and worker processes on one app database; the worker is `python worker.py`, or
    bench/tuned_worker.py with --worker-options."""
    port = stack.free_port()
    env = stack.app_env(run_dir, name, address, API_KEY, port, **extra)
    app_root = Path(args.app_root).resolve()
    env["PYTHONPATH"] = os.pathsep.join([str(app_root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    worker_argv = None
    if args.worker_options:
        worker_argv = [sys.executable, str(ROOT / "bench" / "tuned_worker.py"), args.worker_options]
    worker = procs.start(stack.worker_proc(run_dir, name, env, app_root, worker_argv))
    await stack.wait_for_log(worker, "worker on task queue")
    api = procs.start(stack.api_proc(run_dir, name, env, app_root, shlex.split(args.uvicorn_args)))
    url = f"http://{stack.LOOPBACK}:{port}"
    await stack.wait_for_health(api, url)
    http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120,
                             limits=httpx.Limits(max_connections=args.concurrency + 4))
    crm = Crm(http, stack.AppDb(run_dir / name / "stageflow.db"), worker, api)
    await crm.setup()
    return crm, http


async def n8n_part(run_dir: Path, procs: stack.Processes, args) -> dict[str, Any]:
    """n8n's executions/s on the same machine while stageflow's processes stand idle (bench/n8n.py)."""
    import n8n as n8nbench

    node, entry = n8nbench.install(log)
    endpoint = n8nbench.Endpoint()
    try:
        app = n8nbench.N8n(run_dir, node, entry, endpoint.url)
        await app.start(procs)
        await n8nbench.executions(app, 20, args.concurrency, bounded)
        calls_before = endpoint.calls
        measured = await n8nbench.executions(app, args.entries, args.concurrency, bounded)
        measured["endpoint_called_once_each"] = endpoint.calls - calls_before == args.entries
        measured["version"] = n8nbench.N8N_VERSION
        procs.stop(app.proc)
    finally:
        endpoint.close()
    return measured


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    server = subprocess.run([stack.binary("temporal"), "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "uvloop": version("uvloop"),
        "httptools": version("httptools"),
        "temporal_cli": server,
        "os": platform.platform(),
    }


async def run(args) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix="stageflow-bench-"))
    procs = stack.Processes()
    result: dict[str, Any] = {"machine": machine(), "settings": {
        "entries_per_k": args.entries, "ks": args.ks, "concurrency": args.concurrency, "events": args.events,
        "timers": args.timers, "fire": args.fire, "api": "uvicorn process, httpx client over loopback"
        + (f", uvicorn {args.uvicorn_args}" if args.uvicorn_args else ""),
        "worker": "separate process" + (f", options {args.worker_options}" if args.worker_options else ", worker.py"),
        "app_root": str(Path(args.app_root).resolve()), "label": args.label, "bare_loop": args.bare_loop,
    }}
    began = time.perf_counter()
    try:
        log(f"run directory {run_dir}")
        temporal, address = stack.dev_server(run_dir)
        procs.start(temporal)
        client = await stack.connect(address, temporal)
        bare_worker = procs.start(stack.Proc(
            "bare-worker", [sys.executable, str(ROOT / "bench" / "bare.py"), "--address", address, "--task-queue", "bare",
             "--loop", args.bare_loop],
            run_dir / "worker-bare.log"))
        await stack.wait_for_log(bare_worker, "bare worker ready")
        crm, http = await start_stageflow(run_dir, procs, address, "main", args)
        profile_dir = Path(args.profile).resolve() if args.profile else None
        try:
            if args.ks or args.events:
                log("warming up")
                await bare_throughput(client, "bare", 1, 20, args.concurrency, "warm")
                await stageflow_throughput(crm, 1, 20, args.concurrency)

            result["throughput"] = []
            for k in args.ks:
                before = procs.cpu()
                bare = await bare_throughput(client, "bare", k, args.entries, args.concurrency, "run")
                bare["cpu_ms_per_workflow"] = cpu_per_item(procs, before, args.entries,
                                                           ("temporal", "bare-worker", "driver"))
                log(f"bare K={k}: {bare['per_second']} workflows/s")
                for rule_type in args.rule_types:
                    before = procs.cpu()
                    with Profiler(profile_dir, [crm.worker, crm.api], f"k{k}-{rule_type}"):
                        flow = await stageflow_throughput(crm, k, args.entries, args.concurrency, rule_type)
                    flow["cpu_ms_per_entry"] = cpu_per_item(procs, before, args.entries,
                                                            ("temporal", "worker-main", "api-main", "driver"))
                    log(f"stageflow K={k} {rule_type}: {flow['per_second']} entries/s "
                        f"(each rule once: {flow['each_rule_once']})")
                    result["throughput"].append({
                        "k": k, "rule_type": rule_type, "bare": bare, "stageflow": flow,
                        "ratio": round(flow["per_second"] / bare["per_second"], 2),
                        "cpu_ratio": round(bare["cpu_ms_per_workflow"]["total"] / flow["cpu_ms_per_entry"]["total"], 2),
                    })

            if "n8n" in args.parts:
                result["n8n"] = await n8n_part(run_dir, procs, args)
                log(f"n8n: {result['n8n']}")

            if args.events:
                bare_lat = await bare_signal_latency(client, "bare", args.events, "run")
                log(f"bare signal -> query: p50 {bare_lat['p50_ms']} ms, p99 {bare_lat['p99_ms']} ms")
                with Profiler(profile_dir, [crm.worker, crm.api], "latency"):
                    flow_lat = await trigger_latency(crm, args.events, args.concurrency)
                log(f"payment -> new stage: p50 {flow_lat['p50_ms']} ms, p99 {flow_lat['p99_ms']} ms")
                flow_lat["history"] = await trigger_breakdown(client, flow_lat.pop("ids")[:100])
                log(f"in the item workflows' histories: {flow_lat['history']}")
                bare_update = await bare_update_latency(client, "bare", args.events, "run")
                log(f"bare update round trip: p50 {bare_update['p50_ms']} ms, p99 {bare_update['p99_ms']} ms")
                with Profiler(profile_dir, [crm.worker, crm.api], "latency-wait"):
                    waited = await trigger_wait_latency(crm, args.events, args.concurrency)
                log(f"payment?wait=true -> answer with the new stage: p50 {waited['p50_ms']} ms")
                waited_workflow = await trigger_wait_latency(crm, args.events, args.concurrency, [WAITING_RULE])
                log(f"payment?wait=true into a stage whose entry waits on a rule: p50 {waited_workflow['p50_ms']} ms")
                with Profiler(profile_dir, [crm.worker, crm.api], "create"):
                    load = await create_latency(crm, client, procs, min(args.events, 200), (8, 32))
                log(f"POST /deals under load: {load}")
                result["latency"] = {"bare_signal_query": bare_lat, "stageflow_payment_to_stage": flow_lat,
                                     "ratio_p50": round(flow_lat["p50_ms"] / bare_lat["p50_ms"], 2),
                                     "bare_update": bare_update, "stageflow_payment_wait": waited,
                                     "stageflow_payment_wait_entry_workflow": waited_workflow,
                                     "wait_ratio_p50": round(waited["p50_ms"] / bare_lat["p50_ms"], 2),
                                     "create": load}

            if args.timers:
                log(f"timer scale: {args.timers} items with a six-month rule")
                result["timers"] = await timer_scale(crm, client, run_dir / "temporal.db", args.timers,
                                                     args.concurrency)
                log(f"timers: {result['timers']}")
            if args.fire:
                rate = result.get("timers", {}).get("create_per_second", 10.0)
                log(f"firing: {args.fire} rules due at one moment")
                result["firing"] = await timer_firing(crm, client, procs, args.fire, args.concurrency, rate,
                                                      args.fire_rule_type)
                log(f"firing: {result['firing']}")
                result["firing"]["bare"] = await bare_firing(client, procs, args.fire, args.concurrency)
                log(f"bare firing: {result['firing']['bare']}")
            if args.simulations:
                log(f"simulation: the furniture shop over seven months, {args.simulations} times")
                result["simulation"] = await shop_simulations(http, args.simulations)
                log(f"simulation: {result['simulation']}")
        finally:
            crm.db.close()
            await http.aclose()
        procs.stop(crm.api)
        procs.stop(crm.worker)
        procs.stop(bare_worker)
        procs.stop(temporal)
    except BaseException:
        args.keep = True
        log(f"failed; the run directory with the logs is kept: {run_dir}")
        raise
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    if args.documents:
        log("documents")
        result["documents"] = documents(args.documents, 10)
    result["total_seconds"] = round(time.perf_counter() - began, 1)
    return result


def cpu_parts(cpu: dict[str, float]) -> str:
    """The milliseconds of CPU of stageflow's (or the bare engine's) processes, by process."""
    names = ("temporal", "worker-main", "api-main", "bare-worker")
    return ", ".join(f"{name} {cpu[name]}" for name in names if name in cpu)


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"stageflow benchmark — {m['cores']} cores ({m['cpu']}), Python {m['python']}, temporalio {m['temporalio']}, "
        f"{m['temporal_cli']}",
    ]
    if result.get("throughput") or "latency" in result:
        lines += ["", "| measure | bare engine | stageflow | ratio |", "|---|---|---|---|"]
    for row in result.get("throughput", []):
        k = row["k"]
        rules = f"K={k} {row.get('rule_type', 'add_timeline_entry')}"
        mark = " ✓" if row["stageflow"]["each_rule_once"] else " (rules NOT exactly once)"
        lines.append(f"| throughput, {rules} | {row['bare']['per_second']} workflows/s | "
                     f"{row['stageflow']['per_second']} stage entries/s{mark} | {row['ratio']} |")
        bare_cpu, flow_cpu = row["bare"]["cpu_ms_per_workflow"], row["stageflow"]["cpu_ms_per_entry"]
        parts = cpu_parts(flow_cpu)
        lines.append(f"| CPU per workflow / entry, {rules} | {bare_cpu['total']} ms | {flow_cpu['total']} ms "
                     f"({parts}) | {row['cpu_ratio']} |")
        lines.append(f"| CPU of other processes on the machine meanwhile, {rules} | {bare_cpu['other_processes']} ms | "
                     f"{flow_cpu['other_processes']} ms | |")
    if "latency" in result:
        lat = result["latency"]
        b, s = lat["bare_signal_query"], lat["stageflow_payment_to_stage"]
        lines.append(f"| latency p50 (signal→query / payment→stage) | {b['p50_ms']} ms | {s['p50_ms']} ms | "
                     f"{lat['ratio_p50']}× |")
        lines.append(f"| latency p99 | {b['p99_ms']} ms | {s['p99_ms']} ms | "
                     f"{round(s['p99_ms'] / b['p99_ms'], 2)}× |")
        if "stageflow_payment_wait" in lat:
            u, w = lat["bare_update"], lat["stageflow_payment_wait"]
            lines.append(f"| latency p50 (bare signal→query / `payments?wait=true`, one call) | {b['p50_ms']} ms | "
                         f"{w['p50_ms']} ms | {lat['wait_ratio_p50']}× |")
            lines.append(f"| latency p50 (bare update round trip / `payments?wait=true`) | {u['p50_ms']} ms | "
                         f"{w['p50_ms']} ms | {round(w['p50_ms'] / u['p50_ms'], 2)}× |")
            if "stageflow_payment_wait_entry_workflow" in lat:
                e = lat["stageflow_payment_wait_entry_workflow"]
                lines.append(f"| latency p50 (bare update round trip / `payments?wait=true` into a stage whose entry "
                             f"waits on a rule, its workflow started first) | {u['p50_ms']} ms | {e['p50_ms']} ms | "
                             f"{round(e['p50_ms'] / u['p50_ms'], 2)}× |")
        for concurrency, row in lat.get("create", {}).items():
            b2, p2 = row["bare_update_with_start"], row["post_deals"]
            lines.append(f"| create p50 / p99, {concurrency} in flight (update-with-start / `POST /deals`) | "
                         f"{b2['p50_ms']} / {b2['p99_ms']} ms | {p2['p50_ms']} / {p2['p99_ms']} ms | "
                         f"{round(p2['p50_ms'] / b2['p50_ms'], 2)}× |")
            if "cpu_ms" in p2:
                lines.append(f"| CPU per create, {concurrency} in flight (all processes, the client's included) | "
                             f"{b2['cpu_ms']['total']} ms | {p2['cpu_ms']['total']} ms | "
                             f"{round(p2['cpu_ms']['total'] / b2['cpu_ms']['total'], 2)}× |")
    if "n8n" in result:
        n = result["n8n"]
        mark = "" if n["every_execution_saved"] and n["endpoint_called_once_each"] else " (NOT every execution saved once)"
        lines += ["", f"| n8n {n['version']}, webhook → 5 Edit Fields → HTTP call | n8n | stageflow | ratio |",
                  "|---|---|---|---|"]
        lines.append(f"| executions/s, CPU per execution | {n['per_second']}{mark}, {n['cpu_ms_per_execution']} ms | | |")
        for row in result.get("throughput", []):
            if row["k"] != 5:
                continue
            flow = row["stageflow"]
            lines.append(f"| executions/s beside stage entries/s, K=5 {row['rule_type']} | {n['per_second']}{mark} | "
                         f"{flow['per_second']} | {round(flow['per_second'] / n['per_second'], 2)} |")
            lines.append(f"| CPU per execution / entry, K=5 {row['rule_type']} | {n['cpu_ms_per_execution']} ms | "
                         f"{flow['cpu_ms_per_entry']['total']} ms | "
                         f"{round(n['cpu_ms_per_execution'] / flow['cpu_ms_per_entry']['total'], 2)} |")
    if "timers" in result:
        t = result["timers"]
        lines += [
            "",
            f"timers: {t['items']} items waiting on a six-month rule created in {t['create_seconds']} s "
            f"({t['create_per_second']}/s; all scheduled after {t['scheduled_seconds']} s), "
            f"{t['entries_waiting']} stage entries waiting; worker RSS {t['worker_rss_before_mib']} → peak "
            f"{t['worker_peak_rss_mib']} MiB; Temporal DB {t['temporal_db_before_mib']} → "
            f"{t['temporal_db_after_mib']} MiB ({t['temporal_db_kib_per_item']} KiB per item)",
        ]
    if "firing" in result:
        f = result["firing"]
        lines.append(
                f"firing: {f['items']} {f.get('rule_type', 'add_timeline_entry')} rules due at one moment fired in "
                f"{f['fire_seconds']} s "
            f"({f['fired_per_second']}/s; {f['slow_workflow_tasks']} workflow tasks over 5 s; their entries' "
            f"workflows ended within {f.get('entries_ended_seconds', '?')} s, at "
            f"{f.get('cpu_ms_per_rule_until_entries_ended', {}).get('total', '?')} ms of CPU per rule), "
            f"every rule exactly once: {'yes' if f['every_rule_once'] else 'NO'}; CPU per rule "
            f"{f['cpu_ms_per_rule']['total']} ms ({cpu_parts(f['cpu_ms_per_rule'])})"
        )
        if "bare" in f:
            b = f["bare"]
            lines.append(
                f"firing, bare engine: {b['workflows']} timer workflows due at one moment, each then one local "
                f"activity, completed in {b['fire_seconds']} s ({b['fired_per_second']}/s; stageflow "
                f"{round(f['fired_per_second'] / b['fired_per_second'], 2)}× of it); CPU per workflow "
                f"{b['cpu_ms_per_workflow']['total']} ms ({cpu_parts(b['cpu_ms_per_workflow'])})"
            )
    if "simulation" in result:
        sim = result["simulation"]
        lines.append(f"simulation: the furniture shop over {sim['horizon']} ({sim['timeline_entries']} timeline entries) "
                     f"in {sim['wall_ms']['p50_ms']} ms of wall time at the median, {sim['wall_ms']['max_ms']} ms at "
                     f"most ({sim['runs']} runs; request round trip p50 {sim['request_ms']['p50_ms']} ms; its own time-skipping "
                     f"server starts and stops in {sim['server_start_ms']['p50_ms']} ms)")
    if "documents" in result:
        d = result["documents"]
        lines.append(f"documents: DOCX {d['docx_per_second']}/s, PDF {d['pdf_per_second']}/s, "
                     f"DOCX+PDF {d['docx_and_pdf_per_second']} invoices/s ({d['lines_per_invoice']} lines each)")
    lines.append(f"total time {result['total_seconds']} s")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=200, help="workflows / stage entries per K (default 200)")
    parser.add_argument("--ks", type=lambda text: [int(k) for k in text.split(",")], default=[1, 5],
                        help="rules (activities) per entry, comma-separated (default 1,5)")
    parser.add_argument("--rule-types", type=lambda text: text.split(","), default=list(RULE_TYPES),
                        help="rule types of the stageflow entries, each measured beside the same bare run "
                             f"(default {','.join(RULE_TYPES)}: a local and a regular activity per rule)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests / starts in flight (default 32)")
    parser.add_argument("--events", type=int, default=500, help="events for the latency measures (default 500)")
    parser.add_argument("--timers", type=int, default=10000,
                        help="items waiting on a six-month rule on the dev server (default 10000; 0 skips)")
    parser.add_argument("--fire", type=int, default=None,
                        help="items whose rules all fall due at one moment on the dev server (default 2000; 0 skips)")
    parser.add_argument("--fire-rule-type", choices=RULE_TYPES, default=RULE_TYPES[0],
                        help="the type of the rules due at one moment (default add_timeline_entry, database-only; "
                             "notify_employee runs as a rule that reaches the outside)")
    parser.add_argument("--documents", type=int, default=50, help="invoices to render (default 50; 0 skips)")
    parser.add_argument("--simulations", type=int, default=5, help="simulations of the shop's story (default 5; 0 skips)")
    parser.add_argument("--parts", type=lambda text: set(text.split(",")), default=set(PARTS),
                        help=f"comma-separated parts to run (default all: {','.join(PARTS)}; "
                             f"also {','.join(OPTIONAL_PARTS)}, run only when named)")
    parser.add_argument("--app-root", default=str(ROOT), help="run the API and worker from this checkout")
    parser.add_argument("--worker-options", default="", help="JSON of Worker options (bench/tuned_worker.py)")
    parser.add_argument("--bare-loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the bare-engine worker's event loop (default asyncio, as `asyncio.run` gives)")
    parser.add_argument("--uvicorn-args", default="", help="more arguments for the API's uvicorn (\"--loop asyncio\")")
    parser.add_argument("--profile", default="", help="write py-spy profiles of the worker and API to this directory")
    parser.add_argument("--label", default="", help="a name for this run in the JSON")
    parser.add_argument("--out", default=str(RESULTS), help=f"JSON file to write (default {RESULTS})")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (databases, logs)")
    args = parser.parse_args()
    unknown = args.parts - set(PARTS) - set(OPTIONAL_PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))} (known: {', '.join(PARTS + OPTIONAL_PARTS)})")
    if args.fire is None:
        args.fire = 2000
    for part, option in (("timers", "timers"), ("firing", "fire"), ("documents", "documents"), ("latency", "events"),
                         ("simulation", "simulations")):
        if part not in args.parts:
            setattr(args, option, 0)
    if "throughput" not in args.parts:
        args.ks = []
    def stop(signum, _frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    result = asyncio.run(run(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(table(result))
    print(f"\n(written to {out})")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
