"""Validating a pipeline's automation as a whole against the CRM it belongs to.

`validate_automation` checks a configuration against the CRM (stages, users, pipelines, templates, the
rule types' own checks, which placeholders can resolve) and collects every problem, each located like
FastAPI's 422 details:
`{"loc": ["body", "stages", "NEW", "rules", 0, "settings", "text"], "msg": "...", "type": "value_error"}`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from models.domain.automation import AutomationConfig, RuleConfig, StageAutomation, TriggerConfig
from models.domain.conditions import (
    AllOf,
    AnyOf,
    ConditionInvalid,
    ConditionLeaf,
    blank_value_problem,
    parse_condition,
    raw_leaves,
)
from models.domain.data_tree import ANY, ITEM_TREE, entity_root
from models.domain.delays import DelayError, parse_delay
from models.domain.fields import ENTITY_TYPES, MAX_TEXT_LENGTH
from models.domain.placeholders import UnresolvedPlaceholder, find_placeholders, resolve, split_path
from models.domain.problems import problems_of
from models.domain.rule_types import RuleEnv, RuleType
from models.domain.triggers import TRIGGER_TYPES

MAX_RULES_PER_STAGE = 100
MAX_TRIGGERS_PER_STAGE = 100
MAX_NAME_LENGTH = 100
MAX_NAMED_VALUES = 200
RULE_KEYS = ("name", "type", "start", "delay", "condition", "settings")
TRIGGER_KEYS = ("name", "type", "filter", "condition", "allow_backwards", "as_user_id")
STARTS = ("on_entry", "after_previous")
_NOT_AN_OBJECT = {"settings": "settings are an object", "filter": "the filter is an object"}


class AutomationInvalid(ValueError):
    """The automation has problems; `errors` lists every one as `{"loc", "msg", "type"}`."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(error["msg"] for error in errors))
        self.errors = errors


@dataclass
class ValidationContext:
    """The CRM an automation is checked against."""

    entity_type: str
    """deal | lead: the pipeline's entity; placeholders start with Deal or Lead accordingly."""
    stage_codes: list[str]
    user_ids: Set[int] = field(default_factory=set)
    pipelines: Mapping[int, tuple[str, list[str]]] = field(default_factory=dict)
    """Every pipeline id → (entity type, stage codes), for rules that target another pipeline."""
    templates: Set[str] = field(default_factory=set)
    """Document template codes."""
    rule_types: Mapping[str, RuleType] = field(default_factory=dict)
    """Every rule type a rule may have: the built-in registry and the custom rule types."""
    pipeline_id: int | None = None
    """The pipeline being configured, when known."""
    saving: bool = True
    """The automation is being saved: the checks added since automations were first saved apply (a comparison with
    an empty value). False when one saved before is looked through (which stages it names)."""
    phone_region: str = "US"
    """The region phone numbers without a country code are read in (STAGEFLOW_SMS_DEFAULT_REGION)."""
    channel_templates: Mapping[str, str] = field(default_factory=dict)
    """The approved WhatsApp templates a rule may name, with their languages (WHATSAPP_TEMPLATES)."""

    @property
    def entity_root(self) -> str:
        return entity_root(self.entity_type)


# -- placeholders at save time -------------------------------------------------------------------



@dataclass
class PlaceholderScope:
    """What a placeholder in one rule (or trigger) may refer to."""

    entity_root: str
    stage: str
    constants: Mapping[str, Any]
    variables: Set[str]
    variable_setters: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    """Variables set by rules of the stage: name → (index, rule name) of the first rule that sets it."""
    rules: Mapping[str, tuple[str, tuple[str, ...] | None]] = field(default_factory=dict)
    """Earlier rules: name → (type, result names; None when unknown)."""
    stage_rules: Mapping[str, int] = field(default_factory=dict)
    current_rule: str | None = None
    allow_rules: bool = True


