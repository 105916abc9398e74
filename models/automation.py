"""A pipeline's automation: constants, variables, and per stage its rules and triggers.

`validate_automation` checks a whole configuration against the CRM it belongs to (stages, users,
pipelines, templates) and collects every problem, each located like FastAPI's 422 details:
`{"loc": ["body", "stages", "NEW", "rules", 0, "settings", "text"], "msg": "...", "type": "value_error"}`.
The models themselves check only shape, so configurations already stored load without the CRM at hand.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetJsonSchemaHandler,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue

from activities.placeholders import UnresolvedPlaceholder, find_placeholders, resolve, split_path
from models.rule_types import (
    ENTITY_TYPES,
    MAX_TEXT_LENGTH,
    RULE_TYPES,
    TRIGGER_TYPES,
    UNION_TAGS,
    ClockText,
    DateField,
    DurationText,
    RuleEnv,
    RuleType,
    SignedDurationText,
    TriggerType,
)

MAX_RULES_PER_STAGE = 100
MAX_TRIGGERS_PER_STAGE = 100
MAX_NAME_LENGTH = 100
MAX_NAMED_VALUES = 200
MAX_CONDITION_DEPTH = 8
MAX_CONDITION_ITEMS = 100
RULE_KEYS = ("name", "type", "start", "delay", "condition", "settings")
TRIGGER_KEYS = ("name", "type", "filter", "condition", "allow_backwards", "as_user_id")
STARTS = ("on_entry", "after_previous")


class AutomationInvalid(ValueError):
    """The automation has problems; `errors` lists every one as `{"loc", "msg", "type"}`."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(error["msg"] for error in errors))
        self.errors = errors


class ConditionInvalid(ValueError):
    """A condition that does not follow the grammar; `problems` are (location, message) pairs."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(_located(loc, msg) for loc, msg in problems))
        self.problems = problems


class DelayError(ValueError):
    """A delay that cannot be understood; `problems` are (location, message) pairs."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(_located(loc, msg) for loc, msg in problems))
        self.problems = problems


def _located(loc: Sequence[str | int], msg: str) -> str:
    return f"{'.'.join(str(part) for part in loc)}: {msg}" if loc else msg


# -- pydantic errors as (location, message) ------------------------------------------------------

_INTERNAL_LOC = frozenset({"str", "int", "float", "bool", "none", "list", "dict", "decimal", "date", "datetime"})


