"""Plain data passed in and out of workflows, activities, signals, updates and queries.

Only stdlib types here: this module is imported by workflow code and passed through the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

ITEM_WORKFLOW = "ItemWorkflow"
ENTRY_WORKFLOW = "StageEntryWorkflow"
APPLY_WORKFLOW = "ApplyVersionWorkflow"
"""Takes a saved automation version to the entries already waiting in its pipeline's stages (`in_flight=apply`)."""
RETRY_WORKFLOW = "RetryFailuresWorkflow"
"""Runs the failed rules an operation chose again, at most its rate per second (`POST /failures/retry`)."""
# The engine's steps, each named once: the workflows call them by these names and the activities register under them.
ENTER_STAGE = "enter_stage"
MATCH_TRIGGER = "match_trigger"
BEGIN_ENTRY = "begin_entry"
"""The plan of an entry started without one (by the engine before 0.5.0, or reset to its first workflow task)."""
SCHEDULE_RULE = "schedule_rule"
RESCHEDULE_RULE = "reschedule_rule"
RECORD_RULE_FAILED = "record_rule_failed"
RECORD_WAIT_END = "record_wait_end"
FINISH_ENTRY = "finish_entry"
RULES_TOGETHER = "rules.together"
"""The local activity that runs, in one call, the database-only rules of an entry that are due at its start."""
RULES_OUTSIDE_TOGETHER = "rules.outside_together"
"""The activity that runs, in one call and side by side, the rules of an entry that reach the outside and are due at
its start (engine generation 2); a rule that would be retried is retried in an activity of its own."""
RECORD_VERSION_APPLIED = "record_version_applied"
"""An entry follows a new automation version: the rules it removed are cancelled, the changed ones recorded."""
ENTRIES_TO_APPLY = "entries_to_apply"
"""The next entries of a pipeline still running an older automation version, handed to the version's apply."""
NEXT_RETRIES = "next_retries"
"""The next failed rules a retry operation has not run again yet."""
PREPARE_RETRY = "prepare_retry"
"""One failed rule made ready to run again: its plan (as recorded, or as the automation is now), `rule_retried`."""
RETRY_FINISHED = "retry_finished"
"""How one failed rule's new run ended, for the operation's progress."""
FINISH_OPERATION = "finish_operation"
DUE_WORKFLOW = "DueMomentWorkflow"
"""Runs, at one due moment, the rules that stage entries handed to it (engine generation 4; from 5 also those that
reach the outside)."""
HAND_OVER = "hand_over"
"""An entry offers a waiting rule to its due moment's workflow; the step answers whether the moment took it."""
TAKE_BACK = "take_back"
"""An entry takes a rule it handed over back, unless its due moment's workflow has run it or runs it now."""
RUN_DUE_RULES = "run_due_rules"
"""The next database-only rules handed to a due moment, run together and each recorded on its own."""
RUN_DUE_OUTSIDE_RULES = "run_due_outside_rules"
"""The next rules handed to a due moment that reach the outside, run side by side, each recorded on its own."""
TELL_DUE_OUTCOMES = "tell_due_outcomes"
"""The outcomes of rules a due moment ran, each sent to its entry (`DUE_OUTCOME`)."""
FINISH_DUE_MOMENT = "finish_due_moment"
"""A due moment ran every rule handed to it: what it kept about them goes."""

# The signals the workflows send each other.
ITEM_EVENT = "event"
"""An event for the item's triggers (`ItemWorkflow.event`)."""
RULE_MOVE = "rule_move"
"""A move a rule asked for (`ItemWorkflow.rule_move`)."""
ITEM_CHANGED = "item_changed"
"""Item fields changed, for the rules of the current entry that follow them (`StageEntryWorkflow.item_changed`)."""
CALLBACK = "callback"
"""An outside system answered a rule's callback URL (`StageEntryWorkflow.callback`)."""
APPLY_VERSION = "apply_version"
"""A new automation version for the entry's waiting rules (`StageEntryWorkflow.apply_version`)."""
DUE_OUTCOME = "due_outcome"
"""The outcome of a rule the entry handed to its due moment (`StageEntryWorkflow.due_outcome`)."""

