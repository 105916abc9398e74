"""Employee monitoring and control: notifications, history entries, tasks and activities on the item.

Every row a rule creates carries the rule's effect key, so running a rule again (a retry, a crashed
worker, a reset in the Temporal UI) finds what it made the first time instead of making it twice.
Everything a rule needs (users, dates) is checked before anything is written, and its rows are written
in one transaction, so a rule that fails leaves nothing half done. E-mails are queued as keyed messages
first, sent, then marked sent; a message already sent is never sent again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator
from sqlmodel import Session, col, select

from activities.rule import RuleContext, RuleFailed
from activities.transports.mail import (
    InvalidAddress,
    MailPermanentError,
    MailSettings,
    MailTemporaryError,
    build_message,
    parse_address,
)
from models.domain import timing
from models.domain.data_tree import date_fields, entity_root
from models.domain.events import TaskStatusChanged
from models.domain.fields import (
    RESERVED_TIMELINE_KINDS,
    Moment,
    OptionalText,
    PipelineId,
    ShortText,
    StageCode,
    Text,
    UserRef,
    settings_config,
)
from models.domain.problems import Problem
from models.domain.rule_types import RuleEnv, RuleType, pipeline_problem, stage_problem
from models.item_data import load_calendar
from models.store import add_timeline, get_by, get_or_create, locked_item
from models.tables import CrmActivity, Item, Message, Notification, Task, TimelineEntry, User, utcnow

SUBJECT_LENGTH = 150


# -- users -----------------------------------------------------------------------------------------


def _user_ids(ctx: RuleContext, values: Iterable[Any], field: str) -> dict[int, str]:
    """The distinct user ids a list setting names, each with its place in the settings (`user_ids.1`)."""
    found: dict[int, str] = {}
    for position, value in enumerate(values):
        where = f"{field}.{position}"
        found.setdefault(ctx.user_id(value, where), where)
    return found


def _users(session: Session, located: Mapping[int, str]) -> list[User]:
    """The users by id; a missing one fails the rule, naming the setting that gave its id."""
    users = []
    for user_id, where in located.items():
        user = session.get(User, user_id)
        if user is None:
            raise RuleFailed(f"settings.{where}: user {user_id} does not exist")
        users.append(user)
    return users


# -- notifications ---------------------------------------------------------------------------------


def _subject(ctx: RuleContext, text: str) -> str:
    item = ctx.data.get(entity_root(ctx.entity)) or {}
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    subject = f"{entity_root(ctx.entity)} “{item.get('Title') or ctx.item_id}”: {first_line}"
    return subject if len(subject) <= SUBJECT_LENGTH else subject[: SUBJECT_LENGTH - 1] + "…"


def _email_key(ctx: RuleContext, user_id: int) -> str:
    return ctx.key("email", user_id)


def _queue_emails(session: Session, ctx: RuleContext, users: Sequence[User], text: str) -> list[Message]:
    """One queued message per user with an e-mail address, kept across runs of the rule; returns the
    messages not sent yet."""
    to_send: list[Message] = []
    for user in users:
        if not user.email:
            continue
        message, _ = get_or_create(
            session, Message, _email_key(ctx, user.id),
            item_id=ctx.item_id, channel="email", to=user.email, subject=_subject(ctx, text), body=text,
        )
        if message.status != "sent":
            to_send.append(message)
    return to_send


def _record_notifications(session: Session, ctx: RuleContext, user_ids: Sequence[int], text: str) -> None:
    for user_id in user_ids:
        if get_by(session, Notification, effect_key=ctx.effect_key, user_id=user_id) is None:
            session.add(
                Notification(user_id=user_id, item_id=ctx.item_id, text=text, effect_key=ctx.effect_key, created_at=ctx.at)
            )


async def _send_emails(ctx: RuleContext, messages: Sequence[Message]) -> None:
    """Sends the queued messages over SMTP and marks each sent. A refused address or message fails
    the rule (the message keeps the reason); a connection problem or a busy server is retried."""
    if not messages:
        return
    mail = MailSettings.from_settings(ctx.deps.settings)
    domain = parse_address(mail.sender).domain
    for message in messages:
        try:
            email = build_message(
                sender=mail.sender, to=message.to, subject=message.subject or "", text=message.body,
                message_id_key=message.effect_key, domain=domain,
            )
            await ctx.deps.transports.send_mail(mail, email)
        except (InvalidAddress, MailPermanentError) as error:
            await ctx.db(lambda session, row=message, error=error: _mark(session, row.id, "failed", str(error)))
            raise RuleFailed(f"settings.email: the e-mail to {message.to} was refused: {error}") from error
        except MailTemporaryError as error:
            await ctx.db(lambda session, row=message, error=error: _mark(session, row.id, "queued", str(error)))
            raise
        await ctx.db(lambda session, row=message: _mark(session, row.id, "sent", None))


def _mark(session: Session, message_id: int, status: str, error: str | None) -> None:
    message = session.get(Message, message_id)
    message.status, message.error = status, error
    if status == "sent":
        message.sent_at = utcnow()
    session.add(message)


async def _notify(ctx: RuleContext, located: Mapping[int, str], text: str) -> dict[str, Any]:
    """E-mails first (with `email`), then the notifications: a refused e-mail fails the rule before
    anyone is notified, and a rerun sends only what was not sent yet."""
    email = ctx.settings.email

    def prepare(session: Session) -> tuple[list[Message], list[int]]:
        users = _users(session, located)
        if not email:
            return [], []
        return _queue_emails(session, ctx, users, text), [user.id for user in users if user.email]

    pending, emailed = await ctx.db(prepare)
    await _send_emails(ctx, pending)
    user_ids = list(located)

    def record(session: Session) -> dict[str, Any]:
        _record_notifications(session, ctx, user_ids, text)
        return {"recipients": user_ids, "text": text, "emailed": emailed}

    return await ctx.finish(record)


class NotifySupervisorSettings(BaseModel):
    model_config = settings_config(
        {"text": "{{Deal.Responsible.Name}} has not moved {{Deal.Title}} ({{Deal.Amount}}) in 24 hours"}
    )
    text: Text
    recipient_ids: list[UserRef] | None = Field(default=None, min_length=1, max_length=100)
    """Default: the supervisor of the item's responsible."""
    email: bool = False
    """Also e-mail the recipients that have an e-mail address."""


