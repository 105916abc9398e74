"""One stage entry of one item: snapshots the stage's rules and runs them with durable timers.

Rules that start on entry each begin a chain; a rule that starts after the previous one joins the
chain of the rule before it. A rule that uses another rule's results waits for that rule. Leaving
the stage cancels this workflow: every rule still pending is recorded as cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import Any, Optional

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from models.domain.versions import FOLLOWED
    from workflows.types import (
        AGAIN,
        APPLY_VERSION,
        BEGIN_ENTRY,
        CALLBACK,
        DUE_OUTCOME,
        ENTRY_WORKFLOW,
        FINISH_ENTRY,
        HAND_OVER,
        ITEM_CHANGED,
        ITEM_EVENT,
        RECORD_RULE_FAILED,
        RECORD_VERSION_APPLIED,
        RECORD_WAIT_END,
        RESCHEDULE_RULE,
        RULE_MOVE,
        RULES_OUTSIDE_TOGETHER,
        RULES_TOGETHER,
        SA_VERSION,
        SCHEDULE_RULE,
        TAKE_BACK,
        CallbackSignal,
        DueOutcome,
        EntryFinish,
        EntryInput,
        EntryPlan,
        HandOver,
        ItemChanged,
        ItemEvent,
        PendingRule,
        RescheduleCall,
        Rescheduled,
        RuleCall,
        RuleFailure,
        RuleOutcome,
        RulePlan,
        RulesTogether,
        ScheduleCall,
        TakeBack,
        TakenBack,
        VersionApplied,
        VersionChange,
        WaitEnded,
        anchor_field,
        known_engine,
        starts_now,
    )

STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
STEP_TIMEOUT = timedelta(seconds=30)
RULE_RETRY_CEILING = timedelta(minutes=5)
"""The longest wait between two attempts of a rule."""
FINISHED = ("done", "skipped", "cancelled", "failed")
NOT_STARTED = ("waiting_delay", "waiting_previous", "waiting_rule", "waiting_field")
"""The states of a rule that has not started (`waiting_field` but for a rule that waits after its effect)."""

# From this version on, the engine's own bookkeeping runs as local activities (markers in the history, no
# round trip through the server); histories recorded before it keep their activities on replay.
LOCAL_STEPS = "local-engine-activities"
# From this version on, a delay counted from a date field follows the field: a change recomputes the due time,
# and an empty field makes the rule wait for a value instead of running at once.
FOLLOW_FIELDS = "date-delays-follow-fields"
# From this version on, database-only rules due at the entry's start that need nothing from each other run in one
# local activity call (`rules.together`), each still keyed and recorded on its own.
RULES_TOGETHER_PATCH = "rules-that-start-together"
# A reset that runs an entry's first workflow task anew loads the automation saved now instead of the entry's plan.
PLAN_AGAIN = "plan-again-after-reset"
SHARED_DUE_MOMENTS = 4
"""The engine generation from which an entry hands a waiting database-only rule to its due moment."""
SHARED_OUTSIDE = 5
"""The engine generation from which an entry hands a waiting rule that reaches the outside to its due moment too."""
# A handed rule whose moment's attempt failed and may be tried again is tried again when the item leaves the stage
# (as a rule the entry ran itself would be), not recorded as failed.
HANDED_AGAIN = "handed-rule-tried-again-on-leaving"
HANDED_GRACE = timedelta(minutes=5)
"""How long past its due time an entry waits for the outcome of a rule it handed over before it takes it back."""
RAN, DUE, BACK = "ran", "due", "back"
"""How waiting for a handed rule ended: its due moment ran it; no outcome came in time, the entry runs it; something
changed it before its moment, and the entry has it back."""


async def run_step(
    name: str, arg: Any, *, summary: str, result_type: Any = None, current: bool = False
) -> Any:
    """One of the engine's database steps: a local activity, or a regular one in histories from before (`current`:
    the run began under an engine generation with local steps, so it need not ask)."""
    if current or workflow.patched(LOCAL_STEPS):
        return await workflow.execute_local_activity(
            name, arg, result_type=result_type, start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY,
            summary=summary,
        )
    return await workflow.execute_activity(
        name, arg, result_type=result_type, start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY,
        summary=summary,
    )


@workflow.defn(name=ENTRY_WORKFLOW)
class StageEntryWorkflow:
    @workflow.init
    def __init__(self, entry: EntryInput) -> None:
        known_engine(entry.engine)
        self.entry = entry
        self.plan: EntryPlan | None = None
        self.status: dict[str, str] = {}
        self.due: dict[str, datetime | None] = {}
        self.results: dict[str, dict] = {}
        self.variables: dict = {}
        self.failures: list[str] = []
        self.skipped: dict[str, str] = {}
        self.running: dict[str, asyncio.Task] = {}
        self.callbacks: dict[str, dict] = {}
        self.changes: list[str] = []
        self.follow = False
        self.bases: dict[str, datetime] = {}
        self.after_waits: set[str] = set()
        self.reschedules = 0
        self.together: dict[str, asyncio.Future] = {}
        self.together_calls: dict[str, RuleCall] = {}
        self.plans: dict[str, RulePlan] = {}
        """Each rule as the entry runs it now: as planned, or as a newer automation version has it."""
        self.version = 0
        """The automation version the entry runs."""
        self.removed: dict[str, int] = {}
        """Rules a newer automation version removed before they started: name → that version."""
        self.revision = 0
        """Counts the versions the entry took on, so that waiting rules wake to a new due time."""
        self.applying = asyncio.Lock()
        self.handovers = 0
        self.handed: dict[str, int] = {}
        """Rules handed to their due moment: name → the offer's number."""
        self.arrived: dict[str, RuleOutcome] = {}
        """Outcomes of handed rules their due moment ran, until the entry takes them."""
        self.variables_set = 0
        """Counts the rules whose outcome set variables: a rule handed over with the variables before is taken back."""
        self.current = entry.plan is not None
        """Started with its plan: the entry began under engine generation 1 and asks for no earlier patch."""

    @workflow.run
    async def run(self, entry: EntryInput) -> dict[str, str]:
        try:
            self.follow = self.current or workflow.patched(FOLLOW_FIELDS)
            if entry.plan is not None and not self._plan_again():
                self.plan = entry.plan
            else:
                self.plan = await self._step(BEGIN_ENTRY, entry, result_type=EntryPlan, summary="load rules")
            self.variables = dict(self.plan.variables)
            self.version = self.plan.config_version
            self.plans = {rule.name: rule for rule in self.plan.rules}
            for rule in self.plan.rules:
                self.status[rule.name] = "waiting_delay" if rule.start == "on_entry" else "waiting_previous"
                self.due[rule.name] = rule.due
                if rule.start == "on_entry":
                    self.bases[rule.name] = entry.entered_at
                    if self.follow and rule.due is None and anchor_field(rule.delay):
                        self.status[rule.name] = "waiting_field"
            if self.current or workflow.patched(RULES_TOGETHER_PATCH):
                self._start_together()
            await asyncio.gather(*(self._chain(chain) for chain in self._chains()))
        except BaseException as error:
            # Leaving the stage cancels this workflow: a timer raises CancelledError, an engine activity
            # in flight an ActivityError caused by the cancellation.
            if not is_cancelled_exception(error):
                raise
            await self._finish_cancelled()
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self.skipped:
            await self._finish([])
        if self.failures:
            raise ApplicationError(
                "rules failed: " + ", ".join(self.failures), type="RuleFailed", non_retryable=True
            )
        return dict(self.status)

    async def _step(self, name: str, arg: Any, *, summary: str, result_type: Any = None) -> Any:
        """One of the engine's steps for this entry (`run_step`)."""
        return await run_step(name, arg, summary=summary, result_type=result_type, current=self.current)

    def _plan_again(self) -> bool:
        """Reset to its first workflow task (a new run of this entry that runs it anew), an entry started with its
        plan loads the automation saved now, as one without a plan does; replaying what a reset kept, it keeps the
        plan it ran with (the marker of this choice says which)."""
        info = workflow.info()
        return info.run_id != info.first_execution_run_id and workflow.patched(PLAN_AGAIN)

    @workflow.signal(name=CALLBACK)
    def callback(self, answer: CallbackSignal) -> None:
        """An outside system answered a rule's callback URL."""
        self.callbacks.setdefault(answer.rule, answer.values)

    @workflow.signal(name=DUE_OUTCOME)
    def due_outcome(self, told: DueOutcome) -> None:
        """The due moment a rule was handed to ran it."""
        if self.handed.get(told.rule) == told.seq:
            self.arrived.setdefault(told.rule, told.outcome)

    @workflow.signal(name=ITEM_CHANGED)
    def item_changed(self, change: ItemChanged) -> None:
        self.changes.extend(change.fields)

    @workflow.signal(name=APPLY_VERSION)
    async def apply_version(self, change: VersionChange) -> None:
        """A newer automation version for this entry's rules that have not started: a rule it removed is cancelled
        (and never runs), a changed delay, condition, settings or type takes effect (a moved due time is
        rescheduled), a rule it adds does not run here. A rule running now finishes as it began; done ones stay
        done."""
        await workflow.wait_condition(lambda: self.plan is not None)
        async with self.applying:
            if change.version > self.version:
                await self._apply(change)

    async def _apply(self, change: VersionChange) -> None:
        new = {rule.name: rule for rule in change.rules}
        for name in list(self.handed):
            if name in self.arrived or await self._take_back(name) != "withdrawn":
                self.status[name] = "running"  # its due moment ran it or runs it, as it was
        removed: list[str] = []
        changed: dict[str, list[str]] = {}
        moved: list[str] = []
        for name, rule in list(self.plans.items()):
            state = self.status.get(name)
            if state not in NOT_STARTED or name in self.after_waits:
                continue
            replacement = new.get(name)
            if replacement is None:
                self.status[name] = "cancelled"
                self.removed[name] = change.version
                removed.append(name)
                continue
            fields = [part for part in FOLLOWED if getattr(rule, part) != getattr(replacement, part)]
            self.plans[name] = dataclasses.replace(
                rule, type=replacement.type, activity=replacement.activity, delay=replacement.delay,
                condition=replacement.condition, settings=replacement.settings, auxiliary=replacement.auxiliary,
                local=replacement.local, timeout_seconds=replacement.timeout_seconds, version=change.version,
                depends_on=[other for other in replacement.depends_on if other in self.plans and other != name],
            )
            if fields:
                changed[name] = fields
            if "delay" in fields and state in ("waiting_delay", "waiting_field") and name in self.bases:
                moved.append(name)
        info = workflow.info()
        await self._step(
            RECORD_VERSION_APPLIED,
            VersionApplied(
                item_id=self.entry.item_id, entity=self.entry.entity, workflow_id=info.workflow_id,
                entry_no=self.entry.entry_no, version=change.version, at=workflow.now(), removed=removed,
                changed=changed,
            ),
            summary=f"version {change.version}",
        )
        for name in moved:
            rule = self.plans[name]
            self.reschedules += 1
            rescheduled = await self._step(
                RESCHEDULE_RULE,
                RescheduleCall(
                    item_id=self.entry.item_id, entity=self.entry.entity, workflow_id=info.workflow_id,
                    entry_no=self.entry.entry_no, rule=rule, base=self.bases[name], previous=self.due.get(name),
                    at=workflow.now(), seq=self.reschedules, version=change.version,
                ),
                result_type=Rescheduled,
                summary=f"{name}: version {change.version} changed its delay",
            )
            self.due[name] = rescheduled.due
        self.version = change.version
        if change.search_attributes:
            workflow.upsert_search_attributes([SearchAttributeKey.for_keyword(SA_VERSION).value_set(str(change.version))])
        self.revision += 1

    def _current(self, rule: RulePlan) -> RulePlan:
        return self.plans.get(rule.name, rule)

    @workflow.query
    def pending(self) -> list[PendingRule]:
        if self.plan is None:
            return []
        waiting = []
        for planned in self.plan.rules:
            rule = self._current(planned)
            state = self.status.get(rule.name, "")
            if state in FINISHED:
                continue
            waiting.append(
                PendingRule(
                    name=rule.name,
                    type=rule.type,
                    start=rule.start,
                    state=state,
                    due=self.due.get(rule.name),
                    delay=rule.delay,
                    condition=rule.condition,
                    waiting_for=self._waiting_for(rule, state),
                    version=rule.version or self.version or None,
                )
            )
        return waiting

    def _waiting_for(self, rule: RulePlan, state: str) -> str | None:
        if state == "waiting_field" and rule.name not in self.after_waits:
            return anchor_field(rule.delay)
        if state == "waiting_previous":
            return rule.wait_for
        if state == "waiting_rule":
            return ", ".join(name for name in rule.depends_on if self.status.get(name) not in FINISHED)
        return None

    def _start_together(self) -> None:
        """The first rules of the chains that are due now and read no other rule's results start together: those that
        only touch the database in one `rules.together` call, and (engine generation 2) those that reach the outside
        in one `rules.outside_together` call; each chain then waits for its rule's outcome from its call."""
        now = workflow.now()
        due = [chain[0] for chain in self._chains() if starts_now(chain[0], now, self.follow)]
        self._together([rule for rule in due if rule.local], local=True)
        if self.entry.engine >= 2:
            self._together([rule for rule in due if not rule.local], local=False)

    def _together(self, rules: list[RulePlan], *, local: bool) -> None:
        if len(rules) < 2:
            return
        loop = asyncio.get_running_loop()
        for rule in rules:
            self.together[rule.name] = loop.create_future()
            self.together_calls[rule.name] = self._call(rule)
        asyncio.ensure_future(self._run_together(rules, local=local))

    async def _run_together(self, rules: list[RulePlan], *, local: bool) -> None:
        calls = [self.together_calls[rule.name] for rule in rules]
        batch = RulesTogether(calls=calls, max_attempts=self.plan.retry_max_attempts)
        summary = ", ".join(f"{rule.name} ({rule.type})" for rule in rules)
        try:
            if local:
                outcomes = await workflow.execute_local_activity(
                    RULES_TOGETHER, batch, result_type=list[RuleOutcome], retry_policy=self._retry(),
                    start_to_close_timeout=timedelta(seconds=sum(rule.timeout_seconds for rule in rules)),
                    summary=summary,
                )
            else:
                heartbeat = self.plan.heartbeat_seconds
                outcomes = await workflow.execute_activity(
                    RULES_OUTSIDE_TOGETHER, batch, result_type=list[RuleOutcome],
                    retry_policy=RetryPolicy(maximum_attempts=1),
                    start_to_close_timeout=timedelta(seconds=max(rule.timeout_seconds for rule in rules))
                    + STEP_TIMEOUT,
                    heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat else None, summary=summary,
                )
        except BaseException as error:
            # The call of rules that reach the outside is their first attempt: failed as a whole, each is retried
            # on its own (the rules it had done are found done by their keys).
            again = not local and not is_cancelled_exception(error) and self.plan.retry_max_attempts != 1
            for rule in rules:
                if self.together[rule.name].done():
                    continue
                if again:
                    self.together[rule.name].set_result(RuleOutcome(status=AGAIN, reason=str(error),
                                                                    result={"attempt": 1}))
                else:
                    self.together[rule.name].set_exception(error)
            return
        for rule, outcome in zip(rules, outcomes):
            self.together[rule.name].set_result(outcome)

    def _chains(self) -> list[list[RulePlan]]:
        chains: list[list[RulePlan]] = []
        for rule in self.plan.rules:
            if rule.start == "after_previous" and chains:
                chains[-1].append(rule)
            else:
                chains.append([rule])
        return chains

    async def _chain(self, rules: list[RulePlan]) -> None:
        for position, rule in enumerate(rules):
            if position and self.status[rules[position - 1].name] == "failed":
                self._skip_rest(rules[position:], f"previous rule {rules[position - 1].name} failed")
                return
            if rule.name in self.removed:
                continue
            if position:
                await self._schedule(self._current(rule))
            await self._wait_due(rule)
            await self._wait_dependencies(rule)
            await self._execute(rule)

    async def _schedule(self, rule: RulePlan) -> None:
        self.status[rule.name] = "waiting_delay"
        self.bases[rule.name] = workflow.now()
        if rule.delay is None:
            self.due[rule.name] = workflow.now()
            return
        self.due[rule.name] = await self._step(
            SCHEDULE_RULE,
            ScheduleCall(
                item_id=self.entry.item_id,
                entity=self.entry.entity,
                workflow_id=workflow.info().workflow_id,
                entry_no=self.entry.entry_no,
                rule=rule,
                base=workflow.now(),
            ),
            result_type=Optional[datetime],
            summary=f"schedule {rule.name}",
        )

    async def _wait_due(self, rule: RulePlan) -> None:
        """Waits until the rule is due. A newer automation version may move the due time meanwhile, or remove the
        rule (then it returns at once)."""
        while rule.name not in self.removed:
            rule = self._current(rule)
            field = anchor_field(rule.delay)
            if self.follow and field:
                if await self._follow(rule, field):
                    return
                continue
            due = self.due.get(rule.name)
            if due is None:
                return
            remaining = (due - workflow.now()).total_seconds()
            if remaining <= 0:
                return
            revision = self.revision
            if await self._hand_over(rule, due):
                if await self._await_handed(rule, due, lambda: self.revision != revision) != BACK:
                    return
                continue
            try:
                await workflow.wait_condition(
                    lambda: self.revision != revision, timeout=remaining,
                    timeout_summary=f"{rule.name} due {due.isoformat()}",
                )
            except asyncio.TimeoutError:
                return

    async def _follow(self, rule: RulePlan, field: str) -> bool:
        """Waits until the rule is due while following its date field: a change of the field recomputes the due
        time (earlier or later; one already past runs at once), and while the field is empty the rule waits for
        a value. True once due; False when a newer automation version came first."""
        seen = len(self.changes)
        revision = self.revision
        while True:
            due = self.due.get(rule.name)
            changed = lambda: field in self.changes[seen:] or self.revision != revision  # noqa: E731
            if due is None:
                self.status[rule.name] = "waiting_field"
                await workflow.wait_condition(changed)
            else:
                remaining = (due - workflow.now()).total_seconds()
                if remaining <= 0:
                    return True
                self.status[rule.name] = "waiting_delay"
                if await self._hand_over(rule, due):
                    if await self._await_handed(rule, due, changed) != BACK:
                        return True
                    if not changed():
                        continue  # only the variables changed: handed over again with them
                else:
                    try:
                        await workflow.wait_condition(
                            changed, timeout=remaining, timeout_summary=f"{rule.name} due {due.isoformat()}"
                        )
                    except asyncio.TimeoutError:
                        return True
            if self.revision != revision:
                return False
            seen = len(self.changes)
            self.reschedules += 1
            rescheduled = await self._step(
                RESCHEDULE_RULE,
                RescheduleCall(
                    item_id=self.entry.item_id,
                    entity=self.entry.entity,
                    workflow_id=workflow.info().workflow_id,
                    entry_no=self.entry.entry_no,
                    rule=rule,
                    base=self.bases.get(rule.name, self.entry.entered_at),
                    previous=due,
                    at=workflow.now(),
                    seq=self.reschedules,
                ),
                result_type=Rescheduled,
                summary=f"{rule.name}: {field} changed",
            )
            self.due[rule.name] = rescheduled.due

    async def _hand_over(self, rule: RulePlan, due: datetime) -> bool:
        """Offers a rule that needs no other rule's results to its due moment (engine generation 4: a database-only
        one; 5: any); whether the moment took it."""
        ahead = self.plan.shared_due_seconds
        shareable = rule.local or self.entry.engine >= SHARED_OUTSIDE
        if (self.entry.engine < SHARED_DUE_MOMENTS or not ahead or not shareable or rule.depends_on
                or rule.name in self.removed or self.applying.locked()
                or (due - workflow.now()).total_seconds() < ahead):
            return False
        self.handovers += 1
        seq = self.handovers
        call = dataclasses.replace(self._call(rule), rule=dataclasses.replace(rule, due=due), at=due)
        taken = await self._step(
            HAND_OVER, HandOver(call=call, due=due, seq=seq), result_type=bool,
            summary=f"{rule.name}: offered to the moment {due.isoformat()}",
        )
        if taken:
            self.handed[rule.name] = seq
            self.together_calls[rule.name] = call
        return taken

    async def _await_handed(self, rule: RulePlan, due: datetime, changed: Any) -> str:
        """Waits for the outcome of a rule handed to its due moment: `RAN` once it is here; `BACK` when `changed()`
        or the variables changed first and the entry took the rule back; `DUE` when no outcome came in time and the
        entry took it back to run it itself. A rule its moment runs already is waited for whatever changes."""
        name = rule.name
        variables = self.variables_set
        woken = lambda: changed() or self.variables_set != variables  # noqa: E731
        while True:
            timeout = max((due - workflow.now()).total_seconds(), 0) + HANDED_GRACE.total_seconds()
            try:
                await workflow.wait_condition(
                    lambda: name in self.arrived or name not in self.handed or woken(), timeout=timeout,
                    timeout_summary=f"{name} due {due.isoformat()} at its moment",
                )
            except asyncio.TimeoutError:
                pass
            if name in self.arrived:
                return RAN
            if name not in self.handed:
                # a new automation version took it back: once that version is the entry's, the rule follows it
                await workflow.wait_condition(lambda: not self.applying.locked())
                return BACK
            state = await self._take_back(name, force=not woken())
            if state == "withdrawn":
                return BACK if woken() else DUE
            if state == "done":
                return RAN
            woken = lambda: False  # noqa: E731 - its moment runs it now

    async def _take_back(self, name: str, *, force: bool = False) -> str:
        """Takes a handed rule back from its due moment, unless the moment ran it (its outcome is kept) or runs it
        now (`force`: long past its due time, even then); the rule's state there. One taken back already (another
        waiter asked first) is `withdrawn`."""
        seq = self.handed.get(name)
        if seq is None:
            return "done" if name in self.arrived else "withdrawn"
        stale = self.plans[name].timeout_seconds + STEP_TIMEOUT.total_seconds() if name in self.plans else 0.0
        asked = TakeBack(workflow_id=workflow.info().workflow_id, rule=name, seq=seq, force=force, stale_seconds=stale)
        taken = await self._step(
            TAKE_BACK, asked,
            result_type=TakenBack, summary=f"{name}: back from its moment",
        )
        if taken.state == "withdrawn":
            if self.handed.get(name) == seq:
                del self.handed[name]
        elif taken.outcome is not None:
            self.arrived.setdefault(name, taken.outcome)
        return taken.state

    async def _wait_dependencies(self, rule: RulePlan) -> None:
        if rule.name in self.removed:
            return
        rule = self._current(rule)
        if any(self.status.get(name) not in FINISHED for name in rule.depends_on):
            self.status[rule.name] = "waiting_rule"
            await workflow.wait_condition(
                lambda: rule.name in self.removed
                or all(self.status.get(name) in FINISHED for name in self._current(rule).depends_on)
            )

    def _call(self, rule: RulePlan) -> RuleCall:
        return RuleCall(
            item_id=self.entry.item_id,
            entity=self.entry.entity,
            pipeline_id=self.entry.pipeline_id,
            stage=self.entry.stage,
            entry_no=self.entry.entry_no,
            workflow_id=workflow.info().workflow_id,
            rule=rule,
            at=workflow.now(),
            constants=self.plan.constants,
            variables=dict(self.variables),
            results={name: self.results[name] for name in rule.depends_on if name in self.results},
        )

    async def _execute(self, rule: RulePlan) -> None:
        if rule.name in self.removed:
            return
        rule = self._current(rule)
        self.status[rule.name] = "running"
        changes_seen = len(self.changes)
        task = asyncio.ensure_future(self._outcome(rule))
        self.running[rule.name] = task
        try:
            outcome = await asyncio.shield(task)
        except FailureError as error:
            # A regular activity's failure arrives as an ActivityError, a local one's as its own cause.
            if is_cancelled_exception(error):
                raise
            await self._record_failure(rule, error)
            return
        finally:
            if task.done():
                self.running.pop(rule.name, None)
        if outcome.wait is not None and outcome.status == "done":
            await self._wait_after(rule, outcome, changes_seen)
        await self._accept(rule, outcome)

    async def _wait_after(self, rule: RulePlan, outcome: RuleOutcome, changes_seen: int) -> None:
        wait = outcome.wait
        self.after_waits.add(rule.name)
        if wait.kind == "callback":
            self.status[rule.name] = "waiting_callback"
            arrived = lambda: rule.name in self.callbacks  # noqa: E731
        else:
            self.status[rule.name] = "waiting_field"
            arrived = lambda: bool(set(self.changes[changes_seen:]) & set(wait.fields))  # noqa: E731
        timed_out = False
        try:
            await workflow.wait_condition(arrived, timeout=wait.timeout_seconds)
        except asyncio.TimeoutError:
            timed_out = True
        if wait.kind == "callback":
            outcome.result.update(self.callbacks.get(rule.name, {}))
            outcome.result["timed_out"] = timed_out
            detail = "no answer before the timeout" if timed_out else "answer received"
        else:
            changed = sorted(set(self.changes[changes_seen:]) & set(wait.fields))
            outcome.result.update(changed=not timed_out, field=changed[0] if changed else None)
            detail = "time passed" if timed_out else "field changed: " + ", ".join(changed)
        await self._step(
            RECORD_WAIT_END,
            WaitEnded(
                item_id=self.entry.item_id,
                workflow_id=workflow.info().workflow_id,
                entry_no=self.entry.entry_no,
                rule=rule.name,
                kind=wait.kind,
                timed_out=timed_out,
                at=workflow.now(),
                detail=detail,
                rule_type=rule.type,
                result=dict(outcome.result),
                version=rule.version or self.version,
            ),
            summary=f"{rule.name}: {detail}",
        )

    async def _outcome(self, rule: RulePlan) -> RuleOutcome:
        """The rule's outcome: from the `rules.together` or `rules.outside_together` call it is part of (retried in
        an activity of its own when that call says so), or from its own activity."""
        together = self.together.get(rule.name)
        if rule.name in self.arrived:
            self.handed.pop(rule.name, None)
            outcome = self.arrived.pop(rule.name)
        elif together is None:
            return await self._run_rule(rule, self._call(rule))
        else:
            outcome = await together
        if outcome.status == "failed":
            raise ApplicationError(outcome.reason, type=outcome.result.get("error_type"), non_retryable=True)
        if outcome.status == AGAIN:
            return await self._retry_alone(rule, outcome.result.get("attempt", 1))
        return outcome

    async def _retry_alone(self, rule: RulePlan, made: int) -> RuleOutcome:
        """A rule of a `rules.outside_together` call whose attempt failed: after the wait its retry policy gives,
        the attempts left in an activity of its own, spaced as its policy spaces them."""
        ceiling = RULE_RETRY_CEILING.total_seconds()
        first = min(self.plan.retry_initial_seconds * 2 ** (made - 1), ceiling)
        await workflow.sleep(first, summary=f"{rule.name}: retry")
        left = max(self.plan.retry_max_attempts - made, 1) if self.plan.retry_max_attempts else 0
        retry = self._retry(initial=min(first * 2, ceiling), attempts=left)
        call = dataclasses.replace(self.together_calls[rule.name], attempts_before=made)
        return await self._run_rule(rule, call, retry)

    def _retry(self, *, initial: float | None = None, attempts: int | None = None) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=timedelta(seconds=self.plan.retry_initial_seconds if initial is None else initial),
            backoff_coefficient=2.0,
            maximum_interval=RULE_RETRY_CEILING,
            maximum_attempts=self.plan.retry_max_attempts if attempts is None else attempts,
            non_retryable_error_types=["RuleFailed"],
        )

    async def _run_rule(self, rule: RulePlan, call: RuleCall, retry: RetryPolicy | None = None) -> RuleOutcome:
        """The rule's activity. Shielded: leaving the stage never interrupts a rule that already started;
        the activity itself refuses to act once the item has left. Rules that only touch the database run
        as local activities; the others heartbeat, so a lost worker's rule is retried within seconds."""
        retry = retry or self._retry()
        timeout = timedelta(seconds=rule.timeout_seconds)
        summary = f"{rule.name} ({rule.type})"
        if rule.local:
            return await workflow.execute_local_activity(
                rule.activity, call, result_type=RuleOutcome, start_to_close_timeout=timeout, retry_policy=retry,
                summary=summary,
            )
        heartbeat = self.plan.heartbeat_seconds
        return await workflow.execute_activity(
            rule.activity, call, result_type=RuleOutcome, start_to_close_timeout=timeout, retry_policy=retry,
            heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat else None, summary=summary,
        )

    async def _record_failure(self, rule: RulePlan, error: FailureError) -> None:
        info = workflow.info()
        self.status[rule.name] = "failed"
        self.failures.append(rule.name)
        await self._step(
            RECORD_RULE_FAILED,
            RuleFailure(
                item_id=self.entry.item_id,
                entity=self.entry.entity,
                workflow_id=info.workflow_id,
                entry_no=self.entry.entry_no,
                rule=rule.name,
                rule_type=rule.type,
                error=failure_message(error),
                at=workflow.now(),
                version=rule.version or self.version,
            ),
            summary=f"{rule.name} failed",
        )

    async def _accept(self, rule: RulePlan, outcome: RuleOutcome) -> None:
        self.status[rule.name] = outcome.status
        self.results[rule.name] = outcome.result
        self.variables.update(outcome.variables)
        if outcome.variables:
            self.variables_set += 1
        if self.follow:
            self.changes.extend(outcome.changed)
        await self._forward(outcome)

    async def _forward(self, outcome: RuleOutcome) -> None:
        """Events and moves a rule produced on purpose go to the item's workflow."""
        if not outcome.events and not outcome.moves:
            return
        parent = workflow.get_external_workflow_handle(self.entry.parent_workflow_id)
        for event in outcome.events:
            await parent.signal(ITEM_EVENT, ItemEvent(type=event.type, data=event.data, event_id=event.event_id))
        for move in outcome.moves:
            await parent.signal(RULE_MOVE, move)

    async def _accept_handed(self, rule: RulePlan, outcome: RuleOutcome) -> None:
        """The outcome of a handed rule its due moment ran, taken as the item leaves the stage: one its moment would
        have tried again is tried again here, and finds the item gone."""
        self.handed.pop(rule.name, None)
        if outcome.status == AGAIN and workflow.patched(HANDED_AGAIN):
            try:
                outcome = await self._retry_alone(rule, outcome.result.get("attempt", 1))
            except FailureError as error:
                await self._record_failure(rule, error)
                return
        if outcome.status in ("failed", AGAIN):
            error = ApplicationError(outcome.reason, type=outcome.result.get("error_type"), non_retryable=True)
            await self._record_failure(rule, error)
        else:
            await self._accept(rule, outcome)

    def _skip_rest(self, rules: list[RulePlan], reason: str) -> None:
        for rule in rules:
            self.status[rule.name] = "skipped"
            self.skipped[rule.name] = reason

    async def _finish_cancelled(self) -> None:
        """The item left the stage: rules already running finish (and count), the rest are cancelled."""
        for name, task in list(self.running.items()):
            try:
                await task
            except FailureError as error:
                await self._record_failure(self.plans[name], error)
            else:
                await self._accept(self.plans[name], task.result())
        self.running.clear()
        await workflow.wait_condition(lambda: not self.applying.locked())
        for name in list(self.handed):
            if self.status.get(name) in FINISHED:
                continue
            force = False
            while name not in self.arrived and await self._take_back(name, force=force) == "running":
                try:
                    await workflow.wait_condition(lambda: name in self.arrived, timeout=HANDED_GRACE.total_seconds())
                except asyncio.TimeoutError:
                    force = True
            if name in self.arrived:
                await self._accept_handed(self.plans[name], self.arrived.pop(name))
        left_waiting: dict[str, str] = {}
        for rule in self.plan.rules if self.plan is not None else []:
            state = self.status.get(rule.name)
            if state == "waiting_callback" or (state == "waiting_field" and rule.name in self.after_waits):
                self.status[rule.name] = "done"
                left_waiting[rule.name] = rule.type
        cancelled = [name for name, state in self.status.items() if state not in FINISHED]
        for name in cancelled:
            self.status[name] = "cancelled"
        await self._finish(cancelled, left_waiting)

    async def _finish(self, cancelled: list[str], left_waiting: dict[str, str] | None = None) -> None:
        """Records the rules that will not run. Cancelled before the rules were loaded, the activity
        records every rule of the stage as cancelled."""
        await self._step(
            FINISH_ENTRY,
            EntryFinish(
                item_id=self.entry.item_id,
                entity=self.entry.entity,
                workflow_id=workflow.info().workflow_id,
                entry_no=self.entry.entry_no,
                at=workflow.now(),
                cancelled=cancelled,
                skipped=self.skipped,
                stage=self.entry.stage,
                pipeline_id=self.entry.pipeline_id,
                before_plan=self.plan is None,
                left_waiting=dict(left_waiting or {}),
                version=self.version,
            ),
            summary="record rules not run",
        )


def failure_message(error: FailureError) -> str:
    cause = error.cause
    while cause is not None and getattr(cause, "cause", None) is not None and not str(cause):
        cause = cause.cause
    return str(cause or error)
