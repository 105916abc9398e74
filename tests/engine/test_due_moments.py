"""Rules of several deals due at one moment: the first entry keeps its own timer, the moment's workflow runs the
others together (engine generation 4); each rule takes effect once, and a deal that leaves its stage, or whose date
moves, before the moment takes its rule back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlmodel import Session, select
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment

from activities.rule import Deps
from activities.steps.moments import DueMomentSteps
from models.db import create_schema, make_engine
from models.settings import get_settings
from models.tables import DueMomentRecord, HandedRule, Notification
from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from tests.custom.endpoint import endpoint
from tests.engine.moments import handed, moment_gone, ran_to_be_tried_again
from workflows.entry import HANDED_GRACE
from workflows.types import RUN_DUE_OUTSIDE_RULES, RuleOutcome, TakeBack, due_moment_key, due_workflow_id

AHEAD = 14
"""Seconds from now to the shared moment: past the 10 s under which an entry keeps its own timer."""


async def _setup(http) -> tuple[int, int]:
    owner = await user(http, "Owner")
    flow = await pipeline(http, ["NEW", "ASIDE"])
    await automate(http, flow["id"], {"NEW": {"rules": [
        {"name": "follow", "type": "add_timeline_entry", "delay": {"field": "Fields.fire_at"},
         "settings": {"text": "Call {{Deal.Title}} back"}},
    ]}})
    return flow["id"], owner["id"]


async def _sharing(
    stack, flow: int, owner: int, count: int, due: datetime | None = None
) -> tuple[datetime, list[dict], Any]:
    """`count` deals whose rule falls due at one moment (`due`, else `AHEAD` seconds on): the moment, the deals, its
    workflow."""
    due = due or datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=AHEAD)
    deals = [await deal(stack.http, flow, owner, title=f"Deal {n}", fields={"fire_at": due.isoformat()})
             for n in range(count)]
    return due, deals, stack.client.get_workflow_handle(due_workflow_id(due_moment_key(due)))


async def _done(http, item_id: int) -> list[dict]:
    return [entry for entry in await timeline(http, item_id, kind="rule_done") if entry.get("rule_name") == "follow"]


async def _notes(http, item_id: int) -> list[str]:
    return [entry["text"] for entry in await timeline(http, item_id, kind="comment")]


async def test_rules_due_at_one_moment_run_together_each_once(stack):
    flow, owner = await _setup(stack.http)
    due, deals, moment = await _sharing(stack, flow, owner, 3)
    pending = ok(await stack.http.get(f"/deals/{deals[2]['id']}/pending"))
    assert [(rule["rule"], rule["state"]) for rule in pending] == [("follow", "waiting_delay")]
    assert (await moment.describe()).status == WorkflowExecutionStatus.RUNNING
    assert await _done(stack.http, deals[0]["id"]) == []

    assert await moment.result() == 2  # the second and third deal's rules; the first kept its own timer
    for n, item in enumerate(deals):
        done = await eventually(lambda: _done(stack.http, item["id"]), timeout=30)
        assert len(done) == 1
        assert datetime.fromisoformat(done[0]["at"]) >= due
        assert await _notes(stack.http, item["id"]) == [f"Call Deal {n} back"]
        entry = stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1")
        assert await entry.result() == {"follow": "done"}
    assert ok(await stack.http.get(f"/deals/{deals[2]['id']}/pending")) == []


async def test_a_deal_that_leaves_or_whose_date_moves_takes_its_rule_back(stack):
    flow, owner = await _setup(stack.http)
    due, deals, moment = await _sharing(stack, flow, owner, 4)
    ok(await stack.http.post(f"/deals/{deals[2]['id']}/move", json={"stage": "ASIDE"}))
    later = due + timedelta(seconds=6)
    ok(await stack.http.patch(f"/deals/{deals[3]['id']}", json={"fields": {"fire_at": later.isoformat()}}))
    await eventually(lambda: timeline(stack.http, deals[3]["id"], kind="rule_rescheduled"))

    assert await moment.result() == 1  # only the second deal's rule was still its to run
    left = await eventually(lambda: timeline(stack.http, deals[2]["id"], kind="rule_cancelled"))
    assert [entry["data"]["reason"] for entry in left] == ["left"]
    assert await _done(stack.http, deals[2]["id"]) == []
    assert await _notes(stack.http, deals[2]["id"]) == []
    moved = await eventually(lambda: _done(stack.http, deals[3]["id"]), timeout=30)
    assert len(moved) == 1 and datetime.fromisoformat(moved[0]["at"]) >= later
    for item in deals[:2]:
        assert len(await eventually(lambda: _done(stack.http, item["id"]))) == 1
    for item in (deals[0], deals[1], deals[3]):
        assert len(await _notes(stack.http, item["id"])) == 1


async def test_a_new_version_that_removes_the_rule_takes_it_back_from_its_moment(stack):
    flow, owner = await _setup(stack.http)
    due, deals, moment = await _sharing(stack, flow, owner, 3)
    applied = ok(await stack.http.put(f"/pipelines/{flow}/automation", params={"in_flight": "apply"},
                                      json={"stages": {"NEW": {"rules": []}}}))
    await stack.client.get_workflow_handle(applied["apply_workflow_id"]).result()

    assert await moment.result() == 0
    for item in deals:
        entry = stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1")
        assert await entry.result() == {"follow": "cancelled"}
        assert await _done(stack.http, item["id"]) == []
        assert await _notes(stack.http, item["id"]) == []


async def _tomorrow(stack) -> datetime:
    return (await stack.env.get_current_time()).replace(microsecond=0) + timedelta(days=1)


async def test_a_rule_its_moment_never_finished_runs_once_at_its_entry_past_the_grace(ts_stack):
    """The moment's workflow is gone: one rule it had begun in a batch that never recorded it, one it never came
    to. Past the due time and the grace, each entry takes its rule back, even from the batch, and runs it itself,
    once; the lost batch's record, arriving late, changes nothing."""
    stack = ts_stack
    flow, owner = await _setup(stack.http)
    due, deals, _ = await _sharing(stack, flow, owner, 3, await _tomorrow(stack))
    key = due_moment_key(due)
    rows = await eventually(lambda: len(found := handed(stack, key)) == 2 and found)
    assert [row.item_id for row in rows] == [deals[1]["id"], deals[2]["id"]]
    await moment_gone(stack, key)
    with stack.session() as session:
        begun = session.get(HandedRule, rows[0].id)
        begun.state, begun.run_by = "running", "a batch that never finished"
        session.add(begun)

    await stack.env.sleep(due - await stack.env.get_current_time() + timedelta(minutes=1))
    assert len(await eventually(lambda: _done(stack.http, deals[0]["id"]))) == 1  # its own timer
    assert [await _done(stack.http, item["id"]) for item in deals[1:]] == [[], []]
    await stack.env.sleep(HANDED_GRACE)
    for n, item in enumerate(deals):
        [done] = await eventually(lambda: _done(stack.http, item["id"]))
        assert datetime.fromisoformat(done["at"]) >= (due + HANDED_GRACE if n else due)
        assert await _notes(stack.http, item["id"]) == [f"Call Deal {n} back"]
        status = await stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1").describe()
        assert status.status == WorkflowExecutionStatus.COMPLETED
    assert [row.state for row in handed(stack, key)] == ["withdrawn", "withdrawn"]

    with stack.session() as session:
        DueMomentSteps._record(session, rows[0].id, RuleOutcome(status="done"))
    assert [row.state for row in handed(stack, key)] == ["withdrawn", "withdrawn"]
    assert len(await _done(stack.http, deals[1]["id"])) == 1


