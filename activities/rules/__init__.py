"""The rule types, written out once: every built-in type by its group's module, and the activity that runs the
rules of custom rule types.

`GET /rule-types`, the worker's activity registration (`rule.<type>`) and the validation of a pipeline's
automation all read `RULE_TYPES`. A type of group G lives whole in `activities/rules/G.py`: its settings model,
its save-time checks, its catalogue entry and its `run`. `tests/unit/test_rule_registry.py` fails when a type is
defined but not listed here, listed but without a handler, or in the module of another group.
"""

from __future__ import annotations

from activities.rules import communication, custom, documents, helpers, monitoring, repeat_sales
from sqlmodel import Session

from models.domain.rule_types import RuleType


def _registry(*kinds: RuleType) -> dict[str, RuleType]:
    registry: dict[str, RuleType] = {}
    for kind in kinds:
        if kind.name in registry:
            raise ValueError(f"rule type {kind.name} is listed twice")
        registry[kind.name] = kind
    return registry


RULE_TYPES: dict[str, RuleType] = _registry(
    documents.CreateDocument(),
    documents.SendForSignature(),
    documents.ChangeRequisites(),
    documents.GetRequisites(),
    monitoring.NotifySupervisor(),
    monitoring.AddTimelineEntry(),
    monitoring.CreateTask(),
    monitoring.CompleteTasks(),
    monitoring.ScheduleActivity(),
    monitoring.NotifyEmployee(),
    repeat_sales.CreateRepeatLead(),
    repeat_sales.CopyDeal(),
    communication.SendEmail(),
    communication.SendSms(),
    communication.SendChannelMessage(),
    communication.CallClient(),
    helpers.ChangeResponsible(),
    helpers.ChangeStage(),
    helpers.UpdateFields(),
    helpers.EditVariable(),
    helpers.MathOperation(),
    helpers.Wait(),
    helpers.Webhook(),
)
"""Every built-in rule type by name, in the catalogue's order."""

def rule_types(session: Session) -> dict[str, RuleType]:
    """Every type a rule may have now: the built-in ones in the catalogue's order, then the custom ones in the order
    they were registered (`POST /rule-types`). The catalogue, the automation's checks and an entry's plan read this."""
    return {**RULE_TYPES, **custom.custom_rule_types(session)}


CUSTOM_RULES: RuleType = custom.CustomRules()
"""The activity `rule.custom`, which runs the rules of every custom rule type."""