class NotifySupervisor(RuleType[NotifySupervisorSettings]):
    name = "notify_supervisor"
    group = "monitoring"
    title = "Notify supervisor"
    description = "Notifies the supervisor of the item's responsible (or the given recipients)."
    settings = NotifySupervisorSettings
    returns = ("recipients", "text", "emailed")
    user_fields = ("recipient_ids",)

    async def run(self, ctx: RuleContext[NotifySupervisorSettings]) -> dict[str, Any]:
        """Notifies the supervisor of the item's responsible, or the given recipients."""
        text = ctx.render(ctx.settings.text)
        given = ctx.settings.recipient_ids
        if given:
            return await _notify(ctx, _user_ids(ctx, given, "recipient_ids"), text)

        def supervisor(session: Session) -> int:
            item = session.get(Item, ctx.item_id)
            responsible = session.get(User, item.responsible_id)
            if responsible is None or responsible.supervisor_id is None:
                who = f"{responsible.name} (user {responsible.id})" if responsible else f"user {item.responsible_id}"
                raise RuleFailed(
                    f"settings.recipient_ids: the responsible {who} has no supervisor; "
                    "give recipient_ids or set the user's supervisor_id"
                )
            return responsible.supervisor_id

        return await _notify(ctx, {await ctx.db(supervisor): "recipient_ids"}, text)


class NotifyEmployeeSettings(BaseModel):
    model_config = settings_config(
        {"user_ids": ["{{Constants.Courier}}"], "text": "Deliver {{Deal.Title}} to {{Rule.addr.address}}"}
    )
    user_ids: list[UserRef] = Field(min_length=1, max_length=100)
    text: Text
    email: bool = False
    """Also e-mail the recipients that have an e-mail address."""


class NotifyEmployee(RuleType[NotifyEmployeeSettings]):
    name = "notify_employee"
    group = "monitoring"
    title = "Notify employee"
    description = "Sends a notification to the chosen users."
    settings = NotifyEmployeeSettings
    returns = ("recipients", "text", "emailed")
    user_fields = ("user_ids",)

    async def run(self, ctx: RuleContext[NotifyEmployeeSettings]) -> dict[str, Any]:
        """Notifies the chosen users (e.g. the courier)."""
        text = ctx.render(ctx.settings.text)
        return await _notify(ctx, _user_ids(ctx, ctx.settings.user_ids, "user_ids"), text)


# -- history ---------------------------------------------------------------------------------------


class AddTimelineEntrySettings(BaseModel):
    model_config = settings_config(
        {"text": "{{Deal.Responsible.Name}} kept {{Deal.Title}} waiting", "kind": "violation"}
    )
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