async def test_a_rule_whose_moment_will_retry_it_when_the_item_leaves_is_retried_and_cancelled(ts_stack):
    """The moment ran a rule whose attempt failed and may be tried again (its outcome told no entry yet, its
    workflow gone); the item leaves the stage: the entry tries it again as it would a rule it ran itself, and the
    rule, finding the item gone from its stage, is cancelled rather than counted as failed."""
    stack = ts_stack
    flow, owner = await _setup(stack.http)
    due, deals, _ = await _sharing(stack, flow, owner, 2, await _tomorrow(stack))
    key = due_moment_key(due)
    [row] = await eventually(lambda: handed(stack, key))
    await moment_gone(stack, key)
    ran_to_be_tried_again(stack, row.id)

    ok(await stack.http.post(f"/deals/{deals[1]['id']}/move", json={"stage": "ASIDE"}))
    entry = stack.client.get_workflow_handle(f"deal-{deals[1]['id']}/entry-1")
    with pytest.raises(WorkflowFailureError):
        await entry.result()
    assert (await entry.describe()).status == WorkflowExecutionStatus.CANCELED
    [cancelled] = await timeline(stack.http, deals[1]["id"], kind="rule_cancelled")
    assert (cancelled["rule_name"], cancelled["data"]["reason"]) == ("follow", "left")
    assert await timeline(stack.http, deals[1]["id"], kind="rule_failed") == []
    assert await _notes(stack.http, deals[1]["id"]) == []


