"""What every rule type is: its catalogue entry, its settings model, its save-time checks and its action.

A rule type is a subclass of `RuleType` that lives whole in the module of its group, its settings model beside
it, and one registry lists them all (README, "Adding a rule type"). Nothing here does I/O: the save-time checks
(`check`) see a `RuleEnv`, a picture of the CRM that the caller builds, and `run` is implemented where the
type is defined.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from models.domain.fields import ENTITY_TYPES
from models.domain.problems import Problem

if TYPE_CHECKING:
    from collections.abc import Awaitable

GROUPS: dict[str, str] = {
    "documents": "Documents",
    "monitoring": "Employee monitoring and control",
    "repeat_sales": "Repeat sales",
    "communication": "Client communication",
    "helpers": "Helpers and custom rules",
    "custom": "App rules",
}
"""Rule groups as the catalogue shows them; the built-in types of group G are defined in a module named G."""

S = TypeVar("S", bound=BaseModel)


# -- the context a type's own checks see ----------------------------------------------------------


@dataclass(frozen=True)
class RuleEnv:
    """What a rule's (or trigger's) save-time checks may look at."""

    entity_type: str
    stage: str
    stage_codes: Sequence[str]
    pipeline_id: int | None = None
    pipelines: Mapping[int, tuple[str, Sequence[str]]] = field(default_factory=dict)
    templates: Set[str] = frozenset()
    earlier: Mapping[str, str] = field(default_factory=dict)
    """Earlier rules of the same stage: name → type."""
    phone_region: str = "US"
    """The region a phone number without a country code is read in when the rule runs."""
    channel_templates: Mapping[str, str] = field(default_factory=dict)
    """The approved WhatsApp templates a rule may name, with their languages."""

    def pipeline_stages(self, pipeline_id: int | None) -> Sequence[str] | None:
        if pipeline_id is None or pipeline_id == self.pipeline_id:
            return self.stage_codes
        found = self.pipelines.get(pipeline_id)
        return found[1] if found else None

    def default_lead_pipeline(self) -> int | None:
        leads = sorted(pid for pid, (entity, _stages) in self.pipelines.items() if entity == "lead")
        return leads[0] if leads else None


def template_problem(template: str | None, env: RuleEnv, loc: tuple[str | int, ...] = ("template",)) -> list[Problem]:
    if template is None or template in env.templates:
        return []
    known = ", ".join(sorted(env.templates)) or "none yet"
    return [(loc, f"document template {template!r} does not exist (templates: {known})")]


def stage_problem(stage: str | None, stages: Sequence[str], loc: tuple[str | int, ...], where: str) -> list[Problem]:
    if stage is None or stage in stages:
        return []
    return [(loc, f"stage {stage!r} is not a stage of {where} (stages: {', '.join(stages)})")]


def pipeline_problem(pipeline_id: int, env: RuleEnv, entity: str | None) -> tuple[Sequence[str] | None, list[Problem]]:
    if pipeline_id == env.pipeline_id:
        return env.stage_codes, ([] if entity in (None, env.entity_type) else [
            (("pipeline_id",), f"pipeline {pipeline_id} holds {env.entity_type}s, not {entity}s")
        ])
    found = env.pipelines.get(pipeline_id)
    if found is None:
        return None, [(("pipeline_id",), f"pipeline {pipeline_id} does not exist")]
    kind, stages = found
    if entity is not None and kind != entity:
        return None, [(("pipeline_id",), f"pipeline {pipeline_id} holds {kind}s, not {entity}s")]
    return stages, []


# -- rule types ----------------------------------------------------------------------------------


class RuleType(ABC, Generic[S]):
    """One kind of rule action.

    A subclass sets the catalogue entry as class attributes and implements `run(ctx)`, which receives a
    context whose `settings` is an instance of `settings`, validated. `returns` are the result values later
    rules read as `{{Rule.<name>.<value>}}`; `private_returns` among them carry a capability token (a link
    that opens or signs a document): they stay in the database, and the workflow history holds a reference in
    their place. `user_fields` are settings keys holding user ids (or lists of them) checked at save time.
    `local` types only touch the database, so the worker runs them without a round trip to the Temporal server.
    `auxiliary` types make no visible change: they hand values to later rules.
    """

    name: str
    group: str
    title: str
    description: str
    settings: type[S]
    auxiliary: bool = False
    local: bool = False
    returns: tuple[str, ...] = ()
    returns_from_settings: bool = False
    """True when `result_names` depends on the settings (and `returns` are the fixed ones)."""
    private_returns: tuple[str, ...] = ()
    user_fields: tuple[str, ...] = ()
    entities: tuple[str, ...] = ENTITY_TYPES
    handler_url: str | None = None
    """For custom rule types: where their rules are sent to run."""

    def check(self, settings: S, env: RuleEnv) -> Iterable[Problem]:
        """Save-time problems beyond the settings model's own (pipelines, stages, templates, earlier rules)."""
        return ()

    def result_names(self, settings: S | None = None) -> tuple[str, ...]:
        return self.returns

    def variable_name(self, settings: S) -> str | None:
        """The variable this rule sets for the rules after it, if any."""
        return None

    @abstractmethod
    def run(self, ctx: Any) -> Awaitable[dict[str, Any]]:
        """The rule's effect; its results as a dict of `returns`. Every concrete type implements it."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able description with the settings JSON schema, for `GET /rule-types`."""
        return {
            "name": self.name,
            "group": self.group,
            "group_title": GROUPS.get(self.group, self.group),
            "title": self.title,
            "description": self.description,
            "auxiliary": self.auxiliary,
            "local": self.local,
            "returns": list(self.returns),
            "returns_from_settings": self.returns_from_settings,
            "user_fields": list(self.user_fields),
            "entities": list(self.entities),
            "custom": self.handler_url is not None,
            "settings_schema": self.settings.model_json_schema(),
        }


def rule_type_catalogue(*registries: Mapping[str, RuleType]) -> list[dict[str, Any]]:
    """Every rule type of the registries in order, as JSON-able dicts (for `GET /rule-types`)."""
    return [kind.describe() for registry in registries for kind in registry.values()]
