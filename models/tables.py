"""SQLModel tables: the CRM's own data. Temporal keeps the workflow state; this keeps what users see."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _json(default_factory=dict) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(JSON, nullable=False))


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    email: str | None = None
    phone: str | None = None
    supervisor_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    key_hash: str = Field(unique=True, index=True)
    role: str = "member"  # admin | member
    revoked: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Pipeline(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    entity_type: str  # deal | lead
    name: str
    created_at: datetime = Field(default_factory=utcnow)


class Stage(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("pipeline_id", "code"),)
    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = Field(foreign_key="pipeline.id", index=True)
    code: str
    name: str
    semantic: str = "process"  # process | success | failure
    position: int = 0


class Automation(SQLModel, table=True):
    """The whole automation of one pipeline as saved now, validated as a whole and replaced at once."""

    pipeline_id: int = Field(foreign_key="pipeline.id", primary_key=True)
    version: int = 1
    config: dict = _json()
    updated_at: datetime = Field(default_factory=utcnow)


class AutomationVersion(SQLModel, table=True):
    """Every saved automation of a pipeline, kept as it was saved: its number, when, by whom, and why."""

    pipeline_id: int = Field(foreign_key="pipeline.id", primary_key=True)
    version: int = Field(primary_key=True)
    config: dict = _json()
    saved_at: datetime = Field(default_factory=utcnow)
    saved_by: str = ""
    """The API key's name, or the console user's."""
    note: str = ""
    in_flight: str = "keep"
    """What the entries already waiting did when it was saved: `keep` their version, or `apply` this one."""
    apply_workflow_id: str | None = None
    """With `apply`: the workflow that takes this version to them."""


class HookSecret(SQLModel, table=True):
    """The secret URL of one inbound-webhook trigger; kept across automation saves while the trigger exists."""

    __table_args__ = (UniqueConstraint("pipeline_id", "stage", "trigger_name"),)
    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = Field(foreign_key="pipeline.id", index=True)
    stage: str
    trigger_name: str
    secret: str
    secret_hash: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class CustomRuleType(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    title: str = ""
    settings_schema: dict = _json()
    handler_url: str
    returns: list = _json(list)
    created_at: datetime = Field(default_factory=utcnow)


class Contact(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    email: str | None = None
    phone: str | None = None
    channels: dict = _json()
    """The client's identity on each messenger channel: `{"telegram": "<chat id>", "whatsapp": "+48…"}`."""
    created_at: datetime = Field(default_factory=utcnow)


