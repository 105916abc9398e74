"""Runs one rule exactly once per stage entry: checks the entry, the condition, then the rule type's effect.

The key `<entry workflow id>/<rule name>` is recorded in the `effect` table with the outcome, so a retry,
a crashed worker or a reset in the Temporal UI returns the recorded outcome instead of acting twice. The
outcome the workflow history keeps holds no capability tokens (`in_history`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.steps.outcomes import no_value_said, record_waiting
from activities.steps.planning import rule_text
from activities.keys import effect_key, outcome_key
from activities.metrics import lateness
from activities.rule import Deps, RuleContext, RuleFailed
from models.domain import conditions, placeholders
from models.domain.problems import located, problems_of
from models.domain.rule_types import RuleType
from models.domain.data_tree import data_tree
from models.item_data import build_data, item_tree
from models.store import add_timeline, get_by, insert_once
from models.tables import Effect, Item, TimelineEntry, utcnow
from workflows.types import ItemEvent, ItemMove, RuleCall, RuleOutcome, WaitSpec

STORED_PREFIX = "<kept in the database: "

Ready = RuleOutcome | tuple[Item, dict] | BaseException
"""What preparing a rule found: its outcome already (recorded, cancelled, skipped), the item and the rule's data
tree, or the error that makes the rule fail."""


class RuleRunner:
    """Runs the rules of one rule type (one activity, `rule.<type>`)."""

    def __init__(self, deps: Deps, kind: RuleType) -> None:
        self.deps = deps
        self.kind = kind

    async def run(self, call: RuleCall, ready: Ready | None = None, deps: Deps | None = None) -> RuleOutcome:
        """Runs the rule; with `ready`, what `prepare` found for it (rules run together are prepared together), and
        with `deps`, through those (rules run together in one transaction). A database-only rule run as a local
        activity of its own is prepared, run and recorded in one transaction; when that does not succeed, the
        transaction is undone and the rule runs again step by step, each step in a transaction of its own (unless it
        failed for good)."""
        info = activity.info() if activity.in_activity() else None
        if ready is None and deps is None and info is not None and info.is_local and self.kind.local:
            try:
                return await self.deps.db(
                    lambda session: run_at_once(session, self.deps, {call.rule.activity: self}, [call])[0]
                )
            except Exception as error:  # noqa: BLE001 - nothing of the transaction stays: the rule runs step by step
                if isinstance(error, ApplicationError) and error.non_retryable:
                    raise  # the rule cannot take effect: step by step it would fail the same way
                activity.logger.debug("rule %s of %s runs step by step", call.rule.name, call.workflow_id,
                                      exc_info=True)
        async with heartbeating():
            return in_history(self.kind, call, await self._run(call, ready, deps or self.deps))

    def _settings(self, call: RuleCall) -> Any:
        try:
            return self.kind.settings.model_validate(call.rule.settings)
        except ValidationError as error:
            problems = "; ".join(located(("settings", *loc), msg) for loc, msg in problems_of(error))
            raise ApplicationError(
                f"the stored settings do not fit rule type {call.rule.type}: {problems}", type="RuleFailed",
                non_retryable=True,
            ) from None

    async def _run(self, call: RuleCall, ready: Ready | None, deps: Deps) -> RuleOutcome:
        key = effect_key(call.workflow_id, call.rule.name)
        if ready is None:
            ready = await deps.db(lambda session: self.prepare(
                session, call, key, session.get(Effect, key), session.get(Item, call.item_id), None
            ))
        if isinstance(ready, BaseException):
            raise ready
        if isinstance(ready, RuleOutcome):
            return ready
        settings = self._settings(call)
        item, data = ready
        context = RuleContext(deps=deps, call=call, settings=settings, data=data, item=item)
        context.record = lambda session, outcome: self._after(session, call, key, outcome, context.empty)
        try:
            result = await self.kind.run(context)
        except RuleFailed as error:
            raise ApplicationError(str(error), type="RuleFailed", non_retryable=True) from error
        except placeholders.UnresolvedPlaceholder as error:
            raise ApplicationError(f"placeholder cannot resolve: {error}", type="RuleFailed", non_retryable=True) from error
        outcome = context.outcome(result)
        if context.recorded is None:
            await deps.db(lambda session: self._after(session, call, key, outcome, context.empty))
        elif context.recorded != outcome:
            raise RuntimeError(f"rule type {call.rule.type} changed its outcome after finishing")
        return outcome

    def prepare(
        self, session: Session, call: RuleCall, key: str, recorded: Effect | None, item: Item | None,
        tree: dict | None,
    ) -> RuleOutcome | tuple[Item, dict]:
        """Before the rule's effect: the outcome an earlier attempt recorded; cancelled when the item has left the
        stage; skipped when its condition is false; otherwise the item and the rule's data tree (built on `tree`, the
        item's part of it, when one is given)."""
        if recorded is not None:
            self.deps.metrics.after_commit(session, self.deps.metrics.effect_found)
            return _outcome_from(recorded)
        if item is None or item.entry_no != call.entry_no:
            cancelled = outcome_key(call.workflow_id, call.rule.name, "cancelled")
            first = self.deps.metrics.enabled and get_by(session, TimelineEntry, key=cancelled) is None
            add_timeline(
                session, call.item_id, "rule_cancelled", f"Rule {rule_text(call.rule)} cancelled: the item left the stage",
                at=call.at, key=cancelled, rule_name=call.rule.name,
                entry_no=call.entry_no, reason="left", version=call.rule.version or None,
            )
            if first:
                self._count(session, call, "cancelled")
            return RuleOutcome(status="cancelled", reason="the item left the stage")
        results = _stored_results(session, call)
        if tree is None:
            data = build_data(session, item, constants=call.constants, variables=call.variables, results=results)
        else:
            data = data_tree(item.entity_type, copy.deepcopy(tree), constants=call.constants, variables=call.variables,
                             results=results)
        if call.rule.condition:
            passed, reason = conditions.evaluate(call.rule.condition, data)
            if not passed:
                outcome = RuleOutcome(status="skipped", reason=reason)
                session.add(Effect(key=key, item_id=item.id, rule_type=call.rule.type, status="skipped",
                                   result={"reason": reason}))
                add_timeline(
                    session, item.id, "rule_skipped", f"Rule {rule_text(call.rule)} skipped: {reason}",
                    at=call.at, key=outcome_key(call.workflow_id, call.rule.name, "skipped"),
                    rule_name=call.rule.name, entry_no=call.entry_no, reason=reason, version=call.rule.version or None,
                )
                self._count(session, call, "skipped")
                return outcome
        return item, data

    def _count(self, session: Session, call: RuleCall, outcome: str) -> None:
        """The rule's run ends with `outcome`, counted once the transaction that records it commits."""
        metrics = self.deps.metrics
        if metrics.enabled:
            late = lateness(call.rule.due)
            metrics.after_commit(session, lambda: metrics.rule_finished(call.rule.type, outcome, late))

    def _after(self, session: Session, call: RuleCall, key: str, outcome: RuleOutcome,
               empty: list[str] | None = None) -> None:
        effect = dict(
            key=key,
            item_id=call.item_id,
            rule_type=call.rule.type,
            status="done",
            result={
                "result": outcome.result,
                "variables": outcome.variables,
                "events": [vars(event) for event in outcome.events],
                "moves": [vars(move) for move in outcome.moves],
                "wait": vars(outcome.wait) if outcome.wait else None,
                "changed": list(outcome.changed),
            },
            created_at=utcnow(),
        )
        if insert_once(session, Effect.__table__, effect, "key", "key") is None:
            return  # recorded by an earlier attempt
        self._count(session, call, "done")
        if outcome.wait is not None:
            record_waiting(session, call, outcome.wait, empty)
            return
        add_timeline(
            session, call.item_id, "rule_done", f"Rule {rule_text(call.rule)} done{no_value_said(empty)}",
            at=call.at, key=outcome_key(call.workflow_id, call.rule.name, "done"), rule_name=call.rule.name,
            entry_no=call.entry_no, result=outcome.result or None, auxiliary=call.rule.auxiliary or None,
            version=call.rule.version or None, empty_placeholders=empty or None,
        )


