"""Rules that start together run in one call: database-only ones in one local activity (`rules.together`), those that
reach the outside side by side in one regular activity (`rules.outside_together`).

An entry's rules that are due when it starts and need nothing from each other cost one call instead of one each,
and one transaction: one read prepares them all (what each recorded before, the item, its data tree), then each
runs and records its outcome in that transaction, which commits them together. When any of them does not succeed,
the transaction is undone and the rules run one by one, each in transactions of its own. Each rule still runs
through its own runner: keyed by its effect key, recorded as done (or skipped) on its own, so
a retry of the call finds what an earlier attempt did and does not do it again. A rule that fails for good is
reported as failed without stopping the others; a rule that would be retried makes the whole call retry (the
rules done already are found done), and on the call's last attempt it is reported as failed instead.

Rules that reach the outside wait for other systems, so they run side by side, each within its own timeout, while the
call heartbeats; they share the call's round trips through the server and its one read. A rule that fails for good is
reported as failed; one that would be retried is reported as to be retried (`AGAIN`) and the entry retries it in an
activity of its own with the attempts left, so that it neither holds back nor repeats the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.steps.runner import Ready, RuleRunner, heartbeating, prepare_together, run_at_once
from activities.rule import Deps
from workflows.types import AGAIN, RULES_OUTSIDE_TOGETHER, RULES_TOGETHER, RuleCall, RuleOutcome, RulesTogether


def failed_outcome(error: BaseException) -> RuleOutcome:
    """A rule's failure as its outcome, told as a failed activity of its own tells it: by the error's cause when
    it has one (the engine records the cause), with the type and the message."""
    shown = error.__cause__ or error
    if isinstance(shown, ApplicationError):
        return RuleOutcome(status="failed", reason=shown.message, result={"error_type": shown.type or "Error"})
    return RuleOutcome(status="failed", reason=str(shown) or type(shown).__name__,
                       result={"error_type": type(shown).__name__})


async def run_in_time(runners: Mapping[str, RuleRunner], call: RuleCall, ready: Ready) -> RuleOutcome:
    """One rule that reaches the outside, run beside others within its own timeout (a rule that exceeds it is
    retried, as its activity would be)."""
    timeout = call.rule.timeout_seconds
    try:
        async with asyncio.timeout(timeout) as limit:
            return await runners[call.rule.activity].run(call, ready)
    except TimeoutError:
        if limit.expired():
            raise TimeoutError(f"the rule ran past its timeout of {timeout:g} s") from None
        raise


async def run_side_by_side(
    runners: Mapping[str, RuleRunner], calls: list[RuleCall], prepared: list[Ready], *, last: bool, attempt: int
) -> list[RuleOutcome]:
    """Rules that reach the outside, prepared, run side by side, each within its own timeout: their outcomes, each
    failure failed for good or to be tried again by its entry (`failed_or_again`); a cancellation or exit is
    raised."""
    runs = await asyncio.gather(
        *(run_in_time(runners, call, ready) for call, ready in zip(calls, prepared)), return_exceptions=True
    )
    outcomes: list[RuleOutcome] = []
    for call, run in zip(calls, runs):
        if isinstance(run, RuleOutcome):
            outcomes.append(run)
        elif not isinstance(run, Exception):
            raise run
        else:
            outcomes.append(failed_or_again(call, run, last=last, attempt=attempt))
    return outcomes


def failed_or_again(call: RuleCall, error: Exception, *, last: bool, attempt: int) -> RuleOutcome:
    """The outcome of a rule of a shared call that raised `error`: failed for good (`last`: no attempt is left, or
    the error says so), else to be tried again by its entry (`AGAIN`) after `attempt` attempts."""
    if last or (isinstance(error, ApplicationError) and error.non_retryable):
        return failed_outcome(error)
    activity.logger.warning("rule %s of %s failed, to be retried: %s", call.rule.name, call.workflow_id, error,
                            exc_info=error)
    return RuleOutcome(status=AGAIN, reason=str(error) or type(error).__name__, result={"attempt": attempt})


class RulesTogetherStep:
    def __init__(self, deps: Deps, runners: Mapping[str, RuleRunner]) -> None:
        self.deps = deps
        self.runners = runners

    @activity.defn(name=RULES_TOGETHER)
    async def run_together(self, batch: RulesTogether) -> list[RuleOutcome]:
        try:
            return await self.deps.db(lambda session: run_at_once(session, self.deps, self.runners, batch.calls))
        except Exception:  # noqa: BLE001 - nothing of the transaction stays: each rule runs on its own below
            activity.logger.debug("rules of %s run one by one", batch.calls[0].workflow_id, exc_info=True)
        return await self._one_by_one(batch)

    async def _one_by_one(self, batch: RulesTogether) -> list[RuleOutcome]:
        """Each rule in transactions of its own, so that one that fails fails alone."""
        last = bool(batch.max_attempts) and activity.info().attempt >= batch.max_attempts
        outcomes: list[RuleOutcome] = []
        again: Exception | None = None
        prepared = await self.deps.db(lambda session: prepare_together(session, self.runners, batch.calls))
        for call, ready in zip(batch.calls, prepared):
            try:
                outcomes.append(await self.runners[call.rule.activity].run(call, ready))
            except Exception as error:  # noqa: BLE001 - each rule's failure is its own
                if not (last or (isinstance(error, ApplicationError) and error.non_retryable)):
                    again = again or error
                outcomes.append(failed_outcome(error))
        if again is not None:
            raise again
        return outcomes

    @activity.defn(name=RULES_OUTSIDE_TOGETHER)
    async def run_outside_together(self, batch: RulesTogether) -> list[RuleOutcome]:
        info = activity.info()
        last = bool(batch.max_attempts) and info.attempt >= batch.max_attempts
        async with heartbeating():
            prepared = await self.deps.db(lambda session: prepare_together(session, self.runners, batch.calls))
            return await run_side_by_side(self.runners, batch.calls, prepared, last=last, attempt=info.attempt)


