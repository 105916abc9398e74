"""The catalogue of rule and trigger types: each type's settings model, results and save-time checks.

A rule type's whole story is its settings model here, its effect in `activities/<group>.py` and its line
in the catalogue the workflow dispatches on. Settings models forbid unknown fields and carry an example
so that a client can build a form from `GET /rule-types`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal, Optional
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from activities.placeholders import PLACEHOLDER_RE, is_single_placeholder
from activities.requisites import InvalidRequisite, field_check
from activities.requisites import check_value as check_requisite
from activities.timing import CUSTOM_FIELD_PREFIX, is_date_field, parse_clock, split_duration

MAX_TEXT_LENGTH = 10_000
ENTITY_TYPES = ("deal", "lead")

GROUPS: dict[str, str] = {
    "documents": "Documents",
    "monitoring": "Employee monitoring and control",
    "repeat_sales": "Repeat sales",
    "communication": "Client communication",
    "helpers": "Helpers and custom rules",
    "custom": "App rules",
}

UPDATABLE_FIELDS = ("title", "amount", "currency", "close_date")
"""Standard item fields that `update_fields` may set (besides `Fields.<custom>`)."""
WATCHABLE_FIELDS = (*UPDATABLE_FIELDS, "responsible_id", "contact_id", "company_id")
"""Item fields that `wait` and the `field_changed` trigger may watch (besides `Fields.<custom>`)."""
TASK_STATUSES = ("pending", "in_progress", "completed", "deferred")
RESERVED_TIMELINE_KINDS = (
    "stage_changed", "rule_scheduled", "rule_done", "rule_skipped", "rule_cancelled", "rule_failed",
)
REQUISITE_RETURNS = (
    "template", "name", "tax_id", "registration_number", "vat_id", "first_name", "last_name", "phone", "email",
    "address", "street", "city", "zip", "region", "country",
    "bank_name", "bank_account", "bank_code", "iban", "swift",
)
"""Values `get_requisites` hands to later rules: requisite fields, the chosen address, bank details (flat)."""
BUILT_IN_EVENTS = (
    "payment_received", "task_status", "document_opened", "document_signed", "email_opened", "link_clicked",
    "field_changed", "responsible_changed", "webhook",
)

Problem = tuple[tuple[str | int, ...], str]
"""A save-time problem: the location inside the settings (or filter) and the message."""


def _config(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", use_attribute_docstrings=True, json_schema_extra={"examples": list(examples)})


# -- field types ---------------------------------------------------------------------------------


def _user_ref(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a user id is a number")
    if isinstance(value, int):
        if value < 1:
            raise ValueError("a user id is a positive number")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
        if is_single_placeholder(text):
            return text
    raise ValueError("give a user id (a number) or one placeholder such as {{Constants.Courier}}")


UserRef = Annotated[
    int | str,
    BeforeValidator(_user_ref),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\s*\{\{[^{}]+\}\}\s*$"}],
            "description": "a user id, or one placeholder that yields it (e.g. {{Constants.Courier}})",
        }
    ),
]
"""A user id, or a single placeholder resolved when the rule runs (`placeholders.render_value`)."""


def _duration_text(value: str) -> str:
    if split_duration(value).negative:
        raise ValueError(f"{value!r}: the duration must not be negative")
    return "".join(value.split()).lstrip("+")


def _signed_duration_text(value: str) -> str:
    split_duration(value)
    return "".join(value.split())


def _clock_text(value: str) -> str:
    return parse_clock(value).strftime("%H:%M")


def _date_field(value: str) -> str:
    if not is_date_field(value):
        raise ValueError(f"{value!r} is not a date field; use close_date, created_at or Fields.<custom field>")
    return value


def _watchable_field(value: str) -> str:
    if value in WATCHABLE_FIELDS or (value.startswith(CUSTOM_FIELD_PREFIX) and value[len(CUSTOM_FIELD_PREFIX):]):
        return value
    raise ValueError(f"{value!r} is not an item field; use {', '.join(WATCHABLE_FIELDS)} or Fields.<custom field>")


def _number_or_placeholder(value: float | str) -> float | str:
    if isinstance(value, str):
        text = value.strip()
        if PLACEHOLDER_RE.search(text):
            return text
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{value!r} is neither a number nor a placeholder such as {{{{Deal.Amount}}}}") from None
    return value


def _moment_text(value: str) -> str:
    text = value.strip()
    if PLACEHOLDER_RE.search(text):
        return text
    if text.startswith("+"):
        _duration_text(text)
        return text
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{value!r}: give a relative time (+3d), an ISO date or date-time (2025-06-01, 2025-06-01T14:00) "
            'or {"field": "close_date", "offset": "-1d"}'
        ) from None
    return text


DurationText = Annotated[str, StringConstraints(max_length=40), AfterValidator(_duration_text)]
SignedDurationText = Annotated[str, StringConstraints(max_length=40), AfterValidator(_signed_duration_text)]
ClockText = Annotated[str, StringConstraints(max_length=5), AfterValidator(_clock_text)]
DateField = Annotated[str, StringConstraints(max_length=100), AfterValidator(_date_field)]
WatchableField = Annotated[str, StringConstraints(max_length=100), AfterValidator(_watchable_field)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH)]
OptionalText = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
TemplateCode = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")]
StageCode = Annotated[str, StringConstraints(min_length=1, max_length=50)]
PipelineId = Annotated[int, Field(ge=1)]
NumberOrPlaceholder = Annotated[float | str, AfterValidator(_number_or_placeholder)]
RuleName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
RequisiteEntity = Literal["contact", "company"]
RequisiteTemplate = Literal["organization", "sole_proprietor", "individual"]
AddressType = Literal["legal", "actual", "other"]
Scalar = str | int | float | bool | None


class FieldMoment(BaseModel):
    """A moment counted from a date field of the item."""

    model_config = _config({"field": "close_date", "offset": "-1d", "at": "10:00"})
    field: DateField
    offset: SignedDurationText | None = None
    at: ClockText | None = None
    business_hours: bool = False


class DaysAhead(BaseModel):
    """A day counted from today (0 = today), optionally at a clock time in the company time zone."""

    model_config = _config({"in_days": 1, "at": "14:00"})
    in_days: int = Field(ge=0, le=3650)
    at: ClockText | None = None


def _moment_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "<text>"
    if isinstance(value, Mapping):
        return "<in_days>" if "in_days" in value else "<field>"
    if isinstance(value, (FieldMoment, DaysAhead)):
        return "<field>" if isinstance(value, FieldMoment) else "<in_days>"
    return None


Moment = Annotated[
    Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_moment_text), Tag("<text>")]
    | Annotated[FieldMoment, Tag("<field>")]
    | Annotated[DaysAhead, Tag("<in_days>")],
    Discriminator(
        _moment_kind,
        custom_error_type="moment",
        custom_error_message='give "+3d", an ISO date or date-time, {"in_days": 1, "at": "14:00"} '
        'or {"field": "close_date", "offset": "-1d"}',
    ),
]
"""A deadline or activity date; the engine computes it with `activities.timing.compute_deadline`."""

UNION_TAGS = frozenset({"<text>", "<field>", "<in_days>"})


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

    def pipeline_stages(self, pipeline_id: int | None) -> Sequence[str] | None:
        if pipeline_id is None or pipeline_id == self.pipeline_id:
            return self.stage_codes
        found = self.pipelines.get(pipeline_id)
        return found[1] if found else None

    def default_lead_pipeline(self) -> int | None:
        leads = sorted(pid for pid, (entity, _stages) in self.pipelines.items() if entity == "lead")
        return leads[0] if leads else None


def _template_problem(template: str | None, env: RuleEnv, loc: tuple[str | int, ...] = ("template",)) -> list[Problem]:
    if template is None or template in env.templates:
        return []
    known = ", ".join(sorted(env.templates)) or "none yet"
    return [(loc, f"document template {template!r} does not exist (templates: {known})")]


def _stage_problem(stage: str | None, stages: Sequence[str], loc: tuple[str | int, ...], where: str) -> list[Problem]:
    if stage is None or stage in stages:
        return []
    return [(loc, f"stage {stage!r} is not a stage of {where} (stages: {', '.join(stages)})")]


def _pipeline_problem(pipeline_id: int, env: RuleEnv, entity: str | None) -> tuple[Sequence[str] | None, list[Problem]]:
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


# -- documents -----------------------------------------------------------------------------------


class DocumentLine(BaseModel):
    model_config = _config({"name": "Sofa", "quantity": 1, "unit": "pcs", "price": "{{Deal.Amount}}", "tax": 23})
    name: ShortText
    quantity: NumberOrPlaceholder = 1
    unit: Annotated[str, StringConstraints(max_length=20)] | None = None
    price: NumberOrPlaceholder
    tax: NumberOrPlaceholder = 0
    """Tax rate in percent."""


class CreateDocumentSettings(BaseModel):
    model_config = _config(
        {
            "template": "invoice",
            "my_company": True,
            "with_signature_and_stamp": True,
            "public_link": True,
            "wait_for_pdf": True,
            "fields": {"DocumentTitle": "Invoice for {{Deal.Title}}", "DeliveryAddress": "{{Rule.addr.address}}"},
        }
    )
    template: TemplateCode
    my_company: bool = True
    with_signature_and_stamp: bool = False
    public_link: bool = False
    wait_for_pdf: bool = False
    fields: dict[Identifier, OptionalText] = Field(default_factory=dict, max_length=100)
    """Extra document fields (placeholders allowed); `DocumentTitle` sets the document's title."""
    lines: list[DocumentLine] | None = Field(default=None, max_length=200)
    """Default: the item's products, else one line with the item's title and amount."""