def _clean_loc(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """Drops the parts of a pydantic location that name union branches rather than keys."""
    return tuple(
        part for part in loc
        if not (isinstance(part, str) and (part in UNION_TAGS or part in _INTERNAL_LOC or "[" in part))
    )


def _problems(error: ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    merged: dict[tuple[str | int, ...], list[str]] = {}
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        messages = merged.setdefault(_clean_loc(item["loc"]), [])
        if message not in messages:
            messages.append(message)
    return [(loc, " or ".join(messages)) for loc, messages in merged.items()]


# -- delays --------------------------------------------------------------------------------------


class Delay(BaseModel):
    """When a rule is due, counted from its start (stage entry, or the previous rule's end).

    Accepted forms: `"24h"` (same as `{"after": "24h"}`); `{"after": "2h", "business_hours": true}`;
    `{"field": "close_date", "offset": "-1d"}`; `{"at": "14:00"}`; `{"at": "14:00", "field": "close_date"}`;
    `{"after": "1d", "at": "09:00"}`. Serialized back to the short string form when only `after` is set.
    """

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": ["24h", {"after": "2h", "business_hours": True}, {"field": "close_date", "offset": "-1d"},
                         {"at": "14:00"}]
        },
    )
    after: DurationText | None = None
    """A duration from the start: 30s, 15m, 24h, 3d, 2w, 6mo, 1y (parts combine: 1d12h)."""
    field: DateField | None = None
    """An item date field: close_date, created_at or Fields.<custom field>."""
    offset: SignedDurationText | None = None
    """Added to `field`; negative means before (e.g. -1d)."""
    at: ClockText | None = None
    """A clock time (HH:MM) in the company time zone."""
    business_hours: bool = False
    """Count working time only, and land inside working hours."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        as_object = handler(core_schema)
        return {"anyOf": [{"type": "string", "description": "a duration, same as {\"after\": ...}"}, as_object]}

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"after": value}
        if isinstance(value, (Mapping, Delay)):
            return value
        raise ValueError(
            'a delay is null, a duration such as "24h", or an object with after, field, offset, at, business_hours'
        )

    @model_validator(mode="after")
    def _consistent(self) -> Delay:
        if self.offset is not None and self.field is None:
            raise ValueError("offset is counted from a date field: give field too (e.g. close_date)")
        if self.after is not None and self.field is not None:
            raise ValueError("with field, give the distance as offset (e.g. -1d), not after")
        if self.after is None and self.field is None and self.at is None:
            raise ValueError("a delay needs after, field or at")
        return self

    @model_serializer(mode="wrap")
    def _compact(self, handler: Any) -> str | dict[str, Any]:
        data = handler(self)
        if self.after is not None and self.field is None and self.at is None and not self.business_hours:
            return self.after
        return {key: value for key, value in data.items() if value is not None and value is not False}


def parse_delay(raw: Any) -> Delay | None:
    """A delay from its JSON form (None stays None); raises `DelayError` naming the part at fault."""
    if raw is None or isinstance(raw, Delay):
        return raw
    try:
        return Delay.model_validate(raw)
    except ValidationError as error:
        raise DelayError(_problems(error)) from None


# -- conditions ----------------------------------------------------------------------------------

ConditionOp = Literal[
    "=", "!=", ">", ">=", "<", "<=", "in", "not in", "contains", "not contains", "empty", "not empty", "between"
]
CONDITION_OPS: tuple[str, ...] = get_args(ConditionOp)
NO_VALUE_OPS = frozenset({"empty", "not empty"})
LIST_OPS = frozenset({"in", "not in"})
_OP_ALIASES = {
    "==": "=", "<>": "!=", "not_in": "not in", "not_contains": "not contains", "not_empty": "not empty",
    "is empty": "empty", "is not empty": "not empty",
}


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


class ConditionLeaf(BaseModel):
    """One comparison: `{"field": "Deal.Amount", "op": ">", "value": 1000}`.

    `field` is a placeholder path (without braces). `value` may hold placeholders such as
    `"{{Constants.MinAmount}}"`. `in`/`not in` take a list, `between` takes `[low, high]`,
    `empty`/`not empty` take no value.
    """

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"field": "Deal.Amount", "op": ">", "value": 1000}]}
    )
    field: Annotated[str, Field(min_length=1, max_length=300)]
    op: ConditionOp
    value: Any = None

    @field_validator("field", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("{{") and text.endswith("}}"):
            text = text[2:-2].strip()
        try:
            return ".".join(split_path(text))
        except UnresolvedPlaceholder:
            raise ValueError(f"{value!r} is not a field path such as Deal.Amount") from None

    @field_validator("op", mode="before")
    @classmethod
    def _op(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = " ".join(value.lower().split())
            text = _OP_ALIASES.get(text, text)
            if text not in CONDITION_OPS:
                raise ValueError(f"unknown operator {value!r}; use {', '.join(CONDITION_OPS)}")
            return text
        return value

    @model_validator(mode="after")
    def _value_shape(self) -> ConditionLeaf:
        op, value = self.op, self.value
        if op in NO_VALUE_OPS:
            if value is not None:
                raise ValueError(f"op {op!r} takes no value")
        elif op in LIST_OPS:
            if not isinstance(value, list) or not all(_scalar(item) for item in value):
                raise ValueError(f'op {op!r} needs a list of values, e.g. ["USD", "EUR"]')
        elif op == "between":
            if not isinstance(value, list) or len(value) != 2 or not all(_scalar(item) for item in value):
                raise ValueError("op 'between' needs value [low, high]")
            low, high = value
            if _is_number(low) and _is_number(high) and float(low) > float(high):
                raise ValueError(f"between: low {low} is above high {high}")
        elif value is None:
            raise ValueError(f"op {op!r} needs a value")
        elif not _scalar(value):
            raise ValueError(f"op {op!r} needs a single value (text, number or true/false), not a list or object")
        return self

    @model_serializer(mode="wrap")
    def _without_empty_value(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("value") is None:
            data.pop("value", None)
        return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class AllOf(BaseModel):
    """True when every condition in the list is true."""

    model_config = ConfigDict(extra="forbid")
    all: list[Condition] = Field(min_length=1, max_length=MAX_CONDITION_ITEMS)


class AnyOf(BaseModel):
    """True when at least one condition in the list is true."""

    model_config = ConfigDict(extra="forbid")
    any: list[Condition] = Field(min_length=1, max_length=MAX_CONDITION_ITEMS)


def _condition_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "all" if "all" in value else "any" if "any" in value else "leaf"
    if isinstance(value, AllOf):
        return "all"
    return "any" if isinstance(value, AnyOf) else "leaf"


Condition = Annotated[
    Union[Annotated[AllOf, Tag("all")], Annotated[AnyOf, Tag("any")], Annotated[ConditionLeaf, Tag("leaf")]],
    Discriminator(_condition_kind),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()
_CONDITION = TypeAdapter(Condition)

_CONDITION_HINT = 'a condition is {"all": [...]}, {"any": [...]} or {"field": "Deal.Amount", "op": ">", "value": 1000}'


def _condition_problems(raw: Any, loc: tuple[str | int, ...], depth: int) -> list[tuple[tuple[str | int, ...], str]]:
    if not isinstance(raw, Mapping):
        return [(loc, _CONDITION_HINT)]
    groups = [key for key in ("all", "any") if key in raw]
    if not groups:
        try:
            ConditionLeaf.model_validate(raw)
        except ValidationError as error:
            return [(loc + sub, msg) for sub, msg in _problems(error)]
        return []
    if len(raw) != 1:
        return [(loc, f"a group has exactly one key, all or any; found {', '.join(map(str, raw))}")]
    key = groups[0]
    items = raw[key]
    if depth >= MAX_CONDITION_DEPTH:
        return [(loc, f"conditions nest at most {MAX_CONDITION_DEPTH} groups deep")]
    if not isinstance(items, list) or not items:
        return [(loc + (key,), f"{key} needs a non-empty list of conditions")]
    if len(items) > MAX_CONDITION_ITEMS:
        return [(loc + (key,), f"a group holds at most {MAX_CONDITION_ITEMS} conditions")]
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for index, item in enumerate(items):
        problems += _condition_problems(item, loc + (key, index), depth + 1)
    return problems


def parse_condition(raw: Any) -> AllOf | AnyOf | ConditionLeaf | None:
    """A condition from its JSON form (None stays None); raises `ConditionInvalid` listing every problem."""
    if raw is None or isinstance(raw, (AllOf, AnyOf, ConditionLeaf)):
        return raw
    problems = _condition_problems(raw, (), 0)
    if problems:
        raise ConditionInvalid(problems)
    return _CONDITION.validate_python(raw)


def iter_leaves(
    condition: AllOf | AnyOf | ConditionLeaf, loc: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], ConditionLeaf]]:
    """Every comparison in a condition, with its location."""
    if isinstance(condition, ConditionLeaf):
        yield loc, condition
        return
    key = "all" if isinstance(condition, AllOf) else "any"
    for index, item in enumerate(getattr(condition, key)):
        yield from iter_leaves(item, loc + (key, index))


# -- the configuration ---------------------------------------------------------------------------


class RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: str
    start: Literal["on_entry", "after_previous"] = "on_entry"
    delay: Delay | None = None
    condition: Condition | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    """Validated by the type's settings model; stored with defaults filled in."""

    def rule_type(self, custom: Mapping[str, RuleType] | None = None) -> RuleType | None:
        return RULE_TYPES.get(self.type) or (custom or {}).get(self.type)

    def typed_settings(self, custom: Mapping[str, RuleType] | None = None) -> BaseModel:
        """The settings as the type's pydantic model (raises KeyError for an unknown type)."""
        kind = self.rule_type(custom)
        if kind is None:
            raise KeyError(self.type)
        return kind.settings.model_validate(self.settings)


class TriggerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: str
    filter: dict[str, Any] | None = None
    condition: Condition | None = None
    allow_backwards: bool = False
    as_user_id: int | None = None


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
    custom_rule_types: Mapping[str, RuleType] = field(default_factory=dict)
    pipeline_id: int | None = None
    """The pipeline being configured, when known."""

    @property
    def entity_root(self) -> str:
        return "Deal" if self.entity_type == "deal" else "Lead"


# -- placeholders at save time -------------------------------------------------------------------

_ANY = object()
_PERSON: dict[str, Any] = {"Id": None, "Name": None, "Email": None, "Phone": None}
ITEM_TREE: dict[str, Any] = {
    "Id": None,
    "Title": None,
    "Amount": None,
    "Currency": None,
    "Stage": None,
    "StageName": None,
    "Pipeline": None,
    "PipelineId": None,
    "CloseDate": None,
    "CreatedAt": None,
    "Fields": _ANY,
    "Responsible": {**_PERSON, "Supervisor": dict(_PERSON)},
    "Contact": dict(_PERSON),
    "Company": dict(_PERSON),
}
"""The item part of the data tree (`Deal.…` / `Lead.…`); None marks a value, `_ANY` free custom fields."""


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
        if node is _ANY:
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
    if node is _ANY:
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
        self.rule_types: dict[str, RuleType] = {**RULE_TYPES, **ctx.custom_rule_types}

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
        if not isinstance(raw, Mapping):
            self.error(base, f"stage {code!r}, rule {index}: a rule is an object with {', '.join(RULE_KEYS)}")
            return None
        name, type_name = raw.get("name"), raw.get("type")
        label = f"stage {code!r}, rule {index} {name!r}" + (f" ({type_name})" if isinstance(type_name, str) else "")
        before = len(self.errors)
        for key in raw:
            if key not in RULE_KEYS:
                self.located(base, label, [key], f"unknown key; a rule has {', '.join(RULE_KEYS)}")

        problem = _name_problem(name, "rule")
        if problem:
            self.located(base, label, ["name"], problem)
        elif name in earlier_types:
            first = list(earlier_types).index(name)
            self.located(base, label, ["name"], f"another rule of this stage is named {name!r} (rule {first})")

        kind = self.rule_types.get(type_name) if isinstance(type_name, str) else None
        if kind is None:
            known = ", ".join(self.rule_types)
            self.located(base, label, ["type"], f"unknown rule type {type_name!r}; known types: {known}")
        elif self.ctx.entity_type not in kind.entities:
            self.located(
                base, label, ["type"], f"{type_name} works on {' and '.join(kind.entities)} pipelines only"
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
        if settings_raw is None:
            settings_raw = {}
        settings = None
        if not isinstance(settings_raw, Mapping):
            self.located(base, label, ["settings"], "settings are an object")
        elif kind is not None:
            try:
                settings = kind.settings.model_validate(settings_raw)
            except ValidationError as error:
                for sub, msg in _problems(error):
                    self.located(base, label, ["settings", *sub], msg)
        dumped: dict[str, Any] = {}
        if settings is None and isinstance(settings_raw, Mapping):
            self.texts(settings_raw, [*base, "settings"], label, ["settings"], scope)
        if settings is not None and kind is not None:
            dumped = settings.model_dump(mode="json")
            self.texts(dumped, [*base, "settings"], label, ["settings"], scope)
            self.users(settings, kind.user_fields, base, label, scope.constants)
            if kind.check is not None:
                env = self.env(code, earlier_types)
                for sub, msg in kind.check(settings, env):
                    self.located(base, label, ["settings", *sub], msg)

        if _name_problem(name, "rule"):
            return None
        if len(self.errors) > before:
            return None, kind, settings
        rule = RuleConfig(name=name, type=type_name, start=start, delay=delay, condition=condition, settings=dumped)
        return rule, kind, settings

    def trigger(
        self, code: str, index: int, raw: Any, scope: PlaceholderScope, names: dict[str, int]
    ) -> TriggerConfig | None:
        base: list[str | int] = ["stages", code, "triggers", index]
        if not isinstance(raw, Mapping):
            self.error(base, f"stage {code!r}, trigger {index}: a trigger is an object with {', '.join(TRIGGER_KEYS)}")
            return None
        name, type_name = raw.get("name"), raw.get("type")
        label = f"stage {code!r}, trigger {index} {name!r}" + (f" ({type_name})" if isinstance(type_name, str) else "")
        before = len(self.errors)
        for key in raw:
            if key not in TRIGGER_KEYS:
                self.located(base, label, [key], f"unknown key; a trigger has {', '.join(TRIGGER_KEYS)}")
        problem = _name_problem(name, "trigger")
        if problem:
            self.located(base, label, ["name"], problem)
        elif name in names:
            self.located(base, label, ["name"], f"another trigger of this stage is named {name!r} (trigger {names[name]})")
        else:
            names[name] = index

        kind: TriggerType | None = TRIGGER_TYPES.get(type_name) if isinstance(type_name, str) else None
        if kind is None:
            known = ", ".join(TRIGGER_TYPES)
            self.located(base, label, ["type"], f"unknown trigger type {type_name!r}; known types: {known}")

        filter_raw = raw.get("filter")
        filter_dump: dict[str, Any] | None = None
        if filter_raw is not None and not isinstance(filter_raw, Mapping):
            self.located(base, label, ["filter"], "the filter is an object")
        elif kind is not None:
            try:
                model = kind.filter.model_validate(filter_raw or {})
            except ValidationError as error:
                for sub, msg in _problems(error):
                    self.located(base, label, ["filter", *sub], msg)
            else:
                filter_dump = model.model_dump(mode="json") or None
                if filter_dump:
                    self.texts(filter_dump, [*base, "filter"], label, ["filter"], scope)
                for key in kind.user_fields:
                    user = getattr(model, key)
                    if user is not None and user not in self.ctx.user_ids:
                        self.located(base, label, ["filter", key], f"user {user} does not exist")
                if kind.check is not None:
                    for sub, msg in kind.check(model, self.env(code, {})):
                        self.located(base, label, ["filter", *sub], msg)

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
            name=name, type=type_name, filter=filter_dump, condition=condition, allow_backwards=backwards,
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
        for sub, leaf in _raw_leaves(raw):
            path = leaf.get("field")
            if isinstance(path, str):
                path = path.strip().removeprefix("{{").removesuffix("}}").strip()
                problem = placeholder_problem(path, scope)
                if problem:
                    self.located(base, label, ["condition", *sub, "field"], f"{path} cannot resolve: {problem}")
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
        )