def prepare_together(session: Session, runners: Mapping[str, RuleRunner], calls: list[RuleCall]) -> list[Ready]:
    """Prepares rules that start together in one read: their recorded outcomes in one query, each item (one for the
    rules of one entry, several for those of a due moment) and its part of the data tree once. Every rule sees its
    item as it was when they started; an error preparing one rule is that rule's alone."""
    keys = [effect_key(call.workflow_id, call.rule.name) for call in calls]
    recorded = {effect.key: effect for effect in session.exec(select(Effect).where(Effect.key.in_(keys)))}
    ids = sorted({call.item_id for call in calls})
    if len(ids) == 1:
        item = session.get(Item, ids[0])
        items = {ids[0]: item} if item is not None else {}
    else:
        items = {item.id: item for item in session.exec(select(Item).where(Item.id.in_(ids)))}
    trees: dict[tuple[int, int], Any] = {}
    prepared: list[Ready] = []
    for call, key in zip(calls, keys):
        item = items.get(call.item_id)
        tree = None
        if item is not None and key not in recorded and item.entry_no == call.entry_no:
            if (item.id, call.entry_no) not in trees:
                trees[item.id, call.entry_no] = item_tree(session, item)
            tree = trees[item.id, call.entry_no]
        try:
            prepared.append(runners[call.rule.activity].prepare(session, call, key, recorded.get(key), item, tree))
        except Exception as error:  # noqa: BLE001 - each rule's failure is its own
            prepared.append(error)
    return prepared


