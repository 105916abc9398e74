"""A pipeline's automation as stored: constants, variables, and per stage its rules and triggers.

The models check only shape, so configurations already stored load without the CRM at hand;
`models.domain.validation` checks a configuration against the CRM before it is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.domain.conditions import Condition
from models.domain.delays import Delay
from models.domain.rule_types import RuleType
from models.domain.triggers import TRIGGER_TYPES, Filter


class RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: str
    start: Literal["on_entry", "after_previous"] = "on_entry"
    delay: Delay | None = None
    condition: Condition | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    """Validated by the type's settings model; stored with defaults filled in."""

    def typed_settings(self, rule_types: Mapping[str, RuleType]) -> BaseModel:
        """The settings as the type's pydantic model (raises KeyError for a type not in `rule_types`)."""
        return rule_types[self.type].settings.model_validate(self.settings)


class TriggerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: str
    filter: dict[str, Any] | None = None
    condition: Condition | None = None
    allow_backwards: bool = False
    as_user_id: int | None = None

    def typed_filter(self) -> Filter | None:
        """The filter as its trigger type's model; None when the type or the stored filter is unknown."""
        kind = TRIGGER_TYPES.get(self.type)
        if kind is None:
            return None
        try:
            return kind.filter.model_validate(self.filter or {})
        except ValidationError:
            return None


class StageAutomation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[RuleConfig] = Field(default_factory=list)
    triggers: list[TriggerConfig] = Field(default_factory=list)


class AutomationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    constants: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, Any] = Field(default_factory=dict)
    """Default values of the variables rules may change during a stage entry."""
    stages: dict[str, StageAutomation] = Field(default_factory=dict)

    def stage(self, code: str) -> StageAutomation:
        return self.stages.get(code) or StageAutomation()

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


