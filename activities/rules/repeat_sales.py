"""Repeat sales: create a repeat lead, copy a deal.

The new item is created once per rule run (its `origin_key` is the rule's effect key, unique) and enters
its stage through the same path the API uses (`workflows.client.start_item`: update-with-start, update id
"created"), so its own stage rules run. A retry finds the row by its key and only finishes what is
missing: the timeline entries and the start.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, select

from activities.rule import RuleContext, RuleFailed
from models.domain.fields import PipelineId, ShortText, StageCode, UserRef, settings_config
from models.domain.problems import Problem
from models.domain.rule_types import RuleEnv, RuleType, pipeline_problem, stage_problem
from models.store import add_timeline, get_by
from models.tables import Item, Pipeline, Stage, User
from workflows.client import MoveRejected, start_item

COPY_SUFFIX = " Copy"


def _user_id(ctx: RuleContext, value: Any, default: int) -> int:
    """`settings.responsible_id` (a user id or one placeholder), or `default` when it is not given."""
    return default if value is None else ctx.user_id(value, "responsible_id")


def _check_user(session: Session, user_id: int) -> None:
    if session.get(User, user_id) is None:
        raise RuleFailed(f"settings.responsible_id: user {user_id} does not exist")


def _stage_codes(session: Session, pipeline_id: int) -> list[str]:
    statement = select(Stage).where(Stage.pipeline_id == pipeline_id).order_by(Stage.position, Stage.id)
    return [stage.code for stage in session.exec(statement)]


def _target_stage(session: Session, pipeline: Pipeline, wanted: str | None) -> str:
    codes = _stage_codes(session, pipeline.id)
    if not codes:
        raise RuleFailed(f"settings.pipeline_id: pipeline {pipeline.id} ({pipeline.name}) has no stages")
    if wanted is None:
        return codes[0]
    if wanted not in codes:
        raise RuleFailed(
            f"settings.stage: {wanted!r} is not a stage of pipeline {pipeline.id} ({pipeline.name}); "
            f"its stages: {', '.join(codes)}"
        )
    return wanted


def _pipeline(session: Session, pipeline_id: int, entity: str) -> Pipeline:
    pipeline = session.get(Pipeline, pipeline_id)
    if pipeline is None:
        raise RuleFailed(f"settings.pipeline_id: pipeline {pipeline_id} does not exist")
    if pipeline.entity_type != entity:
        raise RuleFailed(f"settings.pipeline_id: pipeline {pipeline_id} holds {pipeline.entity_type}s, not {entity}s")
    return pipeline


def _lead_pipeline(session: Session, pipeline_id: int | None) -> Pipeline:
    if pipeline_id is not None:
        return _pipeline(session, pipeline_id, "lead")
    first = session.exec(select(Pipeline).where(Pipeline.entity_type == "lead").order_by(Pipeline.id)).first()
    if first is None:
        raise RuleFailed("settings.pipeline_id: there is no lead pipeline to create the lead in")
    return first


def _label(item: Item) -> str:
    return f"{item.entity_type} #{item.id} “{item.title}”"


async def _start(ctx: RuleContext, item: Item, stage: str) -> None:
    """The new item enters `stage` as if created through the API; a repeated call changes nothing."""
    if ctx.deps.client is None:
        raise RuntimeError("the worker has no Temporal client to start new items with")
    try:
        await start_item(ctx.deps.client, ctx.deps.settings, item, stage, as_user_id=None)
    except MoveRejected as error:
        if error.status_code == 409:
            return
        raise RuleFailed(
            f"the new {item.entity_type} {item.id} could not enter stage {stage}: {error.detail}"
        ) from error


def _created_entries(ctx: RuleContext, session: Session, source: Item, new: Item, kind: str, text: str) -> None:
    add_timeline(
        session, source.id, kind, f"{text}: {_label(new)}", at=ctx.at, key=ctx.key(kind),
        rule_name=ctx.rule_name, entry_no=ctx.entry_no, related_item_id=new.id, related_entity=new.entity_type,
    )
    add_timeline(
        session, new.id, "created_from", f"Created by rule {ctx.rule_name} of {_label(source)}", at=ctx.at,
        key=ctx.key("created_from"), rule_name=ctx.rule_name, source_item_id=source.id,
        source_entity=source.entity_type,
    )


async def _create_once(
    ctx: RuleContext, build: Callable[[Session, Item], Item], kind: str, text: str
) -> Item:
    """The item this rule creates (keyed by its effect key, so a retry finds it), then started in its stage."""

    def work(session: Session) -> tuple[Item, str, bool]:
        source = session.get(Item, ctx.item_id)
        made = get_by(session, Item, origin_key=ctx.effect_key)
        if made is None:
            made = build(session, source)
            made.source_item_id, made.origin_key = source.id, ctx.effect_key
            made.created_at = made.updated_at = ctx.at
            session.add(made)
            session.flush()
            _created_entries(ctx, session, source, made, kind, text)
        stage = _target_stage(session, session.get(Pipeline, made.pipeline_id), ctx.settings.stage)
        return made, stage, made.stage is not None

    made, stage, started = await ctx.db(work)
    if not started:
        await _start(ctx, made, stage)
    return made


class CreateRepeatLeadSettings(BaseModel):
    model_config = settings_config({"title": "Service renewal for {{Deal.Contact.Name}}", "responsible_id": 1})
    title: ShortText
    responsible_id: UserRef | None = None
    """Default: the item's responsible."""
    pipeline_id: PipelineId | None = None
    """A lead pipeline; default: the lead pipeline with the lowest id."""
    stage: StageCode | None = None
    """Default: the first stage of that pipeline."""