class AddTimelineEntry(RuleType[AddTimelineEntrySettings]):
    name = "add_timeline_entry"
    group = "monitoring"
    title = "Add history entry"
    description = "Writes a text to the item's timeline as the given user, with a kind to filter by."
    settings = AddTimelineEntrySettings
    returns = ("entry_id", "text", "author_id", "kind")
    user_fields = ("author_id",)
    local = True

    async def run(self, ctx: RuleContext[AddTimelineEntrySettings]) -> dict[str, Any]:
        """Writes a text to the item's timeline as the chosen user (default: the item's responsible)."""
        text = ctx.render(ctx.settings.text)
        given = ctx.settings.author_id
        author = ctx.user_id(given, "author_id") if given is not None else ctx.item.responsible_id
        kind = ctx.settings.kind

        def work(session: Session) -> dict[str, Any]:
            _users(session, {author: "author_id"})
            entry_id = add_timeline(
                session, ctx.item_id, kind, text, at=ctx.at, key=ctx.key("entry"), author_id=author,
                rule_name=ctx.rule_name, entry_no=ctx.entry_no,
            )
            return {"entry_id": entry_id, "text": text, "author_id": author, "kind": kind}

        return await ctx.finish(work)


# -- tasks -----------------------------------------------------------------------------------------


def _moment(ctx: RuleContext, session: Session, spec: Any, field: str) -> datetime | None:
    """A deadline or activity date from its setting, counted from the rule's run time."""
    if isinstance(spec, str):
        spec = ctx.render(spec).strip()
    elif isinstance(spec, BaseModel):
        spec = spec.model_dump(exclude_none=True)
    item = session.get(Item, ctx.item_id)
    try:
        return timing.compute_deadline(spec, now=ctx.at, item=date_fields(item), calendar=load_calendar(session))
    except (timing.DueTimeError, ValueError) as error:
        raise RuleFailed(f"settings.{field}: {error}") from error


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC; a stored time without a zone is UTC."""
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)).isoformat()


class CreateTaskSettings(BaseModel):
    model_config = settings_config(
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


class CreateTask(RuleType[CreateTaskSettings]):
    name = "create_task"
    group = "monitoring"
    title = "Create task"
    description = "Creates a task linked to the item: title, description, responsible, deadline, observers."
    settings = CreateTaskSettings
    returns = ("task_id", "title", "deadline")
    user_fields = ("responsible_id", "observers")
    local = True

    async def run(self, ctx: RuleContext[CreateTaskSettings]) -> dict[str, Any]:
        """A task linked to the item, remembering the rule, pipeline and stage that created it."""
        settings = ctx.settings
        title = " ".join(ctx.render(settings.title).split())
        if not title:
            raise RuleFailed("settings.title: the title is empty once its placeholders are filled in")
        description = ctx.render(settings.description)
        given = settings.responsible_id
        responsible = ctx.user_id(given, "responsible_id") if given is not None else ctx.item.responsible_id
        observers = _user_ids(ctx, settings.observers, "observers")

        def work(session: Session) -> dict[str, Any]:
            existing = get_by(session, Task, effect_key=ctx.effect_key)
            if existing is not None:
                return _task_result(existing)
            _users(session, {responsible: "responsible_id"})
            _users(session, observers)
            deadline = _moment(ctx, session, settings.deadline, "deadline")
            task, _ = get_or_create(
                session, Task, ctx.effect_key,
                item_id=ctx.item_id, title=title, description=description, responsible_id=responsible,
                deadline=deadline, observers=list(observers), time_tracking=settings.time_tracking,
                rule_name=ctx.rule_name, pipeline_id=ctx.pipeline_id, stage=ctx.stage,
                created_at=ctx.at, updated_at=ctx.at,
            )
            return _task_result(task)

        return await ctx.finish(work)


def _task_result(task: Task) -> dict[str, Any]:
    return {"task_id": task.id, "title": task.title, "deadline": _iso(task.deadline)}


def _completion_key(ctx: RuleContext, task_id: int) -> str:
    return ctx.key(f"task-{task_id}", "completed")


class CompleteTasksSettings(BaseModel):
    model_config = settings_config({"pipeline_id": None, "stages": ["NEW", "INVOICE"]})
    pipeline_id: PipelineId | None = None
    """Default: this pipeline."""
    stages: list[StageCode] = Field(default_factory=list, max_length=100)
    """Complete the tasks that rules of these stages created for the item; empty = every stage."""


class CompleteTasks(RuleType[CompleteTasksSettings]):
    name = "complete_tasks"
    group = "monitoring"
    title = "Complete tasks"
    description = "Completes the tasks that rules of the given pipeline and stages created for this item."
    settings = CompleteTasksSettings
    returns = ("completed_count", "task_ids")
    local = True

    def check(self, settings: CompleteTasksSettings, env: RuleEnv) -> Iterable[Problem]:
        problems: list[Problem] = []
        stages: Sequence[str] | None = env.stage_codes
        where = "this pipeline"
        if settings.pipeline_id is not None:
            stages, problems = pipeline_problem(settings.pipeline_id, env, env.entity_type)
            where = f"pipeline {settings.pipeline_id}"
        if stages is not None:
            for index, stage in enumerate(settings.stages):
                problems += stage_problem(stage, stages, ("stages", index), where)
        return problems

    async def run(self, ctx: RuleContext[CompleteTasksSettings]) -> dict[str, Any]:
        """Completes the tasks that rules created for this item on the chosen pipeline and stages; each
        completion is a `task_status` event for the item's triggers."""
        pipeline_id = ctx.settings.pipeline_id or ctx.pipeline_id
        stages = list(ctx.settings.stages)

        def work(session: Session) -> dict[str, Any]:
            statement = select(Task).where(
                Task.item_id == ctx.item_id,
                col(Task.rule_name).is_not(None),
                Task.pipeline_id == pipeline_id,
                Task.status != "completed",
            )
            if stages:
                statement = statement.where(col(Task.stage).in_(stages))
            open_tasks = list(session.exec(statement))
            done_before = _completed_by_this_rule(session, ctx)
            completed: list[TaskStatusChanged] = []
            tasks = {task.id: task for task in [*done_before, *open_tasks]}
            for task in sorted(tasks.values(), key=lambda row: row.id):
                if task.status != "completed":
                    previous = task.status
                    task.status, task.completed_at, task.updated_at = "completed", ctx.at, ctx.at
                    session.add(task)
                    add_timeline(
                        session, ctx.item_id, "task_status",
                        f"Task “{task.title}” is now completed (was {previous.replace('_', ' ')}) by rule {ctx.rule_name}",
                        at=ctx.at, key=_completion_key(ctx, task.id), rule_name=ctx.rule_name, entry_no=ctx.entry_no,
                        task_id=task.id, status="completed", **{"from": previous},
                    )
                completed.append(TaskStatusChanged.of(task))
            for event in completed:
                ctx.emit_event(event, suffix=str(event.task_id))
            return {"completed_count": len(completed), "task_ids": [event.task_id for event in completed]}

        return await ctx.finish(work)


