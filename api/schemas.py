"""Request and response models of the HTTP API (Base / Create / Update / Public layering).

Request models are strict: an unknown field, a string too long or a number out of range is a 422 naming
the field, before anything is written.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from datetime import date, datetime
from functools import cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    ConfigDict,
    JsonValue,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from sqlmodel import Field, SQLModel

from activities.transports.channels import InvalidIdentity, channel_identity
from api.deps import MAX_ID
from models.domain.timing import as_utc

# ---------------------------------------------------------------- shared field types


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_no_nul)]
ShortText = Annotated[str, StringConstraints(max_length=200), AfterValidator(_no_nul)]
Text = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_no_nul)]
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PHONE_PATTERN = r"^\+?[0-9][0-9 ()\-.]{2,48}$"
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200, pattern=EMAIL_PATTERN), AfterValidator(_no_nul)
]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=50, pattern=PHONE_PATTERN)]
CURRENCY_PATTERN = r"^[A-Za-z]{3}$"
Currency = Annotated[str, StringConstraints(pattern=CURRENCY_PATTERN, to_upper=True),
                     Field(description="Three letters (ISO 4217), such as EUR; kept in capitals")]
StageCode = Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=r"^[A-Z0-9_]+$")]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_.\-]*$")]
Scalar = str | int | float | bool | None
ScalarMap = dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], Scalar]
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
Amount = Annotated[float, Field(ge=0, le=1e15)]


class StrictModel(SQLModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def not_null_when_given(*names: str) -> Any:
    """For a PATCH body: a field left out keeps its value, and an explicit null for one that cannot be empty is a
    422 naming that field (not a failed write)."""

    def refuse_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null; leave the field out to keep its value")
        return value

    return field_validator(*names, mode="before")(refuse_null)


class Accepted(SQLModel):
    accepted: bool = True


# ---------------------------------------------------------------- users and API keys


class UserBase(StrictModel):
    name: Name
    email: Email | None = None
    phone: Phone | None = None
    supervisor_id: Id | None = None


class UserCreate(UserBase):
    pass


class UserUpdate(StrictModel):
    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    supervisor_id: Id | None = None

    _not_null = not_null_when_given("name")


class UserPublic(UserBase):
    id: int
    created_at: UtcDatetime


class ApiKeyBase(StrictModel):
    name: Name
    role: Literal["admin", "member"] = "member"


class ApiKeyCreate(ApiKeyBase):
    pass


class ApiKeyPublic(ApiKeyBase):
    id: int
    revoked: bool
    created_at: UtcDatetime


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself; shown only in this answer")


# ---------------------------------------------------------------- pipelines


class StageBase(StrictModel):
    code: StageCode
    name: Name
    semantic: Literal["process", "success", "failure"] = "process"


class StageCreate(StageBase):
    pass


class StagePublic(StageBase):
    position: int


class StageAdd(StageBase):
    position: Annotated[int, Field(ge=0, le=1000)] | None = Field(
        default=None, description="Where the stage goes, 0 first (default: last)")


class StageUpdate(StrictModel):
    name: Name | None = None
    semantic: Literal["process", "success", "failure"] | None = None
    position: Annotated[int, Field(ge=0, le=1000)] | None = Field(default=None, description="0 first")

    @model_validator(mode="after")
    def _something(self) -> StageUpdate:
        if not self.model_fields_set:
            raise ValueError("give name, semantic or position")
        for field in ("name", "semantic", "position"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class PipelineUpdate(StrictModel):
    name: Name


class PipelineBase(StrictModel):
    entity_type: Literal["deal", "lead"]
    name: Name


class PipelineCreate(PipelineBase):
    stages: list[StageCreate] = Field(min_length=1, max_length=100)

    @field_validator("stages")
    @classmethod
    def _unique_codes(cls, stages: list[StageCreate]) -> list[StageCreate]:
        seen: set[str] = set()
        for stage in stages:
            if stage.code in seen:
                raise ValueError(f"stage code {stage.code} appears more than once")
            seen.add(stage.code)
        return stages


class PipelinePublic(PipelineBase):
    id: int
    created_at: UtcDatetime
    stages: list[StagePublic]


# ---------------------------------------------------------------- rule types


class CustomRuleTypeBase(StrictModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*$")]
    title: ShortText = ""
    settings_schema: dict[str, JsonValue] = Field(default_factory=dict)
    handler_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    returns: list[Identifier] = Field(default_factory=list, max_length=100)

    @field_validator("returns")
    @classmethod
    def _unique_returns(cls, returns: list[str]) -> list[str]:
        if len(set(returns)) != len(returns):
            raise ValueError("return value names must be unique")
        return returns


class CustomRuleTypeCreate(CustomRuleTypeBase):
    pass


class CustomRuleTypePublic(CustomRuleTypeBase):
    id: int
    created_at: UtcDatetime


# ---------------------------------------------------------------- requisites and settings

Template = Literal["organization", "sole_proprietor", "individual"]
AddressType = Literal["legal", "actual", "other"]


class RequisitesBase(StrictModel):
    template: Template
    fields: ScalarMap = Field(default_factory=dict)
    addresses: dict[AddressType, ScalarMap] = Field(default_factory=dict)
    bank: ScalarMap = Field(default_factory=dict)


class RequisitesUpdate(RequisitesBase):
    pass


class RequisitesPublic(SQLModel):
    """Requisites as stored; rules change them too, so the answer does not re-check request limits."""

    template: str
    fields: dict[str, Any]
    addresses: dict[str, Any]
    bank: dict[str, Any]
    updated_at: UtcDatetime


IMAGE_MAX_BYTES = 1_000_000
_DATA_URL = re.compile(r"^data:image/(png|jpeg|jpg);base64,", re.IGNORECASE)


def _image(value: str) -> str:
    """A base64 PNG or JPEG image (a `data:` URL prefix is accepted), returned as plain base64."""
    raw = _DATA_URL.sub("", value.strip(), count=1)
    try:
        content = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64-encoded") from exc
    if len(content) > IMAGE_MAX_BYTES:
        raise ValueError(f"must be at most {IMAGE_MAX_BYTES} bytes")
    if not (content.startswith(b"\x89PNG\r\n\x1a\n") or content.startswith(b"\xff\xd8\xff")):
        raise ValueError("must be a PNG or JPEG image")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError("is not a readable PNG or JPEG image") from exc
    return base64.b64encode(content).decode()


ImageData = Annotated[str, StringConstraints(max_length=2 * IMAGE_MAX_BYTES), AfterValidator(_image)]


class CompanyRequisites(StrictModel):
    template: Template = "organization"
    fields: ScalarMap = Field(default_factory=dict)
    addresses: dict[AddressType, ScalarMap] = Field(default_factory=dict)
    bank: ScalarMap = Field(default_factory=dict)


class CompanySettingsBase(StrictModel):
    name: ShortText = ""
    requisites: CompanyRequisites = Field(default_factory=CompanyRequisites)
    bank: ScalarMap = Field(default_factory=dict)
    signature_image: str | None = Field(default=None, description="Base64 PNG or JPEG, at most 1 MB")
    stamp_image: str | None = Field(default=None, description="Base64 PNG or JPEG, at most 1 MB")
    signer_name: ShortText | None = None
    signer_user_id: Id | None = None


class CompanySettingsUpdate(CompanySettingsBase):
    signature_image: ImageData | None = None
    stamp_image: ImageData | None = None


class CompanySettingsPublic(CompanySettingsBase):
    pass


HourMinute = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _zone(value: str) -> str:
    if value not in _zones():
        raise ValueError(f"unknown time zone {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


class CalendarSettings(StrictModel):
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_zone)] = "UTC"
    working_days: list[Annotated[int, Field(ge=1, le=7)]] = Field(default=[1, 2, 3, 4, 5], min_length=1, max_length=7)
    day_start: HourMinute = "09:00"
    day_end: HourMinute = "18:00"
    holidays: list[date] = Field(default_factory=list, max_length=1000)

    @field_validator("working_days")
    @classmethod
    def _distinct_days(cls, days: list[int]) -> list[int]:
        if len(set(days)) != len(days):
            raise ValueError("working days must be distinct (1 = Monday ... 7 = Sunday)")
        return sorted(days)

    @field_validator("holidays")
    @classmethod
    def _sorted_holidays(cls, holidays: list[date]) -> list[date]:
        return sorted(set(holidays))

    @model_validator(mode="after")
    def _hours(self) -> CalendarSettings:
        if self.day_end <= self.day_start:
            raise ValueError("day_end must be later than day_start")
        return self


# ---------------------------------------------------------------- contacts and companies


def _channels(value: dict[str, Any]) -> dict[str, str]:
    identities = {}
    for channel, raw in value.items():
        try:
            identities[channel] = channel_identity(channel, raw, "ZZ")
        except InvalidIdentity as error:
            hint = "; give the number with its country code (+48 601 234 567)" if channel == "whatsapp" else ""
            raise ValueError(f"{channel}: {error}{hint}") from None
    return identities


Channels = Annotated[dict[Literal["telegram", "whatsapp"], StrictStr | StrictInt], AfterValidator(_channels)]
"""The client's identity on each messenger channel: `{"telegram": "<chat id>", "whatsapp": "+48601234567"}`."""