def _check_create_document(settings: CreateDocumentSettings, env: RuleEnv) -> list[Problem]:
    return _template_problem(settings.template, env)


class SendForSignatureSettings(BaseModel):
    """The company's signer is a user (`signer_user_id`, who needs an e-mail address) or a typed
    `signer_name` with `signer_email`; the client is the item's contact (else company), reached by
    `client_channel`. Both get a one-time signing link."""

    model_config = _config(
        {"template": "contract", "signer_user_id": 1, "client_channel": "email"},
        {"template": "contract", "signer_name": "{{Constants.Director}}", "signer_email": "director@shop.example",
         "client_channel": "sms", "fields": {"DocumentTitle": "Contract for {{Deal.Title}}"},
         "link_expires_days": 14},
    )
    template: TemplateCode
    signer_user_id: UserRef | None = None
    signer_name: ShortText | None = None
    signer_email: Annotated[str, StringConstraints(max_length=200)] | None = None
    client_channel: Literal["email", "sms"] = "email"
    with_signature_and_stamp: bool = False
    public_link: bool = False
    fields: dict[Identifier, OptionalText] = Field(default_factory=dict, max_length=100)
    lines: list[DocumentLine] | None = Field(default=None, max_length=200)
    link_expires_days: int = Field(default=30, ge=1, le=365)
    """How many days the signing links stay open; after that they answer 404 like an unknown link."""

    @field_validator("signer_email")
    @classmethod
    def _signer_email(cls, value: str | None) -> str | None:
        if value is None or PLACEHOLDER_RE.search(value):
            return value
        if not _EMAIL.match(value.strip()):
            raise ValueError(f"{value.strip()!r} is not an e-mail address; give one or a placeholder")
        return value.strip()

    @model_validator(mode="after")
    def _one_signer(self) -> SendForSignatureSettings:
        if (self.signer_user_id is None) == (self.signer_name is None):
            raise ValueError("give the company's signer: signer_user_id or signer_name (one of them)")
        if self.signer_name is not None and self.signer_email is None:
            raise ValueError("signer_name needs signer_email: the signing link goes to that address")
        if self.signer_user_id is not None and self.signer_email is not None:
            raise ValueError("signer_email goes with signer_name; a user signer gets the link at the user's e-mail")
        return self