def _tree_problem(root: str, tree: Mapping[str, Any], rest: list[str]) -> str | None:
    if not rest:
        return f"name a field of {root}, e.g. {root}.Title"
    node: Any = tree
    walked = [root]
    for segment in rest:
        if node is ANY:
            return None
        here = ".".join(walked)
        if node is None:
            return f"{here} is a single value; it has no field {segment!r}"
        if segment not in node:
            close = [name for name in node if name.lower() == segment.lower()]
            hint = f"; did you mean {close[0]!r}?" if close else f" (fields: {', '.join(node)})"
            return f"{here} has no field {segment!r}{hint}"
        node = node[segment]
        walked.append(segment)
    here = ".".join(walked)
    if node is ANY:
        return f"{here} needs a custom field name: {here}.<name>"
    if isinstance(node, dict):
        return f"{here} is a group; name one of its fields: {', '.join(node)}"
    return None


def placeholder_problem(path: str, scope: PlaceholderScope) -> str | None:
    """Why `{{path}}` cannot resolve in this scope, or None when it can."""
    try:
        segments = split_path(path)
    except UnresolvedPlaceholder as error:
        return error.reason
    root, rest = segments[0], segments[1:]
    if root in ("Deal", "Lead"):
        if root != scope.entity_root:
            return f"this pipeline holds {scope.entity_root.lower()}s; write {scope.entity_root}.{'.'.join(rest) or 'Title'}"
        return _tree_problem(root, ITEM_TREE, rest)
    if root == "Constants":
        if not rest:
            return "name a constant: Constants.<name>"
        if rest[0] not in scope.constants:
            declared = ", ".join(scope.constants) or "none"
            return f"constant {rest[0]!r} is not declared in constants (declared: {declared})"
        try:
            resolve(".".join(rest), scope.constants)
        except UnresolvedPlaceholder as error:
            return error.reason
        return None
    if root == "Variables":
        if not rest:
            return "name a variable: Variables.<name>"
        name = rest[0]
        if name in scope.variables:
            return None
        setter = scope.variable_setters.get(name)
        if setter is not None:
            return f"variable {name!r} is set by rule {setter[0]} {setter[1]!r}, which does not come before this one"
        return f"variable {name!r} is not declared in variables and no earlier edit_variable or math_operation rule sets it"
    if root == "Rule":
        if not scope.allow_rules:
            return "only rules can read results of earlier rules, triggers cannot"
        if len(rest) < 2:
            return "write Rule.<rule name>.<value>"
        name, value = rest[0], rest[1]
        if name == scope.current_rule:
            return "a rule cannot read its own results"
        if name in scope.rules:
            kind, returns = scope.rules[name]
            if returns is None or value in returns:
                return None
            offered = ", ".join(returns) if returns else "no values"
            return f"rule {name!r} ({kind}) returns {offered}; not {value!r}"
        if name in scope.stage_rules:
            return (
                f"rule {name!r} is rule {scope.stage_rules[name]} of stage {scope.stage!r}; only rules listed "
                "before this one can be read"
            )
        return f"stage {scope.stage!r} has no rule named {name!r}"
    return f"unknown name {root!r}; placeholders start with {scope.entity_root}, Constants, Variables or Rule"


# -- validating a whole automation ----------------------------------------------------------------


def _name_problem(name: Any, what: str) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return f"every {what} needs a name (text)"
    if len(name) > MAX_NAME_LENGTH:
        return f"{what} names are at most {MAX_NAME_LENGTH} characters"
    if name != name.strip() or any(char in name for char in ".{}") or not name.isprintable():
        return f"{what} name {name!r} must not contain '.', '{{', '}}', control characters or surrounding spaces"
    return None


def _identifier_problem(name: str) -> str | None:
    if not name.isidentifier() or not name.isascii():
        return f"{name!r} is not a name of letters, digits and underscores"
    return None