def _raw_leaves(
    raw: Any, loc: tuple[str | int, ...] = (), depth: int = 0
) -> Iterator[tuple[tuple[str | int, ...], Mapping[str, Any]]]:
    """The comparisons of a condition as written, even when other parts of it are malformed."""
    if not isinstance(raw, Mapping) or depth > MAX_CONDITION_DEPTH:
        return
    groups = [key for key in ("all", "any") if key in raw]
    if not groups:
        yield loc, raw
        return
    for key in groups:
        if isinstance(raw[key], list):
            for index, item in enumerate(raw[key][:MAX_CONDITION_ITEMS]):
                yield from _raw_leaves(item, loc + (key, index), depth + 1)


def _known_results(kind: RuleType | None, settings: BaseModel | None) -> tuple[str, ...] | None:
    """A rule's result names; None (anything goes) when its type or its settings-dependent results are
    unknown, so that one mistake is reported once rather than again at every use."""
    if kind is None or (settings is None and kind.dynamic_returns is not None):
        return None
    return kind.result_names(settings)


def _variable_set_by(rule: Mapping[str, Any], rule_types: Mapping[str, RuleType]) -> str | None:
    """The variable a rule sets, read from its raw settings (for messages about rule order)."""
    kind = rule_types.get(rule.get("type")) if isinstance(rule.get("type"), str) else None
    settings = rule.get("settings")
    if kind is None or kind.sets_variable is None or not isinstance(settings, Mapping):
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