GENERATION = 5
"""The engine generation a workflow run begins under. A run of generation 1 (an item workflow run started or
continued as new from 0.5.0 on, a stage entry started with its plan) takes the new path of every
`workflow.patched` change made before it without recording a marker for each; runs from before keep asking. In
generation 1, the step that enters a stage (`enter_stage`, or `match_trigger` entering the trigger's stage) also
plans the entry and starts its workflow, with the plan as its input; before, the item workflow started each entry
as a child workflow, which loaded its plan itself. In generation 2, an entry's rules that reach the outside and are
due at its start run in one `rules.outside_together` call (`EntryInput.engine`). In generation 3, an entry whose
stage has no rules, or whose rules are all due at once and only touch the database, has no workflow: the step that
enters the stage runs those rules in its own transaction (`finish_entry_at_entering`) and answers that nothing runs
the entry (`Entered.running`, `MatchResult.entry_running`). In generation 4, a database-only rule that waits for a due
time at least `EntryPlan.shared_due_seconds` ahead, and that another entry's rule waits for too, is handed to that due
moment's workflow (`DUE_WORKFLOW`), which runs all the rules handed to it together when the moment comes and tells
each entry its rule's outcome; the entry keeps a timer only as a fallback and takes the rule back when something
changes it before. In generation 5, a waiting rule that reaches the outside is handed to its due moment as well,
whose workflow runs those rules side by side in calls of their own (`RUN_DUE_OUTSIDE_RULES`)."""


class NewerEngine(RuntimeError):
    """A run begun under an engine generation newer than this code knows."""


def known_engine(engine: int) -> None:
    """Refuses a run begun under a newer engine generation than this code knows: its workflow task fails and is
    tried again until a worker of that release takes it (this code would choose an older path, which the newer
    code could not replay)."""
    if engine > GENERATION:
        raise NewerEngine(f"this run began under engine generation {engine}; this worker knows up to {GENERATION}")


# Search attributes (Keyword) registered by `make run` and the worker.
SA_ITEM_ID = "StageflowItemId"
SA_ENTITY = "StageflowEntity"
SA_PIPELINE_ID = "StageflowPipelineId"
SA_STAGE = "StageflowStage"
SA_VERSION = "StageflowVersion"
"""On a stage entry's workflow: the automation version its rules run (`StageflowVersion="7"`)."""
SEARCH_ATTRIBUTES = (SA_ITEM_ID, SA_ENTITY, SA_PIPELINE_ID, SA_STAGE, SA_VERSION)


def item_workflow_id(entity: str, item_id: int) -> str:
    return f"{entity}-{item_id}"


def entry_workflow_id(entity: str, item_id: int, entry_no: int) -> str:
    return f"{entity}-{item_id}/entry-{entry_no}"


def entry_number(workflow_id: str) -> int:
    """The entry number of a stage entry's workflow id (`entry_workflow_id`)."""
    return int(workflow_id.rsplit("/entry-", 1)[1])


@dataclass
class ItemState:
    """The item workflow's input, carried across continue-as-new."""

    item_id: int
    entity: str
    pipeline_id: int
    stage: str | None = None
    entry_no: int = 0
    seen: list[str] = field(default_factory=list)
    search_attributes: bool = True
    history_limit: int = 0
    engine: int = 0
    """The generation this run began under (`GENERATION`); 0 in runs started before there was one. (Running
    workflows carry the field under this name.)"""
    search_stage: str | None = None
    """The stage the workflow's search attributes show (the first one when the workflow was started with them)."""
    archived: bool = False
    """Archived: its entry's waiting rules were cancelled, and moves and events are refused until it is restored."""
    entry_running: bool = True
    """A workflow runs the current entry (none does for an entry the step that entered the stage finished itself)."""


@dataclass
class ItemMove:
    stage: str
    as_user_id: int | None = None
    reason: str = "manual"  # created | manual | trigger | rule
    trigger: str | None = None
    event_type: str | None = None
    request_id: str | None = None
    rule: str | None = None


@dataclass
class Archiving:
    """Archive the item (`archived`) or restore it."""

    archived: bool


@dataclass
class MoveResult:
    moved: bool
    stage: str | None
    entry_no: int
    entry_workflow_id: str | None = None
    detail: str = ""