def _check_send_for_signature(settings: SendForSignatureSettings, env: RuleEnv) -> list[Problem]:
    return _template_problem(settings.template, env)


_REQUISITE_KEY = re.compile(r"^(?:address\.|bank\.)?[a-z][a-z0-9_]{0,63}$")


class ChangeRequisitesSettings(BaseModel):
    """`fields` keys: a requisite field (`tax_id`), `address.<field>` (of `address_type`) or `bank.<field>`."""

    model_config = _config(
        {
            "entity": "company",
            "template": "organization",
            "address_type": "actual",
            "fields": {"tax_id": "{{Deal.Fields.tax_id}}", "address.city": "{{Variables.City}}"},
        }
    )
    entity: RequisiteEntity
    template: RequisiteTemplate
    address_type: AddressType | None = None
    fields: dict[str, Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)] | float | int | bool | None] = Field(
        min_length=1, max_length=100
    )

    @field_validator("fields")
    @classmethod
    def _keys(cls, fields: dict[str, Any]) -> dict[str, Any]:
        for key in fields:
            if not _REQUISITE_KEY.match(key):
                raise ValueError(
                    f"{key!r} is not a requisite field; use a lower-case name (tax_id), address.<name> or bank.<name>"
                )
        return fields

    @model_validator(mode="after")
    def _address(self) -> ChangeRequisitesSettings:
        if self.address_type is None and any(key.startswith("address.") for key in self.fields):
            raise ValueError("address.<field> values need address_type (legal, actual or other)")
        return self


def _check_change_requisites(settings: ChangeRequisitesSettings, env: RuleEnv) -> list[Problem]:
    problems: list[Problem] = []
    for key, value in settings.fields.items():
        try:
            field_check(settings.template, key)
            if not _has_placeholder(value):
                check_requisite(settings.template, key, value)
        except KeyError as error:
            problems.append((("fields", key), str(error.args[0])))
        except InvalidRequisite as error:
            problems.append((("fields", key), f"{key}: {error}"))
    return problems


def _has_placeholder(value: Any) -> bool:
    return isinstance(value, str) and PLACEHOLDER_RE.search(value) is not None


class GetRequisitesSettings(BaseModel):
    model_config = _config({"entity": "contact", "template": None, "address_type": "actual", "fields": ["passport"]})
    entity: RequisiteEntity
    template: RequisiteTemplate | None = None
    address_type: AddressType = "legal"
    fields: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] = Field(
        default_factory=list, max_length=100
    )
    """Further requisite field names to hand on, besides the standard ones."""


def _requisite_returns(settings: GetRequisitesSettings) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*REQUISITE_RETURNS, *settings.fields)))


# -- employee monitoring and control -------------------------------------------------------------


class NotifySupervisorSettings(BaseModel):
    model_config = _config(
        {"text": "{{Deal.Responsible.Name}} has not moved {{Deal.Title}} ({{Deal.Amount}}) in 24 hours"}
    )
    text: Text
    recipient_ids: list[UserRef] | None = Field(default=None, min_length=1, max_length=100)
    """Default: the supervisor of the item's responsible."""
    email: bool = False
    """Also e-mail the recipients that have an e-mail address."""


class AddTimelineEntrySettings(BaseModel):
    model_config = _config({"text": "{{Deal.Responsible.Name}} kept {{Deal.Title}} waiting", "kind": "violation"})
    text: Text
    author_id: UserRef | None = None
    """Default: the item's responsible."""
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = "comment"

    @field_validator("kind")
    @classmethod
    def _not_reserved(cls, kind: str) -> str:
        if kind in RESERVED_TIMELINE_KINDS:
            raise ValueError(f"{kind!r} is recorded by the engine itself; choose another kind (e.g. comment)")
        return kind


class CreateTaskSettings(BaseModel):
    model_config = _config(
        {
            "title": "Prepare the order for {{Deal.Contact.Name}}",
            "description": "Deal {{Deal.Title}}, amount {{Deal.Amount}}",
            "responsible_id": 2,
            "deadline": "+3d",
            "observers": [1],
            "time_tracking": True,
        }
    )
    title: ShortText
    description: OptionalText = ""
    responsible_id: UserRef | None = None
    """Default: the item's responsible."""
    deadline: Moment | None = None
    """"+3d", an ISO date or date-time, {"in_days": 1, "at": "14:00"} or {"field": "close_date", "offset": "-1d"}."""
    observers: list[UserRef] = Field(default_factory=list, max_length=100)
    time_tracking: bool = False

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, title: str) -> str:
        if not title.strip():
            raise ValueError("the title must not be blank")
        return title


class CompleteTasksSettings(BaseModel):
    model_config = _config({"pipeline_id": None, "stages": ["NEW", "INVOICE"]})
    pipeline_id: PipelineId | None = None
    """Default: this pipeline."""
    stages: list[StageCode] = Field(default_factory=list, max_length=100)
    """Complete the tasks that rules of these stages created for the item; empty = every stage."""


