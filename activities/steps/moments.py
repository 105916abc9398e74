"""Due moments: rules of many stage entries that fall due at one moment run together (engine generation 4 for
database-only rules, 5 for those that reach the outside).

An entry whose rule waits for a due time offers it to that moment (`hand_over`). The first entry to wait for a moment
keeps its own timer; from the second on, the moment takes each rule: it is kept here with the call the entry would
make, and the moment's workflow (`DUE_WORKFLOW`, started by the first rule it takes) runs them when the moment comes,
in batches of one transaction each (`run_due_rules`), and those that reach the outside side by side, a batch to a
call that heartbeats (`run_due_outside_rules`), then sends each entry its rule's outcome (`tell_due_outcomes`).
Each rule still runs through its own runner, keyed by its entry's workflow id and its name, so a rule that both its
moment and its entry ran would take effect once. An entry takes its rule back (`take_back`) when something changes it
before the moment (a field it follows, a new automation version, the item leaving the stage) or when no outcome came
in time; the moment's claim and the entry's taking back are one row's change of state, so exactly one of them runs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, update
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.steps.runner import Ready, RuleRunner, heartbeating, prepare_together, run_at_once
from activities.steps.together import failed_or_again, run_side_by_side
from activities.rule import Deps
from models.store import insert_once
from models.tables import DueMomentRecord, HandedRule, utcnow
from workflows.converter import DATA_CONVERTER
from workflows.types import (
    DUE_OUTCOME,
    DUE_WORKFLOW,
    FINISH_DUE_MOMENT,
    HAND_OVER,
    RUN_DUE_OUTSIDE_RULES,
    RUN_DUE_RULES,
    TAKE_BACK,
    TELL_DUE_OUTCOMES,
    DueBatch,
    DueMoment,
    DueOutcome,
    HandOver,
    RuleCall,
    RuleOutcome,
    TakeBack,
    TakenBack,
    due_moment_key,
    due_workflow_id,
    outside_moment,
)

TELL_AT_ONCE = 32
"""Outcomes sent to entries side by side."""
TELL_BATCH = 500
KEEP_RULES = timedelta(days=1)
"""How long the rules a moment ran are kept with their outcomes (moment keys sort as their times do)."""
KEEP_MOMENTS = timedelta(hours=1)
"""How long a past moment's count of arrivals is kept (offers come at least `shared_due_ahead_seconds` before it)."""


def encode(value: Any) -> bytes:
    return DATA_CONVERTER.payload_converter.to_payloads([value])[0].SerializeToString()


def _decode(data: bytes, kind: type) -> Any:
    payload = Payload()
    payload.ParseFromString(data)
    return DATA_CONVERTER.payload_converter.from_payloads([payload], [kind])[0]