@dataclass
class ItemEvent:
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None


@dataclass
class EventHandled:
    """What the item did with an event: the trigger it fired (None: none), its stage now, whether it moved."""

    matched: str | None = None
    stage: str | None = None
    moved: bool = False


@dataclass
class EnterCall:
    item_id: int
    entity: str
    stage: str
    previous_stage: str | None
    entry_no: int
    at: datetime
    reason: str = "manual"
    as_user_id: int | None = None
    trigger: str | None = None
    event_type: str | None = None
    rule: str | None = None
    start_entry: bool = False
    """Also plan the new entry and start its workflow (engine generation 1); the step answers its workflow id."""
    search_attributes: bool = False
    """The entry's workflow carries the item's search attributes."""
    finish_entry_at_entering: bool = False
    """With `start_entry` (engine generation 3): an entry with no rules, or whose rules are all due now and only touch
    the database, is finished by the step itself (its rules run in the step's transaction) and has no workflow; the
    step answers an `Entered`."""


@dataclass
class Entered:
    """The entry a step made the item enter: its workflow id (`entry_workflow_id`, whose number may be past the one
    asked for), and whether a workflow runs it (none does when the step finished the entry itself)."""

    workflow_id: str
    running: bool = True


@dataclass
class MatchCall:
    item_id: int
    entity: str
    pipeline_id: int
    stage: str | None
    event: ItemEvent
    at: datetime
    # When set, a match also enters its stage as this entry, in the same transaction.
    enter_entry_no: int = 0
    start_entry: bool = False
    """With `enter_entry_no`: also plan the new entry and start its workflow (engine generation 1)."""
    search_attributes: bool = False
    finish_entry_at_entering: bool = False
    """As `EnterCall.finish_entry_at_entering`; the answer says it in `MatchResult.entry_running`."""


@dataclass
class MatchResult:
    stage: str | None = None
    trigger: str | None = None
    as_user_id: int | None = None
    entered: bool = False
    entry_workflow_id: str | None = None
    """The workflow of the new entry, when the match entered the stage and started it."""
    entry_running: bool = True
    """False when the step finished the new entry itself: no workflow runs it."""


@dataclass
class EntryInput:
    item_id: int
    entity: str
    pipeline_id: int
    stage: str
    entry_no: int
    entered_at: datetime
    parent_workflow_id: str
    plan: EntryPlan | None = None
    """The entry's plan, made in the step that entered the stage and started this workflow; None in entries
    started as child workflows (before 0.5.0), which load it themselves."""
    engine: int = 0
    """The generation the entry began under (`GENERATION`); 0 in entries started before generation 2."""


@dataclass
class RulePlan:
    index: int
    name: str
    type: str
    activity: str
    start: str = "on_entry"
    delay: Any = None
    condition: Any = None
    settings: dict[str, Any] = field(default_factory=dict)
    auxiliary: bool = False
    depends_on: list[str] = field(default_factory=list)
    wait_for: str | None = None
    due: datetime | None = None
    timeout_seconds: float = 120.0
    # Only database work: runs as a local activity on the entry's worker, without a round trip to the server.
    local: bool = False
    version: int = 0
    """The automation version this rule is of (0 in plans made before versions were named on rules)."""


@dataclass
class EntryPlan:
    rules: list[RulePlan] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    config_version: int = 0
    retry_initial_seconds: float = 1.0
    retry_max_attempts: int = 6
    # A rule activity that stops heartbeating for this long is retried elsewhere (0: only its timeout counts).
    heartbeat_seconds: float = 0.0
    shared_due_seconds: float = 0.0
    """A database-only rule due at least this far ahead may be handed to its due moment (engine generation 4; 0:
    never)."""


@dataclass
class VersionChange:
    """A new automation version for an entry: the stage's rules as that version has them (due times not set). The
    entry's waiting rules follow it; rules it does not have are cancelled, rules it adds do not run."""

    version: int
    rules: list[RulePlan] = field(default_factory=list)
    search_attributes: bool = False
    """The entry's workflow shows its version as a search attribute."""


@dataclass
class VersionApplied:
    item_id: int
    entity: str
    workflow_id: str
    entry_no: int
    version: int
    at: datetime
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    """Rule name → what the version changed of it (`delay`, `settings`, `condition`, `type`)."""


