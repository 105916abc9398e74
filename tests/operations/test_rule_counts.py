"""Each rule is counted once, at the outcome that was stored: rules that start together run in one transaction,
and when one of them fails that transaction is undone and they run again one by one; the rules done in the undone
transaction are not counted then, only when their outcome is stored for good. A rule run again after its outcome
was stored counts as an effect found, not as another run. A database-only rule run as a local activity of its own
is prepared, run and recorded in one transaction, or, when that does not succeed, step by step."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import event
from temporalio.exceptions import ApplicationError
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.metrics import RuleMetrics
from activities.rule import Deps
from activities.steps.runner import RuleRunner
from activities.rules import RULE_TYPES
from activities import rule as rule_context
from activities.rules import monitoring
from activities.rules.monitoring import AddTimelineEntry
from activities.worker import build_worker
from models.db import make_engine, session_scope
from models.tables import Item
from tests.crm import automate, deal, eventually, pipeline, timeline, user
from tests.stacks import Stack, open_stack, stack_settings
from workflows.types import RuleCall, RuleOutcome, RulePlan


@dataclass
class Counted:
    stack: Stack
    buffer: MetricBuffer
    metrics: RuleMetrics
    seen: Counter = field(default_factory=Counter)
    records: Counter = field(default_factory=Counter)

    def read(self) -> Counter:
        """(metric, labels…) → the sum of the values recorded so far (`records`: how many times each metric was
        recorded)."""
        for update in self.buffer.retrieve_updates():
            labels = tuple(sorted((key, str(value)) for key, value in update.attributes.items()))
            self.seen[(update.metric.name, labels)] += update.value
            self.records[update.metric.name] += 1
        return self.seen

    def rules(self) -> Counter:
        counted = Counter()
        for (name, labels), value in self.read().items():
            if name == "stageflow_rules_total":
                values = dict(labels)
                counted[(values["type"], values["outcome"])] += value
        return +counted

    def total(self, name: str) -> float:
        return sum(value for (metric, _), value in self.read().items() if metric == name)


@pytest.fixture
async def counted(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Counted]:
    """A stack whose worker counts its rules into a metric buffer."""
    buffer = MetricBuffer(10_000)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    async with AsyncExitStack() as exit_stack:
        stack = await open_stack(exit_stack, dev_env, stack_settings(tmp_path), worker=False)
        metrics = RuleMetrics(runtime.metric_meter)
        stack.deps = Deps(settings=stack.settings, database=stack.engine, client=dev_env.client, metrics=metrics)
        await exit_stack.enter_async_context(build_worker(dev_env.client, stack.deps))
        yield Counted(stack, buffer, metrics)


def note(name: str, text: str, **extra) -> dict:
    return {"name": name, "type": "add_timeline_entry", "settings": {"text": text}, **extra}


async def test_rules_undone_with_their_batch_are_counted_once_when_stored(counted: Counted):
    http = counted.stack.http
    manager = await user(http, "Manager")
    flow = await pipeline(http, ["NEW", "WON"])
    await automate(http, flow["id"], {"NEW": {"rules": [
        note("one", "first"),
        note("two", "second"),
        note("broken", "{{Deal.Fields.missing.deeper}}"),
        note("never", "large", condition={"all": [{"field": "Deal.Amount", "op": ">", "value": 1_000_000}]}),
        {"name": "ping", "type": "notify_employee", "settings": {"text": "hi", "user_ids": [manager["id"]]}},
    ]}})
    item = await deal(http, flow["id"], manager["id"], title="Sofa", amount=10)

    async def finished():
        story = await timeline(http, item["id"])
        ended = [entry for entry in story if entry["kind"] in ("rule_done", "rule_failed", "rule_skipped")]
        return story if len(ended) == 5 else None

    story = await eventually(finished, timeout=30)
    on_timeline = Counter(entry["kind"] for entry in story if entry["kind"].startswith("rule_"))
    assert (on_timeline["rule_done"], on_timeline["rule_failed"], on_timeline["rule_skipped"]) == (3, 1, 1)
    await eventually(lambda: counted.rules() == Counter({
        ("add_timeline_entry", "done"): 2, ("add_timeline_entry", "failed"): 1, ("add_timeline_entry", "skipped"): 1,
        ("notify_employee", "done"): 1,
    }), timeout=10)
    assert counted.total("stageflow_effects_found_total") == 0
    assert counted.records["stageflow_rule_lateness_seconds"] == 4  # every rule that ran and was due: not `broken`


async def test_a_rule_run_again_after_its_outcome_was_stored_is_an_effect_found(counted: Counted):
    http = counted.stack.http
    manager = await user(http, "Manager")
    flow = await pipeline(http, ["NEW"])
    item = await deal(http, flow["id"], manager["id"], title="Sofa")
    runner = RuleRunner(counted.stack.deps, RULE_TYPES["add_timeline_entry"])
    call = RuleCall(
        item_id=item["id"], entity="deal", pipeline_id=flow["id"], stage="NEW", entry_no=1,
        workflow_id=f"deal-{item['id']}/entry-1", at=_now(),
        rule=RulePlan(index=0, name="again", type="add_timeline_entry", activity="rule.add_timeline_entry",
                      settings={"text": "once"}, due=_now()),
    )
    first = await ActivityEnvironment().run(runner.run, call)
    second = await ActivityEnvironment().run(runner.run, call)
    assert first.status == second.status == "done"
    assert counted.rules() == Counter({("add_timeline_entry", "done"): 1})
    assert counted.total("stageflow_effects_found_total") == 1
    comments = [entry for entry in await timeline(http, item["id"]) if entry["kind"] == "comment"]
    assert [entry["text"] for entry in comments] == ["once"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _first_entry_call(item: dict, rule_type: str, name: str, settings: dict) -> RuleCall:
    """A database-only rule of the deal's first stage entry, due now."""
    return RuleCall(
        item_id=item["id"], entity="deal", pipeline_id=item["pipeline_id"], stage=item["stage"], entry_no=1,
        workflow_id=f"deal-{item['id']}/entry-1", at=_now(),
        rule=RulePlan(index=0, name=name, type=rule_type, activity=f"rule.{rule_type}", settings=settings, due=_now(),
                      local=True),
    )