def _check_complete_tasks(settings: CompleteTasksSettings, env: RuleEnv) -> list[Problem]:
    problems: list[Problem] = []
    stages: Sequence[str] | None = env.stage_codes
    where = "this pipeline"
    if settings.pipeline_id is not None:
        stages, problems = _pipeline_problem(settings.pipeline_id, env, env.entity_type)
        where = f"pipeline {settings.pipeline_id}"
    if stages is not None:
        for index, stage in enumerate(settings.stages):
            problems += _stage_problem(stage, stages, ("stages", index), where)
    return problems


class ScheduleActivitySettings(BaseModel):
    model_config = _config(
        {
            "kind": "call",
            "description": "Call {{Deal.Contact.Name}} ({{Deal.Contact.Phone}}) about the contract",
            "when": {"in_days": 1, "at": "14:00"},
            "complete_on_stage_change": True,
        }
    )
    kind: Literal["call", "meeting", "other"] = "call"
    description: Text
    when: Moment = "+1d"
    """When the activity is due; `{"in_days": 1, "at": "14:00"}` counts days in the company time zone."""
    responsible_id: UserRef | None = None
    """Default: the item's responsible."""
    complete_on_stage_change: bool = True


class NotifyEmployeeSettings(BaseModel):
    model_config = _config(
        {"user_ids": ["{{Constants.Courier}}"], "text": "Deliver {{Deal.Title}} to {{Rule.addr.address}}"}
    )
    user_ids: list[UserRef] = Field(min_length=1, max_length=100)
    text: Text
    email: bool = False
    """Also e-mail the recipients that have an e-mail address."""


# -- repeat sales --------------------------------------------------------------------------------


class CreateRepeatLeadSettings(BaseModel):
    model_config = _config({"title": "Service renewal for {{Deal.Contact.Name}}", "responsible_id": 1})
    title: ShortText
    responsible_id: UserRef | None = None
    """Default: the item's responsible."""
    pipeline_id: PipelineId | None = None
    """A lead pipeline; default: the lead pipeline with the lowest id."""
    stage: StageCode | None = None
    """Default: the first stage of that pipeline."""


def _check_repeat_lead(settings: CreateRepeatLeadSettings, env: RuleEnv) -> list[Problem]:
    if settings.pipeline_id is None:
        target = env.default_lead_pipeline()
        if target is None:
            return [(("pipeline_id",), "there is no lead pipeline to create the lead in; create one first")]
        return _stage_problem(settings.stage, env.pipelines[target][1], ("stage",), f"lead pipeline {target}")
    stages, problems = _pipeline_problem(settings.pipeline_id, env, "lead")
    if stages is not None:
        problems += _stage_problem(settings.stage, stages, ("stage",), f"pipeline {settings.pipeline_id}")
    return problems


class CopyDealSettings(BaseModel):
    model_config = _config({"title": "{{Deal.Title}} (delivery)", "pipeline_id": 2, "stage": "NEW", "responsible_id": 3})
    title: ShortText | None = None
    """Default: the original's title followed by "Copy"."""
    pipeline_id: PipelineId | None = None
    """Default: this pipeline."""
    stage: StageCode | None = None
    """Default: the first stage of the target pipeline."""
    responsible_id: UserRef | None = None
    """Default: the original's responsible."""


def _check_copy_deal(settings: CopyDealSettings, env: RuleEnv) -> list[Problem]:
    problems: list[Problem] = []
    same_pipeline = settings.pipeline_id is None or settings.pipeline_id == env.pipeline_id
    stages: Sequence[str] | None = env.stage_codes
    if not same_pipeline:
        stages, problems = _pipeline_problem(settings.pipeline_id, env, "deal")
    if stages is None:
        return problems
    where = "this pipeline" if same_pipeline else f"pipeline {settings.pipeline_id}"
    problems += _stage_problem(settings.stage, stages, ("stage",), where)
    target = settings.stage or (stages[0] if stages else None)
    if same_pipeline and target == env.stage:
        problems.append(
            (("stage",), f"the copy would enter this same stage {env.stage!r} and be copied again, without end")
        )
    return problems


# -- client communication ------------------------------------------------------------------------

_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()\-.]{2,48}$")


def _recipients(value: str | None, pattern: re.Pattern[str], what: str) -> str | None:
    if value is None or PLACEHOLDER_RE.search(value):
        return value
    for part in value.split(","):
        if not pattern.match(part.strip()):
            raise ValueError(f"{part.strip()!r} is not {what}; give one or a placeholder")
    return value.strip()


class SendEmailSettings(BaseModel):
    """`attachments` names earlier create_document / send_for_signature rules whose PDF is attached;
    `include_public_link` also puts each of those documents' public link into the body."""

    model_config = _config(
        {
            "subject": "Your invoice for {{Deal.Title}}",
            "body": "Hello {{Deal.Contact.Name}}, your invoice: {{Rule.invoice.public_url}}",
            "attachments": ["invoice"],
            "include_public_link": True,
        }
    )
    subject: ShortText
    body: Text
    to: Annotated[str, StringConstraints(max_length=1000)] | None = None
    """Default: the item's contact (else company) e-mail. Addresses separated by commas, or a placeholder."""
    attachments: list[RuleName] = Field(default_factory=list, max_length=20)
    include_public_link: bool = False

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        return _recipients(value, _EMAIL, "an e-mail address")