def _strings(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _strings(inner, loc + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _strings(inner, loc + (index,))


class _Validation:
    def __init__(self, ctx: ValidationContext) -> None:
        self.ctx = ctx
        self.errors: list[dict[str, Any]] = []
        self.rule_types: Mapping[str, RuleType] = ctx.rule_types

    def error(self, loc: Sequence[str | int], msg: str) -> None:
        self.errors.append({"type": "value_error", "loc": ["body", *loc], "msg": msg})

    def located(self, base: Sequence[str | int], label: str, sub: Sequence[str | int], msg: str) -> None:
        where = ".".join(str(part) for part in sub)
        self.error([*base, *sub], f"{label}: {where}: {msg}" if where else f"{label}: {msg}")

    # -- the parts

    def run(self, raw: Any) -> AutomationConfig:
        if not isinstance(raw, Mapping):
            self.error([], "the automation is an object with constants, variables and stages")
            raise AutomationInvalid(self.errors)
        for key in raw:
            if key not in ("constants", "variables", "stages"):
                self.error([key], f"{key}: unknown key; the automation has constants, variables and stages")
        constants = self.named_values(raw.get("constants"), "constants")
        variables = self.named_values(raw.get("variables"), "variables")
        stages: dict[str, StageAutomation] = {}
        stages_raw = raw.get("stages")
        if stages_raw is None:
            stages_raw = {}
        if not isinstance(stages_raw, Mapping):
            self.error(["stages"], "stages: an object of stage code → {rules, triggers}")
            stages_raw = {}
        for code, stage_raw in stages_raw.items():
            if code not in self.ctx.stage_codes:
                self.error(
                    ["stages", code],
                    f"stage {code!r} is not a stage of this pipeline (stages: {', '.join(self.ctx.stage_codes)})",
                )
                continue
            stage = self.stage(code, stage_raw, constants, variables)
            if stage is not None:
                stages[code] = stage
        if self.errors:
            raise AutomationInvalid(self.errors)
        return AutomationConfig(constants=constants, variables=variables, stages=stages)

    def named_values(self, raw: Any, key: str) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.error([key], f"{key}: an object of name → value")
            return {}
        if len(raw) > MAX_NAMED_VALUES:
            self.error([key], f"{key}: at most {MAX_NAMED_VALUES} names")
        for name, value in raw.items():
            problem = _identifier_problem(str(name))
            if problem:
                self.error([key, name], f"{key}.{name}: {problem}")
            for sub, text in _strings(value):
                if len(text) > MAX_TEXT_LENGTH:
                    self.located([key, name], f"{key}.{name}", sub, f"at most {MAX_TEXT_LENGTH} characters")
        return dict(raw)

    def stage(
        self, code: str, raw: Any, constants: dict[str, Any], variables: dict[str, Any]
    ) -> StageAutomation | None:
        base: list[str | int] = ["stages", code]
        if raw is None:
            return StageAutomation()
        if not isinstance(raw, Mapping):
            self.error(base, f"stage {code!r}: an object with rules and triggers")
            return None
        for key in raw:
            if key not in ("rules", "triggers"):
                self.error([*base, key], f"stage {code!r}: {key}: unknown key; a stage has rules and triggers")
        rules_raw = self.list_of(raw.get("rules"), [*base, "rules"], f"stage {code!r}: rules", MAX_RULES_PER_STAGE)
        triggers_raw = self.list_of(
            raw.get("triggers"), [*base, "triggers"], f"stage {code!r}: triggers", MAX_TRIGGERS_PER_STAGE
        )
        stage_rules: dict[str, int] = {}
        setters: dict[str, tuple[int, str]] = {}
        for index, rule in enumerate(rules_raw):
            if isinstance(rule, Mapping) and isinstance(rule.get("name"), str):
                stage_rules.setdefault(rule["name"], index)
                variable = _variable_set_by(rule, self.rule_types)
                if variable is not None:
                    setters.setdefault(variable, (index, rule["name"]))

        rules: list[RuleConfig] = []
        earlier: dict[str, tuple[str, tuple[str, ...] | None]] = {}
        earlier_types: dict[str, str] = {}
        known_variables = set(variables)
        for index, rule_raw in enumerate(rules_raw):
            scope = PlaceholderScope(
                entity_root=self.ctx.entity_root,
                stage=code,
                constants=constants,
                variables=set(known_variables),
                variable_setters=setters,
                rules=dict(earlier),
                stage_rules=stage_rules,
                current_rule=rule_raw.get("name") if isinstance(rule_raw, Mapping) else None,
            )
            checked = self.rule(code, index, rule_raw, scope, earlier_types)
            if checked is None:
                continue
            rule, kind, settings = checked
            if rule is not None:
                rules.append(rule)
            if rule_raw["name"] not in earlier:
                earlier[rule_raw["name"]] = (str(rule_raw.get("type")), _known_results(kind, settings))
                earlier_types[rule_raw["name"]] = str(rule_raw.get("type"))
            if kind is not None and settings is not None:
                variable = kind.variable_name(settings)
                if variable:
                    known_variables.add(variable)

        triggers: list[TriggerConfig] = []
        names: dict[str, int] = {}
        for index, trigger_raw in enumerate(triggers_raw):
            scope = PlaceholderScope(
                entity_root=self.ctx.entity_root, stage=code, constants=constants, variables=set(variables),
                allow_rules=False,
            )
            trigger = self.trigger(code, index, trigger_raw, scope, names)
            if trigger is not None:
                triggers.append(trigger)
        return StageAutomation(rules=rules, triggers=triggers)

    def list_of(self, raw: Any, loc: list[str | int], label: str, limit: int) -> list[Any]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.error(loc, f"{label}: a list")
            return []
        if len(raw) > limit:
            self.error(loc, f"{label}: at most {limit} per stage, found {len(raw)}")
        return raw

    def head(
        self, base: list[str | int], raw: Any, what: str, keys: Sequence[str], index: int, code: str,
        names: dict[str, int], registry: Mapping[str, Any],
    ) -> tuple[str, Any] | None:
        """The checks a rule and a trigger share: an object of known keys, a unique name, a known type.
        None when `raw` is no object; else the label its messages start with and its type (None if unknown)."""
        if not isinstance(raw, Mapping):
            self.error(base, f"stage {code!r}, {what} {index}: a {what} is an object with {', '.join(keys)}")
            return None
        name, type_name = raw.get("name"), raw.get("type")
        label = f"stage {code!r}, {what} {index} {name!r}" + (f" ({type_name})" if isinstance(type_name, str) else "")
        for key in raw:
            if key not in keys:
                self.located(base, label, [key], f"unknown key; a {what} has {', '.join(keys)}")
        problem = _name_problem(name, what)
        if problem:
            self.located(base, label, ["name"], problem)
        elif name in names:
            self.located(base, label, ["name"], f"another {what} of this stage is named {name!r} ({what} {names[name]})")
        kind = registry.get(type_name) if isinstance(type_name, str) else None
        if kind is None:
            self.located(
                base, label, ["type"], f"unknown {what} type {type_name!r}; known types: {', '.join(registry)}"
            )
        return label, kind

    def model(
        self, model: type[BaseModel], raw: Any, key: str, base: list[str | int], label: str, scope: PlaceholderScope
    ) -> BaseModel | None:
        """`raw` (the settings or the filter; None is an empty one) validated by `model`, its texts' placeholders
        checked; None, with the problems recorded, when it does not validate."""
        if raw is not None and not isinstance(raw, Mapping):
            self.located(base, label, [key], _NOT_AN_OBJECT[key])
            return None
        try:
            return model.model_validate(raw or {})
        except ValidationError as error:
            for sub, msg in problems_of(error):
                self.located(base, label, [key, *sub], msg)
            return None

    def rule(
        self,
        code: str,
        index: int,
        raw: Any,
        scope: PlaceholderScope,
        earlier_types: dict[str, str],
    ) -> tuple[RuleConfig | None, RuleType | None, BaseModel | None] | None:
        """Checks one rule. None when it has no usable name; else the rule (None if invalid), its type and
        its validated settings (for the rules after it)."""
        base: list[str | int] = ["stages", code, "rules", index]
        before = len(self.errors)
        names = {name: position for position, name in enumerate(earlier_types)}
        head = self.head(base, raw, "rule", RULE_KEYS, index, code, names, self.rule_types)
        if head is None:
            return None
        label, kind = head
        name = raw.get("name")
        if kind is not None and self.ctx.entity_type not in kind.entities:
            self.located(
                base, label, ["type"], f"{kind.name} works on {' and '.join(kind.entities)} pipelines only"
            )

        start = raw.get("start", "on_entry")
        if start is None:
            start = "on_entry"
        if start not in STARTS:
            self.located(base, label, ["start"], f"start is on_entry or after_previous, not {start!r}")

        delay = None
        try:
            delay = parse_delay(raw.get("delay"))
        except DelayError as error:
            for sub, msg in error.problems:
                self.located(base, label, ["delay", *sub], msg)

        condition = self.condition(raw.get("condition"), base, label, scope)

        settings_raw = raw.get("settings")
        settings = None
        dumped: dict[str, Any] = {}
        if kind is not None:
            settings = self.model(kind.settings, settings_raw, "settings", base, label, scope)
        elif settings_raw is not None and not isinstance(settings_raw, Mapping):
            self.located(base, label, ["settings"], _NOT_AN_OBJECT["settings"])
        if settings is None and isinstance(settings_raw, Mapping):
            self.texts(settings_raw, [*base, "settings"], label, ["settings"], scope)
        if settings is not None and kind is not None:
            dumped = settings.model_dump(mode="json")
            self.texts(dumped, [*base, "settings"], label, ["settings"], scope)
            self.users(settings, kind.user_fields, base, label, scope.constants)
            for sub, msg in kind.check(settings, self.env(code, earlier_types)):
                self.located(base, label, ["settings", *sub], msg)

        if _name_problem(name, "rule"):
            return None
        if len(self.errors) > before:
            return None, kind, settings
        rule = RuleConfig(name=name, type=kind.name, start=start, delay=delay, condition=condition, settings=dumped)
        return rule, kind, settings

    def trigger(
        self, code: str, index: int, raw: Any, scope: PlaceholderScope, names: dict[str, int]
    ) -> TriggerConfig | None:
        base: list[str | int] = ["stages", code, "triggers", index]
        before = len(self.errors)
        head = self.head(base, raw, "trigger", TRIGGER_KEYS, index, code, names, TRIGGER_TYPES)
        if head is None:
            return None
        label, kind = head
        name = raw.get("name")
        if not _name_problem(name, "trigger"):
            names.setdefault(name, index)

        filter_dump: dict[str, Any] | None = None
        if kind is not None:
            model = self.model(kind.filter, raw.get("filter"), "filter", base, label, scope)
            if model is not None:
                filter_dump = model.model_dump(mode="json") or None
                if filter_dump:
                    self.texts(filter_dump, [*base, "filter"], label, ["filter"], scope)
                for key in kind.user_fields:
                    user = getattr(model, key)
                    if user is not None and user not in self.ctx.user_ids:
                        self.located(base, label, ["filter", key], f"user {user} does not exist")
                for sub, msg in model.check(self.env(code, {})):
                    self.located(base, label, ["filter", *sub], msg)
        elif raw.get("filter") is not None and not isinstance(raw.get("filter"), Mapping):
            self.located(base, label, ["filter"], _NOT_AN_OBJECT["filter"])

        condition = self.condition(raw.get("condition"), base, label, scope)

        backwards = raw.get("allow_backwards", False)
        if backwards is None:
            backwards = False
        if not isinstance(backwards, bool):
            self.located(base, label, ["allow_backwards"], "allow_backwards is true or false")
        as_user = raw.get("as_user_id")
        if as_user is not None:
            if isinstance(as_user, bool) or not isinstance(as_user, int):
                self.located(base, label, ["as_user_id"], "as_user_id is a user id (a number)")
            elif as_user not in self.ctx.user_ids:
                self.located(base, label, ["as_user_id"], f"user {as_user} does not exist")

        if len(self.errors) > before:
            return None
        return TriggerConfig(
            name=name, type=kind.name, filter=filter_dump, condition=condition, allow_backwards=backwards,
            as_user_id=as_user,
        )

    # -- shared checks

    def condition(
        self, raw: Any, base: list[str | int], label: str, scope: PlaceholderScope
    ) -> AllOf | AnyOf | ConditionLeaf | None:
        try:
            condition = parse_condition(raw)
        except ConditionInvalid as error:
            for sub, msg in error.problems:
                self.located(base, label, ["condition", *sub], msg)
            condition = None
        if raw is None:
            return None
        for sub, leaf in raw_leaves(raw):
            path = leaf.get("field")
            if isinstance(path, str):
                path = path.strip().removeprefix("{{").removesuffix("}}").strip()
                problem = placeholder_problem(path, scope)
                if problem:
                    self.located(base, label, ["condition", *sub, "field"], f"{path} cannot resolve: {problem}")
            if self.ctx.saving and (blank := blank_value_problem(leaf)) is not None:
                self.located(base, label, ["condition", *sub, "value"], blank)
            if leaf.get("value") is not None:
                self.texts(
                    leaf["value"], [*base, "condition", *sub, "value"], label, ["condition", *sub, "value"], scope
                )
        return condition

    def texts(
        self, value: Any, loc: list[str | int], label: str, shown: list[str | int], scope: PlaceholderScope
    ) -> None:
        for sub, text in _strings(value):
            where = [*shown, *sub]
            full = ".".join(str(part) for part in where)
            if len(text) > MAX_TEXT_LENGTH:
                if not any(error["loc"] == ["body", *loc, *sub] for error in self.errors):  # said by its model
                    self.error([*loc, *sub], f"{label}: {full}: at most {MAX_TEXT_LENGTH} characters")
                continue
            for path in find_placeholders(text):
                problem = placeholder_problem(path, scope)
                if problem:
                    self.error(
                        [*loc, *sub], f"{label}: {full}: placeholder {{{{{path}}}}} cannot resolve: {problem}"
                    )

    def users(
        self, settings: BaseModel, keys: Sequence[str], base: list[str | int], label: str, constants: Mapping[str, Any]
    ) -> None:
        for key in keys:
            value = getattr(settings, key, None)
            values = value if isinstance(value, list) else [value]
            for position, user in enumerate(values):
                sub: list[str | int] = ["settings", key] + ([position] if isinstance(value, list) else [])
                problem = self.user_problem(user, constants)
                if problem:
                    self.located(base, label, sub, problem)

    def user_problem(self, user: Any, constants: Mapping[str, Any]) -> str | None:
        if user is None:
            return None
        if isinstance(user, int):
            return None if user in self.ctx.user_ids else f"user {user} does not exist"
        paths = find_placeholders(str(user))
        if len(paths) == 1 and paths[0].startswith("Constants."):
            try:
                held = resolve(paths[0][len("Constants."):], constants)
            except UnresolvedPlaceholder:
                return None
            if isinstance(held, bool) or not isinstance(held, int):
                return f"constant {paths[0][len('Constants.'):]} holds {held!r}, not a user id"
            if held not in self.ctx.user_ids:
                return f"{{{{{paths[0]}}}}} is user {held}, who does not exist"
        return None

    def env(self, code: str, earlier_types: Mapping[str, str]) -> RuleEnv:
        return RuleEnv(
            entity_type=self.ctx.entity_type,
            stage=code,
            stage_codes=list(self.ctx.stage_codes),
            pipeline_id=self.ctx.pipeline_id,
            pipelines=self.ctx.pipelines,
            templates=frozenset(self.ctx.templates),
            earlier=dict(earlier_types),
            phone_region=self.ctx.phone_region,
            channel_templates=dict(self.ctx.channel_templates),
        )


def _known_results(kind: RuleType | None, settings: BaseModel | None) -> tuple[str, ...] | None:
    """A rule's result names; None (anything goes) when its type or its settings-dependent results are
    unknown, so that one mistake is reported once rather than again at every use."""
    if kind is None or (settings is None and kind.returns_from_settings):
        return None
    return kind.result_names(settings)


def _variable_set_by(rule: Mapping[str, Any], rule_types: Mapping[str, RuleType]) -> str | None:
    """The variable a rule sets, read from its raw settings (for messages about rule order)."""
    kind = rule_types.get(rule.get("type")) if isinstance(rule.get("type"), str) else None
    settings = rule.get("settings")
    if kind is None or not isinstance(settings, Mapping):
        return None
    try:
        return kind.variable_name(kind.settings.model_validate(settings))
    except ValidationError:
        return None


def validate_automation(raw: Any, ctx: ValidationContext) -> AutomationConfig:
    """The automation as a whole, checked against the CRM; raises `AutomationInvalid` with every problem."""
    if ctx.entity_type not in ENTITY_TYPES:
        raise ValueError(f"entity_type is deal or lead, not {ctx.entity_type!r}")
    return _Validation(ctx).run(raw)
