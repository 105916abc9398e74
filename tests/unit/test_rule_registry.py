"""The rule registry agrees with itself and with everything that reads it: every rule type defined in a group
module is listed once, every listed type has a handler and lives in the module of its group, and the worker,
`GET /rule-types` and the automation validation all see exactly the listed types."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from pydantic import BaseModel

import activities.rules
from activities.steps import WorkerActivities
from activities.rule import Deps
from activities.rules import CUSTOM_RULES, RULE_TYPES, rule_types
from activities.rules.custom import CustomType
from models.domain.rule_types import GROUPS, RuleType, rule_type_catalogue
from models.domain.validation import AutomationInvalid, ValidationContext, validate_automation

HELPERS = ("CustomType", "CustomRules")
"""Classes of `activities.rules.custom` that are not built-in types: app types are built from registrations."""


def defined_rule_types() -> dict[str, type[RuleType]]:
    """Every concrete RuleType subclass defined in a module of `activities.rules`, by class name."""
    found: dict[str, type[RuleType]] = {}
    for module_info in pkgutil.iter_modules(activities.rules.__path__):
        module = importlib.import_module(f"activities.rules.{module_info.name}")
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, RuleType) and value.__module__ == module.__name__:
                found[name] = value
    return found


def test_every_defined_rule_type_is_registered_once() -> None:
    registered = {type(kind) for kind in RULE_TYPES.values()}
    missing = [name for name, cls in defined_rule_types().items() if cls not in registered and name not in HELPERS]
    assert missing == [], f"rule types defined but missing from activities.rules.RULE_TYPES: {missing}"
    assert len(registered) == len(RULE_TYPES)


@pytest.mark.parametrize("name", sorted(RULE_TYPES))
def test_every_registered_type_is_whole_in_the_module_of_its_group(name: str) -> None:
    kind = RULE_TYPES[name]
    assert kind.name == name
    assert kind.group in GROUPS
    assert type(kind).__module__ == f"activities.rules.{kind.group}", f"{name} belongs in activities/rules/{kind.group}.py"
    assert type(kind).run is not RuleType.run, f"rule type {name} has no handler"
    assert issubclass(kind.settings, BaseModel) and kind.settings.__module__ == type(kind).__module__
    assert kind.title and kind.description
    assert set(kind.private_returns) <= set(kind.returns)


def test_the_worker_registers_one_activity_per_registered_type() -> None:
    deps = Deps(settings=None, database=None)
    names = {fn.__temporal_activity_definition.name for fn in WorkerActivities(deps, RULE_TYPES, CUSTOM_RULES, rule_types).all()}
    steps = {fn.__temporal_activity_definition.name for fn in WorkerActivities(deps, {}, CUSTOM_RULES, rule_types).steps()}
    assert names - steps == {f"rule.{name}" for name in RULE_TYPES} | {"rule.custom"}


def test_the_catalogue_and_the_validation_read_the_registry() -> None:
    assert [entry["name"] for entry in rule_type_catalogue(RULE_TYPES)] == list(RULE_TYPES)
    context = ValidationContext(entity_type="deal", stage_codes=["NEW"], rule_types=RULE_TYPES)
    example = RULE_TYPES["send_sms"].settings.model_config["json_schema_extra"]["examples"][0]
    rule = {"name": "sms", "type": "send_sms", "settings": example}
    assert validate_automation({"stages": {"NEW": {"rules": [rule]}}}, context).stage("NEW").rules[0].type == "send_sms"
    without = ValidationContext(entity_type="deal", stage_codes=["NEW"], rule_types={})
    with pytest.raises(AutomationInvalid, match="unknown rule type 'send_sms'"):
        validate_automation({"stages": {"NEW": {"rules": [rule]}}}, without)


def test_an_app_type_cannot_take_a_built_in_name() -> None:
    with pytest.raises(ValueError, match="built-in"):
        CustomType.from_row(
            type("Row", (), {"name": "send_sms", "settings_schema": {}, "handler_url": "https://x.example.com",
                             "returns": [], "title": ""})(),
            reserved=RULE_TYPES,
        )