class PartyBase(StrictModel):
    name: Name
    email: Email | None = None
    phone: Phone | None = None
    channels: Channels = Field(default_factory=dict)


class PartyCreate(PartyBase):
    pass


class PartyUpdate(StrictModel):
    """Changes to a contact or a company; `channels` replaces its identities (an empty object removes them)."""

    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    channels: Channels | None = None

    @model_validator(mode="after")
    def _something(self) -> PartyUpdate:
        if not self.model_fields_set:
            raise ValueError("give name, email, phone or channels")
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null")
        if "channels" in self.model_fields_set and self.channels is None:
            raise ValueError("channels cannot be null (give {} to remove them)")
        return self


class PartyPublic(PartyBase):
    id: int
    created_at: UtcDatetime


class EventCreate(StrictModel):
    type: EventType
    data: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("data")
    @classmethod
    def _payment_as_payments_take_it(cls, data: dict[str, Any], info: Any) -> dict[str, Any]:
        """A `payment_received` posted as an event is checked as `POST …/payments` checks a payment: it adds to what
        the item has been paid."""
        if info.data.get("type") == "payment_received":
            PaymentCreate.model_validate(data)
        return data


class PartyEventAccepted(Accepted):
    deal_ids: list[int] = Field(default_factory=list)
    lead_ids: list[int] = Field(default_factory=list)