def _completed_by_this_rule(session: Session, ctx: RuleContext) -> list[Task]:
    """Tasks an earlier run of this same rule completed (its timeline entries say which)."""
    prefix = ctx.key("task-")
    entries = session.exec(
        select(TimelineEntry).where(TimelineEntry.item_id == ctx.item_id, col(TimelineEntry.key).startswith(prefix, autoescape=True))
    )
    tasks = []
    for entry in entries:
        task = session.get(Task, entry.data.get("task_id"))
        if task is not None:
            tasks.append(task)
    return tasks


# -- activities ------------------------------------------------------------------------------------


class ScheduleActivitySettings(BaseModel):
    model_config = settings_config(
        {
            "kind": "call",
            "description": "Call {{Deal.Contact.Name}} ({{Deal.Contact.Phone}}) about the contract",
            "when": {"in_days": 1, "at": "14:00"},
            "complete_on_stage_change": True,
        }
    )
    kind: Literal["call", "meeting", "other"] = "call"
    description: Text
    when: Annotated[Moment, Field(title="Due")] = "+1d"
    """When the activity is due; `{"in_days": 1, "at": "14:00"}` counts days in the company time zone."""
    responsible_id: UserRef | None = None
    """Default: the item's responsible."""
    complete_on_stage_change: bool = True


class ScheduleActivity(RuleType[ScheduleActivitySettings]):
    name = "schedule_activity"
    group = "monitoring"
    title = "Schedule activity"
    description = (
        "Plans a call, meeting or other to-do on the item, optionally completed when the item changes stage."
    )
    settings = ScheduleActivitySettings
    returns = ("activity_id", "due")
    user_fields = ("responsible_id",)
    local = True

    async def run(self, ctx: RuleContext[ScheduleActivitySettings]) -> dict[str, Any]:
        """A call, meeting or other to-do on the item; by default completed when the item changes stage."""
        settings = ctx.settings
        description = ctx.render(settings.description)
        given = settings.responsible_id
        responsible = ctx.user_id(given, "responsible_id") if given is not None else ctx.item.responsible_id
        on_stage_change = settings.complete_on_stage_change

        def work(session: Session) -> dict[str, Any]:
            existing = get_by(session, CrmActivity, effect_key=ctx.effect_key)
            if existing is not None:
                return {"activity_id": existing.id, "due": _iso(existing.due_at)}
            _users(session, {responsible: "responsible_id"})
            due = _moment(ctx, session, settings.when, "when")
            item = locked_item(session, ctx.item_id)
            left = item.entry_no != ctx.entry_no
            todo, _ = get_or_create(
                session, CrmActivity, ctx.effect_key,
                item_id=ctx.item_id, kind=settings.kind, description=description, due_at=due,
                responsible_id=responsible, complete_on_stage_change=on_stage_change, entry_no=ctx.entry_no,
                completed=bool(left and on_stage_change), completed_at=ctx.at if left and on_stage_change else None,
                created_at=ctx.at,
            )
            return {"activity_id": todo.id, "due": _iso(todo.due_at)}

        return await ctx.finish(work)


