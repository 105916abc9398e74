"""The engine's activities: the steps the workflows call (enter a stage, plan an entry, schedule a rule, match a
trigger, record outcomes), one activity per rule type, `rule.<type>`, from the registry it is given, and
`rules.together`, which runs several database-only rules in one call, and `rules.outside_together`, which runs several
rules that reach the outside in one call.

Each step lives in a module of its own: `stages` (stage changes and triggers), `planning` (an entry's plan and
due times), `at_entering` (an entry the step that enters its stage finishes itself), `outcomes` (what the timeline
records about rules), `runner` (one rule, exactly once), `versions` (a version's apply), `retries` (a bulk retry of
failed rules), `moments` (rules of many entries due at one moment, run together).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlmodel import Session
from temporalio import activity

from activities.steps.moments import DueMomentSteps
from activities.steps.outcomes import OutcomeSteps
from activities.steps.planning import CUSTOM_RULE_ACTIVITY, PlanningSteps
from activities.steps.retries import RetrySteps
from activities.steps.runner import RuleRunner
from activities.steps.stages import StageSteps
from activities.steps.together import RulesTogetherStep
from activities.steps.versions import VersionSteps
from activities.rule import Deps
from models.domain.rule_types import RuleType
from workflows.types import RuleCall, RuleOutcome

__all__ = ["WorkerActivities", "RuleRunner"]


class WorkerActivities:
    """Every activity the worker registers: the engine's steps, `rule.<type>` for each built-in type of
    `rule_types`, and `rule.custom` (`custom_rules`), which runs the rules of custom rule types."""

    def __init__(
        self, deps: Deps, rule_types: Mapping[str, RuleType], custom_rules: RuleType,
        all_rule_types: Callable[[Session], Mapping[str, RuleType]],
    ) -> None:
        if custom_rules.name != CUSTOM_RULE_ACTIVITY.removeprefix("rule."):
            raise ValueError(f"the custom rules activity is {CUSTOM_RULE_ACTIVITY}, not rule.{custom_rules.name}")
        self.deps = deps
        self.rule_types = dict(rule_types)
        self.custom_rules = custom_rules
        self.planning = PlanningSteps(deps, self.rule_types, all_rule_types)
        kinds = [*self.rule_types.values(), self.custom_rules]
        self.runners = {f"rule.{kind.name}": RuleRunner(deps, kind) for kind in kinds}
        self.stages = StageSteps(deps, self.planning, self.runners)
        self.outcomes = OutcomeSteps(deps)
        self.together = RulesTogetherStep(deps, self.runners)
        self.versions = VersionSteps(deps, self.planning)
        self.retries = RetrySteps(deps, self.planning)
        self.moments = DueMomentSteps(deps, self.runners)

    def steps(self) -> list[Callable]:
        return [
            self.stages.enter_stage,
            self.planning.begin_entry,
            self.planning.schedule_rule,
            self.planning.reschedule_rule,
            self.stages.match_trigger,
            self.outcomes.record_rule_failed,
            self.outcomes.record_wait_end,
            self.outcomes.finish_entry,
            self.outcomes.record_version_applied,
            self.together.run_together,
            self.together.run_outside_together,
            self.versions.entries_to_apply,
            self.retries.next_retries,
            self.retries.prepare_retry,
            self.retries.retry_finished,
            self.retries.finish_operation,
            self.moments.hand_over,
            self.moments.take_back,
            self.moments.run_due_rules,
            self.moments.run_due_outside_rules,
            self.moments.tell_due_outcomes,
            self.moments.finish_due_moment,
        ]

    def all(self) -> list[Callable]:
        return [*self.steps(), *(self._rule_activity(name, runner) for name, runner in self.runners.items())]

    @staticmethod
    def _rule_activity(name: str, runner: RuleRunner) -> Callable:
        async def run(call: RuleCall) -> RuleOutcome:
            return await runner.run(call)

        run.__name__ = name.replace(".", "_")
        return activity.defn(name=name)(run)
