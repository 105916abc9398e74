"""Database-only rules due at an entry's start run in one `rules.together` call, each keyed, recorded and failing
on its own; the Temporal UI names every rule of the call. Rules that reach the outside run side by side in one
`rules.outside_together` call (through the API: tests/custom/test_outside_together.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timezone

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.steps.together import RulesTogetherStep
from activities.rule import Deps
from models.db import create_schema, make_engine
from models.settings import get_settings
from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from workflows.types import AGAIN, RULES_TOGETHER, RuleCall, RuleOutcome, RulePlan, RulesTogether


def note(name: str, text: str, **extra) -> dict:
    return {"name": name, "type": "add_timeline_entry", "settings": {"text": text}, **extra}


async def test_rules_that_start_together_run_in_one_call_and_each_is_recorded_once(stack):
    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW", "WON"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        note("one", "first {{Deal.Title}}"),
        note("two", "second"),
        note("broken", "{{Deal.Fields.missing.deeper}}"),
        note("later", "after a while", delay="1h"),
        note("three", "third"),
        {"name": "ping", "type": "notify_employee", "settings": {"text": "hi", "user_ids": [manager["id"]]}},
    ]}})
    item = await deal(stack.http, flow["id"], manager["id"], title="Sofa")

    story = await eventually(lambda: _finished(stack.http, item["id"], {"one", "two", "three", "broken", "ping"}))
    done = sorted(entry["rule_name"] for entry in story if entry["kind"] == "rule_done")
    assert done == ["one", "ping", "three", "two"]
    [failed] = [entry for entry in story if entry["kind"] == "rule_failed"]
    assert failed["rule_name"] == "broken"
    alone = await _alone_failure(stack, manager)
    assert failed["text"].replace(str(item["id"]), "") == alone["text"].replace(str(alone["item_id"]), "")
    assert failed["data"]["error"] == alone["data"]["error"]
    comments = sorted(entry["text"] for entry in story if entry["kind"] == "comment")
    assert comments == ["first Sofa", "second", "third"]
    pending = ok(await stack.http.get(f"/deals/{item['id']}/pending"))
    assert [rule["rule"] for rule in pending] == ["later"]

    history = await stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1").fetch_history()
    calls = local_activities(json.loads(history.to_json()))
    assert [(kind, summary) for kind, summary in calls if kind.startswith("rule")] == [(
        RULES_TOGETHER, "one (add_timeline_entry), two (add_timeline_entry), broken (add_timeline_entry), "
                        "three (add_timeline_entry)",
    )]


def local_activities(history: dict) -> list[tuple[str, str]]:
    """(activity type, summary as the Temporal UI shows it) of each local activity in the history."""
    found = []
    for event in history["events"]:
        marker = event.get("markerRecordedEventAttributes") or {}
        if marker.get("markerName") != "core_local_activity":
            continue
        data = json.loads(base64.b64decode(marker["details"]["data"]["payloads"][0]["data"]))
        summary = json.loads(base64.b64decode(event["userMetadata"]["summary"]["data"]))
        found.append((data["activity_type"], summary))
    return found


async def _alone_failure(stack, manager) -> dict:
    """The same failing rule in an entry of its own: it runs as its own activity."""
    flow = await pipeline(stack.http, ["NEW", "WON"], name="Alone")
    await automate(stack.http, flow["id"], {"NEW": {"rules": [note("broken", "{{Deal.Fields.missing.deeper}}")]}})
    item = await deal(stack.http, flow["id"], manager["id"], title="Sofa")
    story = await eventually(lambda: _finished(stack.http, item["id"], {"broken"}))
    return next(entry for entry in story if entry["kind"] == "rule_failed")


async def _finished(http, deal_id: int, rules: set[str]) -> list[dict] | None:
    story = await timeline(http, deal_id)
    ended = {entry["rule_name"] for entry in story if entry["kind"] in ("rule_done", "rule_failed")}
    return story if rules <= ended else None


class Runner:
    """A rule type's runner that fails with `fail` on every run after waiting `wait` seconds, or succeeds."""

    def __init__(self, fail: BaseException | None = None, wait: float = 0.0) -> None:
        self.fail = fail
        self.wait = wait
        self.calls = 0
        self.prepared: list[str] = []
        self.started: list[float] = []

    def prepare(self, session, call: RuleCall, key, recorded, item, tree) -> None:
        self.prepared.append(call.rule.name)

    async def run(self, call: RuleCall, ready=None, deps=None) -> RuleOutcome:
        self.calls += 1
        if self.wait:
            self.started.append(asyncio.get_running_loop().time())
            await asyncio.sleep(self.wait)
        if self.fail is not None:
            raise self.fail
        return RuleOutcome(status="done", result={"rule": call.rule.name})