def _check_send_email(settings: SendEmailSettings, env: RuleEnv) -> list[Problem]:
    problems: list[Problem] = []
    for index, name in enumerate(settings.attachments):
        kind = env.earlier.get(name)
        if kind is None:
            problems.append((("attachments", index), f"{name!r} is not an earlier rule of stage {env.stage!r}"))
        elif kind not in ("create_document", "send_for_signature"):
            problems.append((("attachments", index), f"rule {name!r} is a {kind} rule; it creates no document"))
    if settings.include_public_link and not settings.attachments:
        problems.append((("include_public_link",), "name the document rules in attachments to include their links"))
    return problems


class SendSmsSettings(BaseModel):
    model_config = _config({"text": "Hello {{Deal.Contact.Name}}, we will call you within 30 minutes"})
    text: Annotated[str, StringConstraints(min_length=1, max_length=1600)]
    to: Annotated[str, StringConstraints(max_length=200)] | None = None
    """Default: the item's contact (else company) phone. A number, or a placeholder."""

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        return _recipients(value, _PHONE, "a phone number")


# -- helpers -------------------------------------------------------------------------------------


class ChangeResponsibleSettings(BaseModel):
    model_config = _config({"user_id": 2})
    user_id: UserRef


class ChangeStageSettings(BaseModel):
    model_config = _config({"stage": "INVOICE"})
    stage: StageCode


def _check_change_stage(settings: ChangeStageSettings, env: RuleEnv) -> list[Problem]:
    if settings.stage == env.stage:
        return [(("stage",), f"the item is already in stage {env.stage!r}; name another stage")]
    return _stage_problem(settings.stage, env.stage_codes, ("stage",), "this pipeline")


def _check_field_value(name: str, value: Any) -> None:
    if isinstance(value, str) and PLACEHOLDER_RE.search(value):
        return
    if name == "title" and not (isinstance(value, str) and value.strip()):
        raise ValueError("title must be a non-empty text")
    if name == "amount" and value is not None:
        if isinstance(value, bool) or _number_or_none(value) is None:
            raise ValueError(f"amount: {value!r} is not a number")
    if name == "currency" and value is not None and not (isinstance(value, str) and re.fullmatch(r"[A-Z]{3}", value)):
        raise ValueError(f"currency: {value!r} is not a three-letter code such as USD")
    if name == "close_date" and value is not None:
        try:
            date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"close_date: {value!r} is not a date (YYYY-MM-DD)") from None


def _number_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class UpdateFieldsSettings(BaseModel):
    """Keys: title, amount, currency, close_date, or Fields.<custom field>. Values may hold placeholders."""

    model_config = _config({"fields": {"amount": "{{Variables.Total}}", "Fields.delivery": "courier"}})
    fields: dict[str, Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)] | int | float | bool | None] = Field(
        min_length=1, max_length=100
    )

    @field_validator("fields")
    @classmethod
    def _fields(cls, fields: dict[str, Any]) -> dict[str, Any]:
        for name, value in fields.items():
            if name.startswith(CUSTOM_FIELD_PREFIX):
                if not name[len(CUSTOM_FIELD_PREFIX):].strip():
                    raise ValueError("Fields. needs a custom field name: Fields.<name>")
                continue
            if name not in UPDATABLE_FIELDS:
                raise ValueError(f"{name!r} cannot be set; use {', '.join(UPDATABLE_FIELDS)} or Fields.<custom field>")
            _check_field_value(name, value)
        return fields


class EditVariableSettings(BaseModel):
    """`set` replaces the value, `append` adds to a text or list, `clear` empties it."""

    model_config = _config({"name": "City", "value": "{{Rule.addr.city}}", "op": "set"})
    name: Identifier
    value: Scalar | list[Scalar] = None
    op: Literal["set", "append", "clear"] = "set"

    @model_validator(mode="after")
    def _value(self) -> EditVariableSettings:
        if self.op == "clear" and self.value is not None:
            raise ValueError("op 'clear' takes no value")
        if self.op != "clear" and self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        return self


class MathOperationSettings(BaseModel):
    """Variables.<variable> = left <op> right; `round` rounds left to `digits` decimals."""

    model_config = _config({"variable": "Total", "left": "{{Deal.Amount}}", "op": "multiply", "right": 1.23, "digits": 2})
    variable: Identifier
    left: NumberOrPlaceholder
    op: Literal["add", "subtract", "multiply", "divide", "round"]
    right: NumberOrPlaceholder | None = None
    digits: int = Field(default=2, ge=0, le=10)

    @model_validator(mode="after")
    def _operands(self) -> MathOperationSettings:
        if self.op != "round" and self.right is None:
            raise ValueError(f"op {self.op!r} needs right")
        if self.op == "divide" and self.right == 0:
            raise ValueError("right: division by zero")
        return self


class WaitSettings(BaseModel):
    """Waits until the item field changes, or until the timeout passes (whichever comes first)."""

    model_config = _config({"until_field_changes": "amount", "timeout": "3d"})
    until_field_changes: WatchableField | None = None
    timeout: DurationText | None = None

    @model_validator(mode="after")
    def _something(self) -> WaitSettings:
        if self.until_field_changes is None and self.timeout is None:
            raise ValueError("give until_field_changes, timeout, or both")
        return self


def _check_url(value: str) -> str:
    probe = PLACEHOLDER_RE.sub("x", value.strip())
    parts = urlsplit(probe)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.strip()