async def test_rules_that_reach_the_outside_run_side_by_side_at_their_moment_each_once(stack):
    """A notification and a call to an outside system, due at one moment for three deals: the moment runs every
    rule but the first to arrive side by side in one call (engine generation 5); the call that failed for one deal
    there is retried by its entry; each rule takes effect once."""
    owner = await user(stack.http, "Owner")
    flow = await pipeline(stack.http, ["NEW", "ASIDE"])
    failing: dict[str, int] = {}

    def answer(seen) -> tuple[int, dict] | None:
        deal_id = seen.query["deal"][0]
        if failing.get(deal_id, 0) > 0:
            failing[deal_id] -= 1
            return 503, {"error": "busy"}
        return None

    async with endpoint(answer=answer) as erp:
        due_at = {"field": "Fields.fire_at"}
        await automate(stack.http, flow["id"], {"NEW": {"rules": [
            {"name": "tell", "type": "notify_employee", "delay": due_at,
             "settings": {"user_ids": [owner["id"]], "text": "Call {{Deal.Title}} back"}},
            {"name": "erp", "type": "webhook", "delay": due_at, "settings": {"url": erp.url() + "?deal={{Deal.Id}}"}},
        ]}})
        due, deals, moment = await _sharing(stack, flow["id"], owner["id"], 3)
        failing[str(deals[2]["id"])] = 1
        rows = await eventually(lambda: len(found := handed(stack, due_moment_key(due))) == 5 and found)
        assert ("erp", deals[2]["id"]) in {(row.rule, row.item_id) for row in rows}

        assert await moment.result() == 5
        assert all(row.state == "done" and row.claimed_at is not None for row in handed(stack, due_moment_key(due)))
        for item in deals:
            entry = stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1")
            assert await entry.result() == {"tell": "done", "erp": "done"}
            done = await timeline(stack.http, item["id"], kind="rule_done")
            assert sorted(entry["rule_name"] for entry in done) == ["erp", "tell"]
        calls = [seen.query["deal"][0] for seen in erp.requests]
        assert sorted(calls) == sorted([str(deals[0]["id"]), str(deals[1]["id"]), str(deals[2]["id"]),
                                        str(deals[2]["id"])])
    with stack.session() as session:
        sent = sorted(row.text for row in session.exec(select(Notification).where(Notification.user_id == owner["id"])))
    assert sent == [f"Call Deal {n} back" for n in range(3)]
    history = await moment.fetch_history()
    kinds = [event.activity_task_scheduled_event_attributes.activity_type.name for event in history.events
             if event.HasField("activity_task_scheduled_event_attributes")]
    assert RUN_DUE_OUTSIDE_RULES in kinds


async def test_a_forced_take_back_leaves_a_rule_its_batch_began_within_the_rule_s_timeout(tmp_path):
    """Past the grace, an entry takes its rule back even from a batch that began it, but only from one that began it
    longer ago than the rule may run: a call to the outside still within its timeout is waited for."""
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    create_schema(engine)
    steps = DueMomentSteps(Deps(settings=get_settings(data_dir=tmp_path), database=engine), {})
    now = datetime.now(timezone.utc)
    with Session(engine) as session:
        for seq, claimed in ((1, now - timedelta(seconds=30)), (2, now - timedelta(seconds=200))):
            session.add(HandedRule(moment="m outside", workflow_id="deal-1/entry-1", rule="tell", seq=seq, item_id=1,
                                   call=b"", state="running", run_by="batch", claimed_at=claimed))
        session.commit()
    env = ActivityEnvironment()

    def asked(seq: int, force: bool) -> TakeBack:
        return TakeBack(workflow_id="deal-1/entry-1", rule="tell", seq=seq, force=force, stale_seconds=150)

    assert (await env.run(steps.take_back, asked(1, False))).state == "running"
    assert (await env.run(steps.take_back, asked(1, True))).state == "running"
    assert (await env.run(steps.take_back, asked(2, True))).state == "withdrawn"
    with Session(engine) as session:
        assert [row.state for row in session.exec(select(HandedRule).order_by(HandedRule.seq))] == [
            "running", "withdrawn"]


async def test_a_moment_an_older_worker_counted_takes_no_rule_that_reaches_the_outside(stack):
    """A moment first counted by a worker from before engine generation 5 runs no rule that reaches the outside: the
    entries offering one keep their own timers, and each rule still takes effect once, on time."""
    owner = await user(stack.http, "Owner")
    flow = await pipeline(stack.http, ["NEW"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "tell", "type": "notify_employee", "delay": {"field": "Fields.fire_at"},
         "settings": {"user_ids": [owner["id"]], "text": "Call {{Deal.Title}} back"}},
    ]}})
    due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=AHEAD)
    with stack.session() as session:
        session.add(DueMomentRecord(key=due_moment_key(due), due=due, arrivals=1, outside=False))
    due, deals, moment = await _sharing(stack, flow["id"], owner["id"], 2, due)

    for n, item in enumerate(deals):
        entry = stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1")
        assert await entry.result() == {"tell": "done"}
        [done] = await timeline(stack.http, item["id"], kind="rule_done")
        assert datetime.fromisoformat(done["at"]) >= due
    with stack.session() as session:
        sent = sorted(row.text for row in session.exec(select(Notification).where(Notification.user_id == owner["id"])))
    assert sent == ["Call Deal 0 back", "Call Deal 1 back"]
    assert handed(stack, due_moment_key(due)) == []
    with pytest.raises(RPCError):
        await moment.describe()