def _call(name: str, activity: str, *, local: bool = True, timeout: float = 120.0) -> RuleCall:
    plan = RulePlan(index=0, name=name, type="t", activity=activity, local=local, timeout_seconds=timeout)
    return RuleCall(item_id=1, entity="deal", pipeline_id=1, stage="NEW", entry_no=1, workflow_id="deal-1/entry-1",
                    rule=plan, at=datetime.now(timezone.utc))


def _step(tmp_path, runners: dict[str, Runner]) -> RulesTogetherStep:
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    create_schema(engine)
    return RulesTogetherStep(Deps(settings=get_settings(data_dir=tmp_path), database=engine), runners)


async def test_rules_that_all_succeed_run_once_each_in_one_transaction(tmp_path):
    runners = {"rule.one": Runner(), "rule.two": Runner()}
    step = _step(tmp_path, runners)
    batch = RulesTogether(calls=[_call("a", "rule.one"), _call("b", "rule.two"), _call("c", "rule.one")], max_attempts=3)
    outcomes = await ActivityEnvironment().run(step.run_together, batch)
    assert [(o.status, o.result) for o in outcomes] == [("done", {"rule": name}) for name in "abc"]
    assert (runners["rule.one"].calls, runners["rule.two"].calls) == (2, 1)
    assert runners["rule.one"].prepared + runners["rule.two"].prepared == ["a", "c", "b"]


@pytest.mark.parametrize("attempt", [1, 3])
async def test_a_rule_to_retry_retries_the_call_and_on_its_last_attempt_is_reported_failed(attempt, tmp_path):
    flaky = Runner(RuntimeError("database busy"))
    steady = Runner()
    final = Runner(ApplicationError("bad settings", type="RuleFailed", non_retryable=True))
    step = _step(tmp_path, {"rule.flaky": flaky, "rule.steady": steady, "rule.final": final})
    batch = RulesTogether(calls=[_call("a", "rule.flaky"), _call("b", "rule.steady"), _call("c", "rule.final")],
                          max_attempts=3)
    env = ActivityEnvironment()
    env.info = env.info.__class__(**{**env.info.__dict__, "attempt": attempt})
    if attempt < 3:
        with pytest.raises(RuntimeError, match="database busy"):
            await env.run(step.run_together, batch)
        # The one transaction stopped at the first rule's failure; then every rule ran on its own (the done ones
        # are recorded, so the retry of the call finds them done).
        assert (flaky.calls, steady.calls, final.calls) == (2, 1, 1)
    else:
        outcomes = await env.run(step.run_together, batch)
        assert [(o.status, o.reason) for o in outcomes] == [
            ("failed", "database busy"), ("done", ""), ("failed", "bad settings")]
        assert [o.result.get("error_type") for o in outcomes] == ["RuntimeError", None, "RuleFailed"]


@pytest.mark.parametrize("attempt", [1, 3])
async def test_outside_rules_of_one_call_run_side_by_side_and_each_ends_on_its_own(attempt, tmp_path):
    slow = [Runner(wait=0.3), Runner(wait=0.3)]
    flaky = Runner(RuntimeError("gateway busy"))
    final = Runner(ApplicationError("unknown customer", type="RuleFailed", non_retryable=True))
    hanging = Runner(wait=5)
    step = _step(tmp_path, {"rule.a": slow[0], "rule.b": slow[1], "rule.flaky": flaky, "rule.final": final,
                            "rule.hanging": hanging})
    batch = RulesTogether(calls=[
        _call("a", "rule.a", local=False), _call("b", "rule.b", local=False), _call("c", "rule.flaky", local=False),
        _call("d", "rule.final", local=False), _call("e", "rule.hanging", local=False, timeout=0.5),
    ], max_attempts=3)
    env = ActivityEnvironment()
    env.info = env.info.__class__(**{**env.info.__dict__, "attempt": attempt})

    outcomes = await env.run(step.run_outside_together, batch)

    retried = AGAIN if attempt < 3 else "failed"
    assert [(o.status, o.reason) for o in outcomes] == [
        ("done", ""), ("done", ""), (retried, "gateway busy"), ("failed", "unknown customer"),
        (retried, "the rule ran past its timeout of 0.5 s"),
    ]
    if attempt < 3:
        assert outcomes[2].result == {"attempt": attempt}
    assert abs(slow[0].started[0] - slow[1].started[0]) < 0.2, "the rules of one call run side by side"