@dataclass
class EntryRef:
    entity: str
    item_id: int
    entry_no: int
    stage: str


@dataclass
class ApplyInput:
    """The apply of one saved version to a pipeline's entries in flight, carried across continue-as-new."""

    pipeline_id: int
    version: int
    requested_at: datetime
    """When the save was asked for: the version appears once the save commits, or never (the save failed)."""
    search_attributes: bool = False
    batch: int = 100
    reached: int = 0
    """Entries told so far (over every run of the workflow)."""
    after_item_id: int = 0
    """The last item of the batches told: the next batch starts after it (a batch taken by a step whose answer was
    lost is taken again, its entries told then)."""


@dataclass
class ApplyBatch:
    entries: list[EntryRef] = field(default_factory=list)
    rules: dict[str, list[RulePlan]] = field(default_factory=dict)
    """The version's rules of each stage the entries are in."""


@dataclass
class RetryInput:
    """A retry operation, carried across continue-as-new."""

    operation_id: str
    rate: int
    """At most this many rules started per second."""
    automation: str = "recorded"
    """`recorded`: each rule as its entry planned it (its automation version); `current`: as the automation is now."""
    retry_initial_seconds: float = 1.0
    retry_max_attempts: int = 6
    heartbeat_seconds: float = 0.0
    started: int = 0
    """Rules started so far (over every run of the workflow)."""


@dataclass
class RetryTarget:
    id: int
    """The operation target's row."""
    operation_id: str
    item_id: int
    entity: str
    workflow_id: str
    rule: str
    automation: str = "recorded"


@dataclass
class RetryPrepared:
    """A failed rule ready to run again (`call`), or why it is not run (`status`: done, cancelled, failed)."""

    call: RuleCall | None = None
    status: str = ""
    reason: str = ""
    local: bool = False


@dataclass
class RetryDone:
    target: RetryTarget
    status: str
    """done, skipped, cancelled or failed."""
    error: str = ""


@dataclass
class ScheduleCall:
    item_id: int
    entity: str
    workflow_id: str
    entry_no: int
    rule: RulePlan
    base: datetime


def anchor_field(delay: Any) -> str | None:
    """The item date field a rule's delay (as planned) is counted from, if any."""
    return delay.get("field") if isinstance(delay, dict) else None


def starts_now(rule: RulePlan, now: datetime, follow: bool = True) -> bool:
    """A rule an entry can start at `now`, before any other: due by then and reading no other rule's results (with
    `follow`, not counted from a date field, whose change would move it)."""
    return (not rule.depends_on and rule.due is not None and rule.due <= now
            and not (follow and anchor_field(rule.delay)))


@dataclass
class RescheduleCall:
    """The date field a pending rule's delay is counted from changed: its due time again, from `base` (when its
    delay started). `previous` is the due time it had (None: it waited for the field); `seq` numbers the changes."""

    item_id: int
    entity: str
    workflow_id: str
    entry_no: int
    rule: RulePlan
    base: datetime
    previous: datetime | None
    at: datetime
    seq: int
    version: int = 0
    """Set when the change is a new automation version's delay (not the date field's)."""


@dataclass
class Rescheduled:
    due: datetime | None = None
    """None: the field is empty (or no date), and the rule waits for it."""


@dataclass
class RuleCall:
    item_id: int
    entity: str
    pipeline_id: int
    stage: str
    entry_no: int
    workflow_id: str
    rule: RulePlan
    at: datetime
    constants: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts_before: int = 0
    """Attempts the rule made before this activity, in a `rules.outside_together` call."""


@dataclass
class WaitSpec:
    """After its effect, a rule waits for an outside answer (`callback`) or for fields to change (`fields`)."""

    kind: str
    timeout_seconds: float | None = None
    fields: list[str] = field(default_factory=list)


@dataclass
class RuleOutcome:
    status: str  # done | skipped | cancelled; from a call of rules run together also failed, or again
    result: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    events: list[ItemEvent] = field(default_factory=list)
    moves: list[ItemMove] = field(default_factory=list)
    wait: WaitSpec | None = None
    changed: list[str] = field(default_factory=list)
    """Item fields the rule changed (`close_date`, `Fields.<name>`): delays counted from them follow."""