async def _run_locally(runner: RuleRunner, call: RuleCall) -> RuleOutcome:
    """The rule run as a local activity of its own."""
    local = ActivityEnvironment()
    local.info = dataclasses.replace(local.info, is_local=True)
    return await local.run(runner.run, call)


class _WaitsBesidesItsDatabaseWork(AddTimelineEntry):
    """A database-only rule type that also waits for something else before its effect."""

    async def run(self, ctx):
        await asyncio.sleep(0)
        return await super().run(ctx)


async def test_a_database_only_rule_of_its_own_runs_in_one_transaction_or_else_step_by_step(counted: Counted):
    http = counted.stack.http
    manager = await user(http, "Manager")
    flow = await pipeline(http, ["NEW"])
    item = await deal(http, flow["id"], manager["id"], title="Sofa")
    # The rules below run on an engine of their own, so that only their commits are counted.
    engine = make_engine(counted.stack.settings.effective_database_url)
    deps = dataclasses.replace(counted.stack.deps, database=engine)
    commits = []
    event.listen(engine, "commit", lambda connection: commits.append(1))

    def call(name: str, settings: dict) -> RuleCall:
        return _first_entry_call(item, "add_timeline_entry", name, settings)

    plain = RuleRunner(deps, RULE_TYPES["add_timeline_entry"])
    assert (await _run_locally(plain, call("at once", {"text": "one transaction"}))).status == "done"
    assert len(commits) == 1

    with pytest.raises(ApplicationError, match="user 999999 does not exist"):
        await _run_locally(plain, call("no author", {"text": "never written", "author_id": 999999}))

    waiting = RuleRunner(deps, _WaitsBesidesItsDatabaseWork())
    assert (await _run_locally(waiting, call("step by step", {"text": "two transactions"}))).status == "done"

    story = await timeline(http, item["id"])
    assert sorted(entry["text"] for entry in story if entry["kind"] == "comment") == [
        "one transaction", "two transactions"]
    assert sorted(entry["rule_name"] for entry in story if entry["kind"] == "rule_done") == ["at once", "step by step"]
    assert counted.rules() == Counter({("add_timeline_entry", "done"): 2})
    engine.dispose()


async def test_an_activity_scheduled_as_its_item_leaves_the_stage_is_completed(counted: Counted, monkeypatch):
    """schedule_activity reads the item under a lock just before it writes the to-do: a stage change committed after
    the rule began (here, while it works out the due date) is seen, and the to-do is completed, not left open."""
    http = counted.stack.http
    manager = await user(http, "Manager")
    flow = await pipeline(http, ["NEW", "WON"])
    item = await deal(http, flow["id"], manager["id"], title="Sofa")
    moment = monitoring._moment

    def moved_meanwhile(ctx, session, spec, field):
        due = moment(ctx, session, spec, field)
        with session_scope(counted.stack.engine) as other:
            row = other.get(Item, item["id"])
            row.entry_no += 1
            other.add(row)
        return due

    monkeypatch.setattr(monitoring, "_moment", moved_meanwhile)
    call = _first_entry_call(item, "schedule_activity", "call back", {"description": "Call back", "when": "+1d"})
    runner = RuleRunner(counted.stack.deps, RULE_TYPES["schedule_activity"])
    assert (await _run_locally(runner, call)).status == "done"
    [todo] = (await http.get("/activities", params={"deal_id": item["id"]})).json()
    assert (todo["description"], todo["completed"]) == ("Call back", True)


async def test_fields_set_by_another_writer_while_update_fields_runs_are_kept(counted: Counted, monkeypatch):
    """update_fields reads the item's custom fields under a lock just before it writes them: a field another writer
    set after the rule began (here, while it fills in its values) is kept beside the rule's own."""
    http = counted.stack.http
    manager = await user(http, "Manager")
    flow = await pipeline(http, ["NEW"])
    item = await deal(http, flow["id"], manager["id"], title="Sofa")
    render = rule_context.placeholders.render

    def set_meanwhile(text, data):
        with session_scope(counted.stack.engine) as other:
            row = other.get(Item, item["id"])
            row.fields = {**(row.fields or {}), "colour": "oak"}
            other.add(row)
        return render(text, data)

    monkeypatch.setattr(rule_context.placeholders, "render", set_meanwhile)
    call = _first_entry_call(item, "update_fields", "size", {"fields": {"Fields.size": "large"}})
    runner = RuleRunner(counted.stack.deps, RULE_TYPES["update_fields"])
    assert (await _run_locally(runner, call)).status == "done"
    fields = (await http.get(f"/deals/{item['id']}")).json()["fields"]
    assert fields == {"colour": "oak", "size": "large"}