class DueMomentSteps:
    def __init__(self, deps: Deps, runners: Mapping[str, RuleRunner]) -> None:
        self.deps = deps
        self.runners = runners

    @activity.defn(name=HAND_OVER)
    async def hand_over(self, offer: HandOver) -> bool:
        """Whether the rule's due moment takes it. Not when the moment is too near (its workflow may be running
        already) or no other entry waits for it yet; the moment's workflow starts with the first rule it takes. An
        offer its entry stops waiting for (the item left) still finishes, so that a rule taken has its moment."""
        if self.deps.client is None:
            return False
        return await asyncio.shield(asyncio.ensure_future(self._offer(offer)))

    async def _offer(self, offer: HandOver) -> bool:
        call = offer.call
        key = due_moment_key(offer.due)
        ahead = timedelta(seconds=self.deps.settings.shared_due_ahead_seconds)

        def offered(session: Session) -> str | None:
            taken = session.exec(select(HandedRule.id).where(
                HandedRule.workflow_id == call.workflow_id, HandedRule.rule == call.rule.name,
                HandedRule.seq == offer.seq,
            )).first()
            if taken is not None:
                return "start"  # an earlier attempt was taken: its moment's workflow may not have started
            if not ahead or offer.due < utcnow() + ahead:
                return None
            first = {"key": key, "due": offer.due, "arrivals": 1, "outside": True}
            if insert_once(session, DueMomentRecord.__table__, first, "key", "key") is not None:
                # a moment only one rule waits for runs no workflow: the first arrivals clear the counts of the past
                session.execute(delete(DueMomentRecord).where(DueMomentRecord.due < utcnow() - KEEP_MOMENTS))
                return None
            counted = DueMomentRecord.key == key
            if not call.rule.local:
                counted = counted & (DueMomentRecord.outside == True)  # noqa: E712
            arrivals = session.execute(
                update(DueMomentRecord).where(counted)
                .values(arrivals=DueMomentRecord.arrivals + 1).returning(DueMomentRecord.arrivals)
            ).scalar()
            if arrivals is None:
                return None  # a moment counted by a worker from before generation 5 runs no rule of this kind
            kept = key if call.rule.local else outside_moment(key)
            session.add(HandedRule(moment=kept, workflow_id=call.workflow_id, rule=call.rule.name, seq=offer.seq,
                                   item_id=call.item_id, call=encode(call)))
            return "start" if arrivals == 2 else "taken"

        answer = await self.deps.db(offered)
        if answer == "start":
            await self.deps.client.start_workflow(
                DUE_WORKFLOW,
                DueMoment(key=key, due=offer.due, heartbeat_seconds=self.deps.settings.rule_heartbeat_seconds),
                id=due_workflow_id(key),
                task_queue=self.deps.settings.temporal_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary=f"rules due at {key}",
            )
        return answer is not None

    @activity.defn(name=TAKE_BACK)
    async def take_back(self, asked: TakeBack) -> TakenBack:
        def work(session: Session) -> TakenBack:
            mine = (HandedRule.workflow_id == asked.workflow_id, HandedRule.rule == asked.rule,
                    HandedRule.seq == asked.seq)
            takeable = HandedRule.state == "waiting"
            if asked.force:
                stale = (HandedRule.state == "running") & (
                    col(HandedRule.claimed_at).is_(None)
                    | (col(HandedRule.claimed_at) < utcnow() - timedelta(seconds=asked.stale_seconds)))
                takeable = takeable | stale
            withdrawn = session.execute(update(HandedRule).where(*mine, takeable).values(state="withdrawn"))
            if withdrawn.rowcount:
                return TakenBack(state="withdrawn")
            row = session.exec(select(HandedRule).where(*mine)).first()
            if row is None or row.state == "withdrawn":
                return TakenBack(state="withdrawn")  # never taken (its offer was cut off), or taken back
            if row.state == "done" and row.outcome is not None:
                return TakenBack(state="done", outcome=_decode(row.outcome, RuleOutcome))
            return TakenBack(state="running")

        return await self.deps.db(work)

    @activity.defn(name=RUN_DUE_RULES)
    async def run_due_rules(self, batch: DueBatch) -> int:
        """Runs the next rules handed to the moment (those an earlier attempt of this batch began first) in one
        transaction that also records each outcome; when that does not succeed, claims them and runs each on its own,
        as `rules.together` does. How many it ran (0: none is left)."""
        try:
            return await self.deps.db(lambda session: self._at_once(session, batch))
        except Exception:  # noqa: BLE001 - nothing of the transaction stays: each rule runs on its own below
            activity.logger.debug("rules due at %s run one by one", batch.key, exc_info=True)
        claimed = await self.deps.db(lambda session: self._claim(session, batch))
        for row_id, call in claimed:
            outcome = await self._alone(call)
            await self.deps.db(lambda session: self._record(session, row_id, outcome))
        return len(claimed)

    @activity.defn(name=RUN_DUE_OUTSIDE_RULES)
    async def run_due_outside_rules(self, batch: DueBatch) -> int:
        """Runs the next rules handed to the moment that reach the outside (those an earlier attempt of this batch
        began first) side by side, each within its own timeout, as `rules.outside_together` does, and records each
        outcome: a rule that fails for a reason that may pass is for its entry to retry (`AGAIN`). How many it ran."""
        def claim(session: Session) -> tuple[list[tuple[int, RuleCall]], list[Ready]]:
            """Claimed and prepared in one transaction, so that a rule's claim is as old as its call."""
            claimed = self._claim(session, batch, outside_moment(batch.key))
            return claimed, prepare_together(session, self.runners, [call for _, call in claimed]) if claimed else []

        async with heartbeating():
            claimed, prepared = await self.deps.db(claim)
            if not claimed:
                return 0
            calls = [call for _, call in claimed]
            outcomes = await run_side_by_side(self.runners, calls, prepared, last=self._last, attempt=1)

            def record(session: Session) -> None:
                for (row_id, _), outcome in zip(claimed, outcomes):
                    self._record(session, row_id, outcome)

            await self.deps.db(record)
        return len(claimed)

    @property
    def _last(self) -> bool:
        """Whether a rule's first attempt is its last (`rule_max_attempts` 1): a failure then is for good."""
        return self.deps.settings.rule_max_attempts == 1

    def _claim(self, session: Session, batch: DueBatch, moment: str | None = None) -> list[tuple[int, RuleCall]]:
        """The next rules of the moment (its database-only ones, or those kept under `moment`), marked as this
        batch's in one statement that takes only those still waiting (or begun by an earlier attempt of this
        batch): a rule its entry took back meanwhile is not run."""
        claimable = (HandedRule.moment == (moment or batch.key),
                     or_(HandedRule.state == "waiting",
                         (HandedRule.state == "running") & (HandedRule.run_by == batch.token)))
        while True:
            ids = session.exec(
                select(HandedRule.id).where(*claimable).order_by(col(HandedRule.id)).limit(batch.limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not ids:
                return []
            session.execute(update(HandedRule).where(col(HandedRule.id).in_(ids), *claimable)
                            .values(state="running", run_by=batch.token, claimed_at=utcnow()))
            rows = session.exec(select(HandedRule.id, HandedRule.call).where(
                col(HandedRule.id).in_(ids), HandedRule.state == "running", HandedRule.run_by == batch.token,
            ).order_by(col(HandedRule.id))).all()
            if rows:  # else every one of them was taken back meanwhile: the next ones
                return [(row_id, dataclasses.replace(_decode(call, RuleCall), at=batch.at)) for row_id, call in rows]

    def _at_once(self, session: Session, batch: DueBatch) -> int:
        claimed = self._claim(session, batch)
        if not claimed:
            return 0
        calls = [call for _, call in claimed]
        outcomes = run_at_once(session, self.deps, self.runners, calls)
        for (row_id, _), outcome in zip(claimed, outcomes):
            self._record(session, row_id, outcome)
        return len(claimed)

    async def _alone(self, call: RuleCall) -> RuleOutcome:
        """One rule in transactions of its own: a failure for good is its outcome; one that would be retried is
        for its entry to retry (`AGAIN`), with the attempts left."""
        try:
            prepared = await self.deps.db(lambda session: prepare_together(session, self.runners, [call]))
            return await self.runners[call.rule.activity].run(call, prepared[0])
        except Exception as error:  # noqa: BLE001 - each rule's failure is its own
            return failed_or_again(call, error, last=self._last, attempt=1)

    @staticmethod
    def _record(session: Session, row_id: int, outcome: RuleOutcome) -> None:
        """The rule's outcome, unless its entry took it back meanwhile (long past its due time): then the entry
        runs it, and finds what this run did by its key."""
        session.execute(update(HandedRule).where(HandedRule.id == row_id, HandedRule.state == "running")
                        .values(state="done", outcome=encode(outcome)))

    @activity.defn(name=TELL_DUE_OUTCOMES)
    async def tell_due_outcomes(self, key: str) -> int:
        """Sends the next outcomes the moment has not told to their entries (an entry that ended no longer needs
        one); how many it told (0: none is left)."""
        rows = await self.deps.db(lambda session: session.exec(
            select(HandedRule.id, HandedRule.workflow_id, HandedRule.rule, HandedRule.seq, HandedRule.outcome).where(
                col(HandedRule.moment).in_((key, outside_moment(key))), HandedRule.state == "done",
                HandedRule.told == False,  # noqa: E712
            ).order_by(col(HandedRule.id)).limit(TELL_BATCH)
        ).all())
        room = asyncio.Semaphore(TELL_AT_ONCE)

        async def tell(workflow_id: str, rule: str, seq: int, outcome: bytes) -> None:
            told = DueOutcome(rule=rule, seq=seq, outcome=_decode(outcome, RuleOutcome))
            async with room:
                try:
                    await self.deps.client.get_workflow_handle(workflow_id).signal(DUE_OUTCOME, told)
                except RPCError as error:
                    if error.status != RPCStatusCode.NOT_FOUND:
                        raise

        await asyncio.gather(*(tell(workflow_id, rule, seq, outcome) for _, workflow_id, rule, seq, outcome in rows))
        ids = [row[0] for row in rows]
        if ids:
            await self.deps.db(lambda session: session.execute(
                update(HandedRule).where(col(HandedRule.id).in_(ids)).values(told=True)
            ))
        return len(ids)

    @activity.defn(name=FINISH_DUE_MOMENT)
    async def finish_due_moment(self, moment: DueMoment) -> None:
        """Every rule handed to the moment ran or went back to its entry. The rows of moments a day before it go
        (an entry that asks for its rule back later still finds its outcome until then)."""
        past = due_moment_key(moment.due - KEEP_RULES)

        def work(session: Session) -> None:
            session.execute(delete(HandedRule).where(
                HandedRule.moment < past,
                or_(HandedRule.state == "withdrawn", (HandedRule.state == "done") & (HandedRule.told == True)),  # noqa: E712
            ))

        await self.deps.db(work)