@dataclass
class RulesTogether:
    """Rules that start together, for one call of `rules.together`; each is run, keyed and recorded on its own."""

    calls: list[RuleCall]
    max_attempts: int = 0
    """The attempts each rule gets (0: no limit): on its last one, a rule that would be retried is reported as failed
    instead. `rules.together` retries the whole call up to this many times; a `rules.outside_together` call is each
    rule's first attempt, and the entry retries a rule alone with the attempts left."""


AGAIN = "again"
"""The status `rules.outside_together` reports for a rule whose attempt failed and that is to be retried: the entry
retries it in an activity of its own, with the attempts left (`RuleOutcome.result["attempt"]` is the one made). The
call itself has one attempt: when it fails as a whole (its worker lost, its time up), each of its rules is retried
the same way."""


@dataclass
class CallbackSignal:
    rule: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class ItemChanged:
    fields: list[str] = field(default_factory=list)


@dataclass
class WaitEnded:
    item_id: int
    workflow_id: str
    entry_no: int
    rule: str
    kind: str
    timed_out: bool
    at: datetime
    detail: str = ""
    rule_type: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    """The rule's results once the wait is over (the callback's values, or what changed)."""
    version: int = 0


@dataclass
class RuleFailure:
    item_id: int
    entity: str
    workflow_id: str
    entry_no: int
    rule: str
    rule_type: str
    error: str
    at: datetime
    version: int = 0


@dataclass
class EntryFinish:
    item_id: int
    entity: str
    workflow_id: str
    entry_no: int
    at: datetime
    cancelled: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    stage: str | None = None
    pipeline_id: int | None = None
    before_plan: bool = False
    left_waiting: dict[str, str] = field(default_factory=dict)
    """Rules that had taken effect and were waiting (for an answer, a field) when the item left: name → type."""
    version: int = 0


@dataclass
class PendingRule:
    name: str
    type: str
    start: str
    state: str  # waiting_delay | waiting_previous | waiting_rule | running
    due: datetime | None = None
    delay: Any = None
    condition: Any = None
    waiting_for: str | None = None
    version: int | None = None
    """The automation version the rule is of."""


@dataclass
class HandOver:
    """A waiting rule an entry offers to its due moment: the call it would make at `due` (`seq` counts the entry's
    offers)."""

    call: RuleCall
    due: datetime
    seq: int


@dataclass
class TakeBack:
    workflow_id: str
    rule: str
    seq: int
    force: bool = False
    """Also from a batch that began it and never finished (its moment's workflow was lost)."""
    stale_seconds: float = 0.0
    """With `force`: only from a batch that began it at least this long ago (a batch runs each rule within its
    timeout, so one older than that is lost); 0: whenever it began."""


@dataclass
class TakenBack:
    """`withdrawn`: the entry has its rule back; `running`: the due moment runs it now (its outcome follows);
    `done`: it ran, with `outcome`."""

    state: str
    outcome: RuleOutcome | None = None


@dataclass
class DueMoment:
    """A due moment's workflow input: the moment (`key`, `due_moment_key`)."""

    key: str
    due: datetime
    heartbeat_seconds: float = 30.0
    """How soon a call of rules that reach the outside whose worker was lost is run again."""


@dataclass
class DueBatch:
    """The next rules handed to a due moment, at most `limit`, run at `at`; `token` names this batch, so that a
    retry finds the rules an earlier attempt began."""

    key: str
    at: datetime
    token: str
    limit: int


@dataclass
class DueOutcome:
    """A handed rule's outcome, for its entry (`DUE_OUTCOME`)."""

    rule: str
    seq: int
    outcome: RuleOutcome


def due_moment_key(due: datetime) -> str:
    """One due moment, to the microsecond, in UTC."""
    return due.astimezone(timezone.utc).isoformat(timespec="microseconds")


def outside_moment(key: str) -> str:
    """Where the rules handed to moment `key` that reach the outside are kept, apart from its database-only ones (a
    worker from before generation 5 running the moment never takes them)."""
    return f"{key} outside"


def due_workflow_id(key: str) -> str:
    return f"due-{key}"