# ---------------------------------------------------------------- deals and leads

Product = dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], Scalar]
CustomFields = dict[Identifier, JsonValue]


class ItemBase(StrictModel):
    """What a client writes on an item."""

    title: Name
    amount: Amount | None = None
    currency: Currency | None = None
    responsible_id: Id
    contact_id: Id | None = None
    company_id: Id | None = None
    close_date: date | None = None
    fields: CustomFields = Field(default_factory=dict)
    products: list[Product] = Field(default_factory=list, max_length=500)


class ItemCreate(ItemBase):
    pipeline_id: Id
    stage: StageCode | None = None


class ItemUpdate(StrictModel):
    """Changes to an item's data; the stage changes only through a move."""

    title: Name | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    responsible_id: Id | None = None
    contact_id: Id | None = None
    company_id: Id | None = None
    close_date: date | None = None
    fields: CustomFields | None = Field(default=None, description="Merged into the item's fields; null removes one")
    products: list[Product] | None = Field(default=None, max_length=500)
    by_user_id: Id | None = Field(default=None, description="Who made the change (for field_changed triggers)")

    _not_null = not_null_when_given("title", "responsible_id", "fields", "products")


class ItemPublic(SQLModel):
    """An item as stored; rules write items too, so the answer does not re-check request limits."""

    id: int
    entity_type: str
    title: str
    pipeline_id: int
    stage: str | None
    amount: float | None
    currency: str | None
    paid: float = 0
    """The payments reported for it in its currency, added up."""
    responsible_id: int
    contact_id: int | None
    company_id: int | None
    close_date: date | None
    fields: dict[str, Any]
    products: list[Any]
    entry_no: int
    source_item_id: int | None
    stage_changed_at: UtcDatetime | None
    archived_at: UtcDatetime | None = None
    entry_version: int | None = None
    """The automation version its current stage entry runs."""
    created_at: UtcDatetime
    updated_at: UtcDatetime


class EventAnswer(SQLModel):
    """What the item did with an event (`?wait=true`)."""

    matched: str | None = Field(description="The trigger the event fired, or null")
    stage: str | None = Field(description="The item's stage now")
    moved: bool