class CreateRepeatLead(RuleType[CreateRepeatLeadSettings]):
    name = "create_repeat_lead"
    group = "repeat_sales"
    title = "Create repeat lead"
    description = "Creates a new lead for the same client, e.g. six months after the deal is won."
    settings = CreateRepeatLeadSettings
    returns = ("lead_id",)
    user_fields = ("responsible_id",)

    def check(self, settings: CreateRepeatLeadSettings, env: RuleEnv) -> Iterable[Problem]:
        if settings.pipeline_id is None:
            target = env.default_lead_pipeline()
            if target is None:
                return [(("pipeline_id",), "there is no lead pipeline to create the lead in; create one first")]
            return stage_problem(settings.stage, env.pipelines[target][1], ("stage",), f"lead pipeline {target}")
        stages, problems = pipeline_problem(settings.pipeline_id, env, "lead")
        if stages is not None:
            problems += stage_problem(settings.stage, stages, ("stage",), f"pipeline {settings.pipeline_id}")
        return problems

    async def run(self, ctx: RuleContext[CreateRepeatLeadSettings]) -> dict[str, Any]:
        """A new lead for the same client (contact and company), in a lead pipeline."""
        settings = ctx.settings
        title = ctx.render(settings.title).strip()
        if not title:
            raise RuleFailed(f"settings.title: {settings.title!r} renders as an empty title")

        def build(session: Session, source: Item) -> Item:
            responsible = _user_id(ctx, settings.responsible_id, source.responsible_id)
            _check_user(session, responsible)
            pipeline = _lead_pipeline(session, settings.pipeline_id)
            _target_stage(session, pipeline, settings.stage)
            return Item(
                entity_type="lead",
                title=title[:255],
                pipeline_id=pipeline.id,
                responsible_id=responsible,
                contact_id=source.contact_id,
                company_id=source.company_id,
            )

        lead = await _create_once(ctx, build, "repeat_lead_created", "Repeat lead created")
        return {"lead_id": lead.id}


class CopyDealSettings(BaseModel):
    model_config = settings_config(
        {"title": "{{Deal.Title}} (delivery)", "pipeline_id": 2, "stage": "NEW", "responsible_id": 3}
    )
    title: ShortText | None = None
    """Default: the original's title followed by "Copy"."""
    pipeline_id: PipelineId | None = None
    """Default: this pipeline."""
    stage: StageCode | None = None
    """Default: the first stage of the target pipeline."""
    responsible_id: UserRef | None = None
    """Default: the original's responsible."""


class CopyDeal(RuleType[CopyDealSettings]):
    name = "copy_deal"
    group = "repeat_sales"
    title = "Copy deal"
    description = "Copies the deal with all its fields into another stage or pipeline; the copy's stage rules run."
    settings = CopyDealSettings
    returns = ("deal_id",)
    user_fields = ("responsible_id",)
    entities = ("deal",)

    def check(self, settings: CopyDealSettings, env: RuleEnv) -> Iterable[Problem]:
        problems: list[Problem] = []
        same_pipeline = settings.pipeline_id is None or settings.pipeline_id == env.pipeline_id
        stages: Sequence[str] | None = env.stage_codes
        if not same_pipeline:
            stages, problems = pipeline_problem(settings.pipeline_id, env, "deal")
        if stages is None:
            return problems
        where = "this pipeline" if same_pipeline else f"pipeline {settings.pipeline_id}"
        problems += stage_problem(settings.stage, stages, ("stage",), where)
        target = settings.stage or (stages[0] if stages else None)
        if same_pipeline and target == env.stage:
            problems.append(
                (("stage",), f"the copy would enter this same stage {env.stage!r} and be copied again, without end")
            )
        return problems

    async def run(self, ctx: RuleContext[CopyDealSettings]) -> dict[str, Any]:
        """A copy of the deal with all its data, in this or another deal pipeline; the copy's stage rules run."""
        settings = ctx.settings
        if ctx.entity != "deal":
            raise RuleFailed(f"copy_deal copies deals; this item is a {ctx.entity}")
        title = ctx.render(settings.title).strip() if settings.title else None
        if settings.title and not title:
            raise RuleFailed(f"settings.title: {settings.title!r} renders as an empty title")

        def build(session: Session, source: Item) -> Item:
            responsible = _user_id(ctx, settings.responsible_id, source.responsible_id)
            _check_user(session, responsible)
            pipeline = _pipeline(session, settings.pipeline_id or source.pipeline_id, "deal")
            _target_stage(session, pipeline, settings.stage)
            return Item(
                entity_type="deal",
                title=(title or f"{source.title}{COPY_SUFFIX}")[:255],
                pipeline_id=pipeline.id,
                amount=source.amount,
                currency=source.currency,
                responsible_id=responsible,
                contact_id=source.contact_id,
                company_id=source.company_id,
                close_date=source.close_date,
                fields=copy.deepcopy(source.fields or {}),
                products=copy.deepcopy(source.products or []),
            )

        duplicate = await _create_once(ctx, build, "deal_copied", "Deal copied")
        return {"deal_id": duplicate.id}