class WebhookSettings(BaseModel):
    """Calls the URL with the item's data (or `body`). With `wait_for_callback` the rules after it wait
    until the outside system posts its values to the callback URL (sent as `callback_url` in a JSON body
    and in the `X-Stageflow-Callback` header), or until `callback_timeout` passes (then `timed_out` is
    true). The names in `returns` become this rule's results, with `status_code`. A GET sends no body."""

    model_config = _config(
        {
            "url": "https://erp.example.com/orders?deal={{Deal.Id}}",
            "method": "POST",
            "headers": {"X-Api-Key": "{{Constants.ErpKey}}"},
            "body": {"title": "{{Deal.Title}}", "amount": "{{Deal.Amount}}"},
            "timeout_seconds": 10,
            "wait_for_callback": True,
            "callback_timeout": "2h",
            "returns": ["order_no"],
        }
    )
    url: Annotated[str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_check_url)]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")],
        Annotated[str, StringConstraints(max_length=2000)],
    ] = Field(default_factory=dict, max_length=50)
    body: dict[str, Any] | Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)] | None = None
    """Default: the item's data tree as JSON."""
    timeout_seconds: float = Field(default=10, gt=0, le=60)
    wait_for_callback: bool = False
    callback_timeout: DurationText = "24h"
    returns: list[Identifier] = Field(default_factory=list, max_length=50)

    @field_validator("returns")
    @classmethod
    def _unique(cls, returns: list[str]) -> list[str]:
        if len(set(returns)) != len(returns) or {"status_code", "timed_out"} & set(returns):
            raise ValueError(
                "return names must be unique; status_code (and timed_out with a callback) are always returned"
            )
        return returns


def _webhook_returns(settings: WebhookSettings) -> tuple[str, ...]:
    return ("status_code", *settings.returns, *(("timed_out",) if settings.wait_for_callback else ()))


# -- rule types ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleType:
    """One kind of rule action.

    `returns` are the result values later rules read as `{{Rule.<name>.<value>}}`; `private_returns` among them
    carry a capability token (a link that opens or signs a document): they stay in the database, and the
    workflow history holds a reference in their place; `result_names` adds
    those that depend on the settings. `user_fields` are settings keys holding user ids (or lists of
    them) checked at save time. `check` gives further save-time problems (pipelines, stages, templates).
    """

    name: str
    group: str
    title: str
    description: str
    settings: type[BaseModel]
    auxiliary: bool = False
    local: bool = False
    private_returns: tuple[str, ...] = ()
    returns: tuple[str, ...] = ()
    user_fields: tuple[str, ...] = ()
    entities: tuple[str, ...] = ENTITY_TYPES
    dynamic_returns: Callable[[Any], tuple[str, ...]] | None = None
    sets_variable: Callable[[Any], str] | None = None
    check: Callable[[Any, RuleEnv], Iterable[Problem]] | None = None
    handler_url: str | None = None

    def result_names(self, settings: BaseModel | None = None) -> tuple[str, ...]:
        if settings is not None and self.dynamic_returns is not None:
            return self.dynamic_returns(settings)
        return self.returns

    def variable_name(self, settings: BaseModel) -> str | None:
        return self.sets_variable(settings) if self.sets_variable is not None else None

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
            "returns_from_settings": self.dynamic_returns is not None,
            "user_fields": list(self.user_fields),
            "entities": list(self.entities),
            "custom": self.handler_url is not None,
            "settings_schema": self.settings.model_json_schema(),
        }