class Company(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    email: str | None = None
    phone: str | None = None
    channels: dict = _json()
    created_at: datetime = Field(default_factory=utcnow)


class Requisites(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("owner_type", "owner_id"),)
    id: int | None = Field(default=None, primary_key=True)
    owner_type: str  # contact | company
    owner_id: int = Field(index=True)
    template: str = "organization"  # organization | sole_proprietor | individual
    fields: dict = _json()
    addresses: dict = _json()  # {"legal": {...}, "actual": {...}, "other": {...}}
    bank: dict = _json()
    updated_at: datetime = Field(default_factory=utcnow)


class SettingsRecord(SQLModel, table=True):
    """Singleton documents: `company` (my company) and `calendar` (business hours)."""

    key: str = Field(primary_key=True)
    value: dict = _json()
    updated_at: datetime = Field(default_factory=utcnow)


class Item(SQLModel, table=True):
    """A deal or a lead. Its `stage` is written only by the item's workflow.

    Ids are never reused (AUTOINCREMENT on SQLite, a sequence elsewhere): an item's workflow id is
    derived from its id, so a new item must never inherit a deleted item's workflows.
    """

    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    entity_type: str = Field(index=True)  # deal | lead
    title: str
    pipeline_id: int = Field(foreign_key="pipeline.id", index=True)
    stage: str | None = Field(default=None, index=True)
    entry_no: int = 0
    amount: float | None = None
    currency: str | None = None
    paid: float = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """The payments reported for it in its currency, added up as its workflow receives them (each once)."""
    responsible_id: int = Field(foreign_key="user.id")
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    company_id: int | None = Field(default=None, foreign_key="company.id")
    close_date: date | None = None
    fields: dict = _json()
    products: list = _json(list)
    source_item_id: int | None = Field(default=None, foreign_key="item.id")
    origin_key: str | None = Field(default=None, unique=True)
    stage_changed_at: datetime | None = None
    entry_version: int | None = None
    """The automation version its current stage entry runs (None: an entry begun before versions were kept)."""
    archived_at: datetime | None = Field(default=None, index=True)
    """Archived: off the boards and lists, its waiting rules cancelled, moves and events refused."""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class TimelineEntry(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    kind: str = Field(index=True)
    text: str = ""
    author_id: int | None = Field(default=None, foreign_key="user.id", index=True)
    rule_name: str | None = None
    entry_no: int | None = None
    data: dict = _json()
    key: str | None = Field(default=None, unique=True)

    @property
    def entry_without_workflow(self) -> bool:
        """A `stage_changed` entry whose stage entry the step that entered the stage finished itself: no workflow of
        its own ran it (`data.workflow: false`)."""
        return (self.data or {}).get("workflow") is False

    def mark_entry_without_workflow(self) -> None:
        self.data = {**(self.data or {}), "workflow": False}


class Effect(SQLModel, table=True):
    """One row per rule run that took effect or was skipped: the idempotency record (key = workflow id / rule)."""

    key: str = Field(primary_key=True)
    item_id: int = Field(index=True)
    rule_type: str
    status: str  # done | skipped | cancelled
    result: dict = _json()
    created_at: datetime = Field(default_factory=utcnow)


class Operation(SQLModel, table=True):
    """Work over many items at once that runs as a workflow of its own (a bulk retry of failed rules): what was
    asked, by whom, and whether it has finished. Its targets say how far it is."""

    id: str = Field(primary_key=True)
    kind: str
    """`failures_retry`."""
    workflow_id: str
    params: dict = _json()
    created_by: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class OperationTarget(SQLModel, table=True):
    """One thing an operation does, chosen when it was asked for: a failed rule of one stage entry to run again."""

    __table_args__ = (UniqueConstraint("operation_id", "workflow_id", "rule"),)
    id: int | None = Field(default=None, primary_key=True)
    operation_id: str = Field(foreign_key="operation.id", index=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    entity: str
    pipeline_id: int
    stage: str
    entry_no: int
    workflow_id: str
    rule: str
    rule_type: str
    version: int = 0
    """The automation version the entry ran when the rule failed (0: not known)."""
    status: str = "pending"
    """pending, done (the rule took effect, now or before), skipped, cancelled or failed."""
    error: str = ""
    finished_at: datetime | None = None


class Task(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    item_id: int | None = Field(default=None, foreign_key="item.id", index=True)
    title: str
    description: str = ""
    responsible_id: int | None = Field(default=None, foreign_key="user.id")
    created_by_id: int | None = Field(default=None, foreign_key="user.id")
    deadline: datetime | None = None
    status: str = "pending"  # pending | in_progress | completed | deferred
    observers: list = _json(list)
    time_tracking: bool = False
    rule_name: str | None = None
    pipeline_id: int | None = None
    stage: str | None = None
    effect_key: str | None = Field(default=None, unique=True)
    completed_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class CrmActivity(SQLModel, table=True):
    """A CRM activity: a to-do on the item (call, meeting, other), `/activities` in the API; not a Temporal
    activity."""

    __tablename__ = "activity"

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    kind: str = "call"
    description: str = ""
    due_at: datetime | None = None
    responsible_id: int | None = Field(default=None, foreign_key="user.id")
    completed: bool = False
    completed_at: datetime | None = None
    complete_on_stage_change: bool = True
    entry_no: int | None = None
    effect_key: str | None = Field(default=None, unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class Notification(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("effect_key", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    item_id: int | None = Field(default=None, foreign_key="item.id", index=True)
    text: str
    read: bool = False
    effect_key: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    """Every email, SMS, messenger message and call to a client, with its delivery status."""

    id: int | None = Field(default=None, primary_key=True)
    item_id: int | None = Field(default=None, foreign_key="item.id", index=True)
    channel: str  # email | sms | telegram | whatsapp | call
    to: str
    subject: str | None = None
    body: str = ""
    status: str = "queued"
    """queued, sent, failed; a call: queued, ringing, answered, no-answer, busy, failed."""
    error: str | None = None
    provider_id: str | None = Field(default=None, index=True)
    tracking_token: str | None = Field(default=None, unique=True)
    links: list = _json(list)
    attachments: list = _json(list)
    effect_key: str | None = Field(default=None, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class Document(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    item_id: int | None = Field(default=None, foreign_key="item.id", index=True)
    template: str
    number: str = Field(index=True)
    title: str = ""
    status: str = "rendering"  # rendering | ready | failed
    docx: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    pdf: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    sha256: str | None = None
    public_token: str | None = Field(default=None, unique=True, index=True)
    public_revoked: bool = False
    public_expires_at: datetime | None = None
    signing: dict = _json()
    signed_pdf: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    effect_key: str | None = Field(default=None, unique=True)
    data: dict = _json()
    created_at: datetime = Field(default_factory=utcnow)
    render_input: dict = _json()  # images (base64) the pending PDF is rendered with; emptied when it is ready


class DocumentTemplate(SQLModel, table=True):
    """A user's own .docx template uploaded through the API."""

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True)
    name: str
    prefix: str = "DOC"
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Sequence(SQLModel, table=True):
    """Per-template, per-year document numbering (INV-2026-0001)."""

    key: str = Field(primary_key=True)
    value: int = 0


class IdempotentRequest(SQLModel, table=True):
    """A client's Idempotency-Key on a creation, move or event, with the answer it got and the request it came with
    (a digest; none on keys recorded before digests were kept)."""

    key: str = Field(primary_key=True)
    route: str
    status_code: int = 200
    response: dict = _json()
    fingerprint: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class DocumentSigner(SQLModel, table=True):
    """One signer of a document sent for signing: a one-time link, and one-time codes kept only as hashes."""

    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(foreign_key="document.id", index=True)
    item_id: int | None = Field(default=None, foreign_key="item.id", index=True)
    position: int = 0
    role: str  # company | client
    name: str
    channel: str  # email | sms
    address: str  # e-mail address or E.164 phone number
    token: str = Field(unique=True, index=True)
    status: str = "pending"  # pending | sent | viewed | signed
    sent_at: datetime | None = None
    viewed_at: datetime | None = None
    signed_at: datetime | None = None
    code_hash: str | None = None
    code_salt: str | None = None
    code_expires_at: datetime | None = None
    code_attempts: int = 0
    codes_sent: int = 0
    last_code_at: datetime | None = None
    effect_key: str | None = Field(default=None, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    link_expires_at: datetime | None = None  # the link answers 404 from then on
    link_revoked_at: datetime | None = None  # closed by POST /documents/{id}/revoke-signing


class Callback(SQLModel, table=True):
    """A one-time URL through which an outside system answers a rule (webhook with callback)."""

    id: int | None = Field(default=None, primary_key=True)
    token: str
    token_hash: str = Field(unique=True, index=True)
    effect_key: str = Field(unique=True)
    workflow_id: str
    rule_name: str
    item_id: int = Field(index=True)
    expires_at: datetime | None = None
    answered_at: datetime | None = None
    values: dict = _json()
    created_at: datetime = Field(default_factory=utcnow)


class DueMomentRecord(SQLModel, table=True):
    """A due moment that stage entries' rules wait for (to the microsecond): how many offered their rule to it.
    The first keeps its own timer; from the second on, the moment's workflow runs them (`HandedRule`)."""

    __tablename__ = "duemoment"
    key: str = Field(primary_key=True)
    due: datetime = Field(index=True)
    arrivals: int = 0
    outside: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    """Whether its workflow runs rules that reach the outside too (a moment first counted by a worker from before
    engine generation 5 does not: those rules keep their own timers)."""


class HandedRule(SQLModel, table=True):
    """A rule a stage entry handed to its due moment's workflow: the call to make at that moment, and what became of
    it (`waiting`, `running` in the batch `run_by` since `claimed_at`, `done` with its outcome, or `withdrawn` by its
    entry)."""

    __table_args__ = (UniqueConstraint("workflow_id", "rule", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    moment: str = Field(index=True)
    workflow_id: str
    rule: str
    seq: int
    item_id: int = Field(index=True)
    call: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    state: str = "waiting"
    run_by: str | None = None
    claimed_at: datetime | None = None
    outcome: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    told: bool = False
    created_at: datetime = Field(default_factory=utcnow)