class MoveRequest(StrictModel):
    stage: StageCode
    as_user_id: Id | None = None


class PaymentCreate(StrictModel):
    amount: Annotated[float, Field(gt=0, le=1e15)]
    currency: Currency | None = None


class CommentCreate(StrictModel):
    text: Annotated[str, StringConstraints(min_length=1, max_length=10_000), AfterValidator(_no_nul)]
    author_id: Id | None = None


class TimelinePublic(SQLModel):
    id: int
    item_id: int
    at: UtcDatetime
    kind: str
    text: str
    author_id: int | None
    rule_name: str | None
    entry_no: int | None
    data: dict[str, Any]


# ---------------------------------------------------------------- tasks, activities, notifications, messages

TaskStatus = Literal["pending", "in_progress", "completed", "deferred"]


class TaskUpdate(StrictModel):
    status: TaskStatus | None = None
    title: Name | None = None
    observers: list[Id] | None = Field(default=None, max_length=100)

    _not_null = not_null_when_given("status", "title", "observers")


class TaskPublic(SQLModel):
    id: int
    item_id: int | None
    title: str
    description: str
    responsible_id: int | None
    created_by_id: int | None
    deadline: UtcDatetime | None
    status: str
    observers: list[Any]
    time_tracking: bool
    rule_name: str | None
    pipeline_id: int | None
    stage: str | None
    completed_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ActivityUpdate(StrictModel):
    completed: bool


class ActivityPublic(SQLModel):
    id: int
    item_id: int
    kind: str
    description: str
    due_at: UtcDatetime | None
    responsible_id: int | None
    completed: bool
    completed_at: UtcDatetime | None
    complete_on_stage_change: bool
    entry_no: int | None
    created_at: UtcDatetime


class NotificationUpdate(StrictModel):
    read: bool


class NotificationPublic(SQLModel):
    id: int
    user_id: int
    item_id: int | None
    text: str
    read: bool
    created_at: UtcDatetime


class MessagePublic(SQLModel):
    id: int
    item_id: int | None
    channel: str
    to: str
    subject: str | None
    body: str
    status: str
    error: str | None
    provider_id: str | None
    links: list[Any]
    attachments: list[Any]
    created_at: UtcDatetime
    sent_at: UtcDatetime | None


# ---------------------------------------------------------------- documents


class DocumentPublic(SQLModel):
    id: int
    item_id: int | None
    template: str
    number: str
    title: str
    status: str
    sha256: str | None
    has_pdf: bool
    has_docx: bool
    has_signed_pdf: bool
    public_url: str | None
    public_revoked: bool
    public_expires_at: UtcDatetime | None
    signing: dict[str, Any]
    data: dict[str, Any]
    created_at: UtcDatetime


class Health(SQLModel):
    status: str
    database: str
    temporal: str


class HookCall(StrictModel):
    """An inbound webhook: which item, and what the outside system reports."""

    deal_id: Id | None = None
    lead_id: Id | None = None
    data: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_item(self) -> HookCall:
        if (self.deal_id is None) == (self.lead_id is None):
            raise ValueError("give exactly one of deal_id and lead_id")
        return self


class DocumentTemplatePublic(SQLModel):
    code: str
    name: str
    prefix: str
    builtin: bool
    size: int | None = None
    created_at: UtcDatetime | None = None


class FailureWindow(StrictModel):
    """Which failed rules: those that failed in [since, until), of a pipeline, of a rule type."""

    since: UtcDatetime | None = None
    until: UtcDatetime | None = None
    pipeline_id: Id | None = None
    rule_type: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None

    @field_validator("until")
    @classmethod
    def _after_since(cls, until: datetime | None, info: Any) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and until <= since:
            raise ValueError(f"until ({until.isoformat()}) must come after since ({since.isoformat()})")
        return until


class FailuresRetry(FailureWindow):
    dry_run: bool = Field(default=True, description="Only count the rules a retry would run (the default)")
    rate: Annotated[int, Field(ge=1, le=100)] = Field(default=10, description="At most this many rules a second")
    automation: Literal["recorded", "current"] = Field(
        default="recorded", description="Each rule as its entry recorded it, or as the automation is now")