_RULES: list[RuleType] = [
    RuleType(
        "create_document", "documents", "Create document",
        "Creates a document (invoice, offer, contract …) from a template as DOCX and PDF, optionally with "
        "my company's requisites, signature and stamp, extra fields and a public link for the client.",
        CreateDocumentSettings, returns=("document_id", "number", "title", "public_url", "pdf_url"),
        private_returns=("public_url",), check=_check_create_document,
    ),
    RuleType(
        "send_for_signature", "documents", "Send document for signing",
        "Creates the document from a template and sends it for signing by the company's signer and the client.",
        SendForSignatureSettings, returns=("document_id", "number", "signing_url", "public_url"),
        private_returns=("signing_url", "public_url"), user_fields=("signer_user_id",), check=_check_send_for_signature,
    ),
    RuleType(
        "change_requisites", "documents", "Change requisites",
        "Changes requisites of the item's contact or company: fields, an address, bank details.",
        ChangeRequisitesSettings, returns=("changed",), check=_check_change_requisites, local=True,
    ),
    RuleType(
        "get_requisites", "documents", "Get requisites values",
        "Reads requisite fields of the item's contact or company and hands them to later rules.",
        GetRequisitesSettings, auxiliary=True, returns=REQUISITE_RETURNS, dynamic_returns=_requisite_returns,
        local=True,
    ),
    RuleType(
        "notify_supervisor", "monitoring", "Notify supervisor",
        "Notifies the supervisor of the item's responsible (or the given recipients).",
        NotifySupervisorSettings, returns=("recipients", "text", "emailed"), user_fields=("recipient_ids",),
    ),
    RuleType(
        "add_timeline_entry", "monitoring", "Add history entry",
        "Writes a text to the item's timeline as the given user, with a kind to filter by.",
        AddTimelineEntrySettings, returns=("entry_id", "text", "author_id", "kind"), user_fields=("author_id",),
        local=True,
    ),
    RuleType(
        "create_task", "monitoring", "Create task",
        "Creates a task linked to the item: title, description, responsible, deadline, observers.",
        CreateTaskSettings, returns=("task_id", "title", "deadline"), user_fields=("responsible_id", "observers"),
        local=True,
    ),
    RuleType(
        "complete_tasks", "monitoring", "Complete tasks",
        "Completes the tasks that rules of the given pipeline and stages created for this item.",
        CompleteTasksSettings, returns=("completed_count", "task_ids"), check=_check_complete_tasks, local=True,
    ),
    RuleType(
        "schedule_activity", "monitoring", "Schedule activity",
        "Plans a call, meeting or other to-do on the item, optionally completed when the item changes stage.",
        ScheduleActivitySettings, returns=("activity_id", "due"), user_fields=("responsible_id",), local=True,
    ),
    RuleType(
        "notify_employee", "monitoring", "Notify employee",
        "Sends a notification to the chosen users.",
        NotifyEmployeeSettings, returns=("recipients", "text", "emailed"), user_fields=("user_ids",),
    ),
    RuleType(
        "create_repeat_lead", "repeat_sales", "Create repeat lead",
        "Creates a new lead for the same client, e.g. six months after the deal is won.",
        CreateRepeatLeadSettings, returns=("lead_id",), user_fields=("responsible_id",), check=_check_repeat_lead,
    ),
    RuleType(
        "copy_deal", "repeat_sales", "Copy deal",
        "Copies the deal with all its fields into another stage or pipeline; the copy's stage rules run.",
        CopyDealSettings, returns=("deal_id",), user_fields=("responsible_id",), entities=("deal",),
        check=_check_copy_deal,
    ),
    RuleType(
        "send_email", "communication", "Send email",
        "Sends an e-mail to the client, with created documents attached or linked.",
        SendEmailSettings, returns=("message_id",), check=_check_send_email,
    ),
    RuleType(
        "send_sms", "communication", "Send SMS",
        "Sends a text message to the client.",
        SendSmsSettings, returns=("message_id",),
    ),
    RuleType(
        "change_responsible", "helpers", "Change responsible",
        "Makes another user responsible for the item.",
        ChangeResponsibleSettings, returns=("previous_id", "user_id"), user_fields=("user_id",), local=True,
    ),
    RuleType(
        "change_stage", "helpers", "Change stage",
        "Moves the item to another stage of its pipeline.",
        ChangeStageSettings, returns=("stage",), check=_check_change_stage, local=True,
    ),
    RuleType(
        "update_fields", "helpers", "Update fields",
        "Sets item fields (title, amount, currency, close date, custom fields).",
        UpdateFieldsSettings, returns=("updated",), local=True,
    ),
    RuleType(
        "edit_variable", "helpers", "Edit variable",
        "Sets, appends to or clears a variable that later rules read as {{Variables.<name>}}.",
        EditVariableSettings, auxiliary=True, returns=("value",), sets_variable=lambda settings: settings.name,
        local=True,
    ),
    RuleType(
        "math_operation", "helpers", "Math operation",
        "Computes a number into a variable: add, subtract, multiply, divide, round.",
        MathOperationSettings, auxiliary=True, returns=("value",), sets_variable=lambda settings: settings.variable,
        local=True,
    ),
    RuleType(
        "wait", "helpers", "Wait",
        "Waits until an item field changes or a timeout passes; later after-previous rules wait for it.",
        WaitSettings, returns=("changed", "field"), local=True,
    ),
    RuleType(
        "webhook", "helpers", "Webhook",
        "Calls an outside HTTP endpoint with the item's data; may wait for values posted back to a callback URL.",
        WebhookSettings, returns=("status_code",), dynamic_returns=_webhook_returns,
    ),
]
RULE_TYPES: dict[str, RuleType] = {rule.name: rule for rule in _RULES}


def rule_type_catalogue(custom: Mapping[str, RuleType] | None = None) -> list[dict[str, Any]]:
    """Every rule type, built-in first, as JSON-able dicts (for `GET /rule-types`)."""
    return [rule.describe() for rule in (*RULE_TYPES.values(), *(custom or {}).values())]


# -- app-registered rule types -------------------------------------------------------------------

_JSON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "object": dict[str, Any]}


def _property_type(prop: str, spec: Mapping[str, Any]) -> Any:
    kind = spec.get("type", "string")
    if kind == "string":
        if "enum" in spec:
            values = spec["enum"]
            if not values or not all(isinstance(value, str) for value in values):
                raise ValueError(f"settings_schema.properties.{prop}.enum: give a list of strings")
            return Literal[tuple(values)]
        return Annotated[
            str,
            StringConstraints(
                min_length=int(spec.get("minLength", 0)),
                max_length=min(int(spec.get("maxLength", MAX_TEXT_LENGTH)), MAX_TEXT_LENGTH),
            ),
        ]
    if kind in ("integer", "number"):
        bounds = {key: spec[name] for key, name in (("ge", "minimum"), ("le", "maximum")) if name in spec}
        return Annotated[_JSON_TYPES[kind], Field(**bounds)]
    if kind == "array":
        items = spec.get("items") or {}
        inner = _property_type(f"{prop}.items", items) if items else Any
        return list[inner]
    if kind in _JSON_TYPES:
        return _JSON_TYPES[kind]
    raise ValueError(
        f"settings_schema.properties.{prop}.type: {kind!r} is not supported; use string, integer, number, "
        "boolean, array or object"
    )