def run_at_once(
    session: Session, deps: Deps, runners: Mapping[str, RuleRunner], calls: list[RuleCall]
) -> list[RuleOutcome]:
    """Database-only rules prepared together, then each run and recorded in `session`'s transaction, driven to its end
    at once (such a rule waits for nothing but its database work, which runs at once here). A rule that does not
    succeed raises, and the caller undoes the transaction."""
    in_session = deps.in_session(session)
    return [
        _at_once(runners[call.rule.activity].run(call, ready, in_session))
        for call, ready in zip(calls, prepare_together(session, runners, calls))
    ]


def _at_once(run: Coroutine[Any, Any, RuleOutcome]) -> RuleOutcome:
    """The outcome of a rule's run that never suspends; one that would wait for something is refused."""
    try:
        run.send(None)
    except StopIteration as finished:
        return finished.value
    run.close()
    raise RuntimeError("a database-only rule waited for something besides its database work")


@contextlib.asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """While the block runs, the activity it runs in heartbeats (a regular activity with a heartbeat timeout)."""
    info = activity.info() if activity.in_activity() else None
    beating = None
    if info is not None and not info.is_local and info.heartbeat_timeout:
        beating = asyncio.create_task(_heartbeat(info.heartbeat_timeout.total_seconds() / 3))
    try:
        yield
    finally:
        if beating is not None:
            beating.cancel()


async def _heartbeat(every: float) -> None:
    """Tells the server the rule is still running, so a worker that dies is noticed within seconds, not at the
    rule's timeout. The first beat comes after `every` seconds (a third of the heartbeat timeout): a rule that ends
    sooner costs the server no heartbeat."""
    while True:
        await asyncio.sleep(max(every, 0.2))
        activity.heartbeat()


def _reference(rule: str, name: str) -> str:
    return f"{STORED_PREFIX}Rule.{rule}.{name}>"


def in_history(kind: RuleType, call: RuleCall, outcome: RuleOutcome) -> RuleOutcome:
    """The outcome as the workflow history keeps it: results that carry a capability token (a link that opens
    or signs a document) are replaced by a reference; the effect row in the database holds their values."""
    private = [name for name in kind.private_returns if outcome.result.get(name)]
    if not private:
        return outcome
    result = {**outcome.result, **{name: _reference(call.rule.name, name) for name in private}}
    return dataclasses.replace(outcome, result=result)


def _stored_results(session: Session, call: RuleCall) -> dict[str, dict[str, Any]]:
    """The results of the earlier rules this one reads, with referenced values read back from their effects."""
    results = {}
    for name, values in call.results.items():
        if any(isinstance(value, str) and value.startswith(STORED_PREFIX) for value in values.values()):
            effect = session.get(Effect, effect_key(call.workflow_id, name))
            stored = ((effect.result if effect else None) or {}).get("result") or {}
            values = {
                field: stored.get(field, value) if value == _reference(name, field) else value
                for field, value in values.items()
            }
        results[name] = values
    return results


def _outcome_from(effect: Effect) -> RuleOutcome:
    if effect.status != "done":
        return RuleOutcome(status=effect.status, reason=effect.result.get("reason", ""))
    stored = effect.result
    return RuleOutcome(
        status="done",
        result=stored.get("result", {}),
        variables=stored.get("variables", {}),
        events=[ItemEvent(**event) for event in stored.get("events", [])],
        moves=[ItemMove(**move) for move in stored.get("moves", [])],
        wait=WaitSpec(**stored["wait"]) if stored.get("wait") else None,
        changed=list(stored.get("changed") or []),
    )