def make_custom_rule_type(
    name: str,
    *,
    settings_schema: Mapping[str, Any],
    handler_url: str,
    returns: Sequence[str] = (),
    title: str = "",
    description: str = "",
    user_fields: Sequence[str] = (),
) -> RuleType:
    """A rule type an app registers (`POST /rule-types`): its settings model is built from a JSON schema
    of an object with simple properties (string, integer, number, boolean, array, object). Raises
    ValueError naming the part of the schema at fault."""
    if name in RULE_TYPES:
        raise ValueError(f"name: {name!r} is a built-in rule type")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,99}", name):
        raise ValueError(f"name: {name!r} must be lower-case letters, digits and underscores")
    if settings_schema.get("type", "object") != "object":
        raise ValueError("settings_schema.type: the settings are an object")
    properties = settings_schema.get("properties") or {}
    required = set(settings_schema.get("required") or [])
    unknown = required - set(properties)
    if unknown:
        raise ValueError(f"settings_schema.required: {', '.join(sorted(unknown))} not among the properties")
    fields: dict[str, Any] = {}
    example: dict[str, Any] = {}
    for prop, spec in properties.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", prop):
            raise ValueError(f"settings_schema.properties.{prop}: property names are identifiers")
        if not isinstance(spec, Mapping):
            raise ValueError(f"settings_schema.properties.{prop}: give an object such as {{\"type\": \"string\"}}")
        kind = _property_type(prop, spec)
        if prop in required:
            fields[prop] = (kind, Field(description=spec.get("description")))
        else:
            fields[prop] = (Optional[kind], Field(default=spec.get("default"), description=spec.get("description")))
        if "default" in spec or "examples" in spec:
            example[prop] = (spec.get("examples") or [spec.get("default")])[0]
    for key in user_fields:
        if key not in properties:
            raise ValueError(f"user_fields: {key!r} is not a settings property")
    model = create_model(
        f"CustomSettings_{name}", __config__=_config(example) if example else ConfigDict(extra="forbid"), **fields
    )
    for result in returns:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", result):
            raise ValueError(f"returns: {result!r} is not an identifier")
    return RuleType(
        name=name,
        group="custom",
        title=title or name,
        description=description,
        settings=model,
        returns=tuple(returns),
        user_fields=tuple(user_fields),
        handler_url=handler_url,
    )


# -- trigger types -------------------------------------------------------------------------------


class NoFilter(BaseModel):
    model_config = _config({})


class PaymentFilter(BaseModel):
    model_config = _config({"min_amount": 100, "currency": "USD"})
    min_amount: float | None = Field(default=None, ge=0)
    max_amount: float | None = Field(default=None, ge=0)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None

    @model_validator(mode="after")
    def _range(self) -> PaymentFilter:
        if self.min_amount is not None and self.max_amount is not None and self.min_amount > self.max_amount:
            raise ValueError("min_amount is above max_amount")
        return self


class TaskStatusFilter(BaseModel):
    model_config = _config({"status": "completed", "title_contains": ["invoice"]})
    status: Literal["pending", "in_progress", "completed", "deferred"] | None = None
    """Default: any status change."""
    title_contains: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20
    )
    """Every word must appear in the task's title (case-insensitive)."""
    responsible_id: int | None = Field(default=None, ge=1)
    created_by_stage: StageCode | None = None

    @field_validator("title_contains", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def _check_task_filter(settings: TaskStatusFilter, env: RuleEnv) -> list[Problem]:
    return _stage_problem(settings.created_by_stage, env.stage_codes, ("created_by_stage",), "this pipeline")


class DocumentFilter(BaseModel):
    model_config = _config({"template": "invoice"})
    template: TemplateCode | None = None


def _check_document_filter(settings: DocumentFilter, env: RuleEnv) -> list[Problem]:
    return _template_problem(settings.template, env)


class FieldChangedFilter(BaseModel):
    model_config = _config({"fields": ["amount", "Fields.delivery_date"]})
    fields: list[WatchableField] = Field(min_length=1, max_length=50)


class CustomEventFilter(BaseModel):
    model_config = _config({"event": "order_shipped"})
    event: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_.\-]*$")]

    @field_validator("event")
    @classmethod
    def _not_built_in(cls, event: str) -> str:
        if event in BUILT_IN_EVENTS:
            raise ValueError(f"{event!r} is a built-in event; use the {event} trigger type")
        return event


@dataclass(frozen=True)
class TriggerType:
    name: str
    title: str
    description: str
    filter: type[BaseModel] = NoFilter
    user_fields: tuple[str, ...] = ()
    check: Callable[[Any, RuleEnv], Iterable[Problem]] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "filter_schema": self.filter.model_json_schema(),
        }


_TRIGGERS: list[TriggerType] = [
    TriggerType("payment_received", "Payment received", "A payment for the item is reported (POST …/payments).",
                PaymentFilter),
    TriggerType("task_status", "Task status changed", "A task linked to the item reaches a status.",
                TaskStatusFilter, user_fields=("responsible_id",), check=_check_task_filter),
    TriggerType("document_opened", "Document opened", "The client opens a document's public link.",
                DocumentFilter, check=_check_document_filter),
    TriggerType("document_signed", "Document signed", "A document sent for signing is signed.",
                DocumentFilter, check=_check_document_filter),
    TriggerType("email_opened", "Email opened", "The client opens an e-mail sent by a rule."),
    TriggerType("link_clicked", "Email link clicked", "The client clicks a link in an e-mail sent by a rule."),
    TriggerType("field_changed", "Field changed", "One of the chosen item fields changes.", FieldChangedFilter),
    TriggerType("responsible_changed", "Responsible changed", "Another user becomes responsible for the item."),
    TriggerType("webhook", "Inbound webhook", "An outside system calls the trigger's secret URL (POST /hooks/{secret})."),
    TriggerType("custom", "Custom event", "A client system posts an event with this name (POST …/events).",
                CustomEventFilter),
]
TRIGGER_TYPES: dict[str, TriggerType] = {trigger.name: trigger for trigger in _TRIGGERS}


def trigger_type_catalogue() -> list[dict[str, Any]]:
    """Every trigger type as JSON-able dicts with the filter JSON schema (for `GET /trigger-types`)."""
    return [trigger.describe() for trigger in TRIGGER_TYPES.values()]
