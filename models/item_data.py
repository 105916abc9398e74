"""What the engine reads of the CRM for a rule: the item's data tree, its automation, the company calendar."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from models.domain import data_tree
from models.domain.automation import AutomationConfig
from models.domain.timing import CalendarSpec
from models.store import get_by
from models.tables import Automation, Company, Contact, Item, Pipeline, SettingsRecord, Stage, User


def item_tree(session: Session, item: Item) -> dict[str, Any]:
    pipeline = session.get(Pipeline, item.pipeline_id)
    stage = get_by(session, Stage, pipeline_id=item.pipeline_id, code=item.stage) if item.stage else None
    responsible = session.get(User, item.responsible_id)
    supervisor = session.get(User, responsible.supervisor_id) if responsible and responsible.supervisor_id else None
    return data_tree.item_tree(
        item,
        pipeline_name=pipeline.name if pipeline else None,
        stage_name=stage.name if stage else None,
        responsible=responsible,
        supervisor=supervisor,
        contact=session.get(Contact, item.contact_id) if item.contact_id else None,
        company=session.get(Company, item.company_id) if item.company_id else None,
    )


def build_data(
    session: Session,
    item: Item,
    *,
    constants: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
    results: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return data_tree.data_tree(
        item.entity_type, item_tree(session, item), constants=constants, variables=variables, results=results
    )


def load_calendar(session: Session) -> CalendarSpec:
    record = session.get(SettingsRecord, "calendar")
    return CalendarSpec(**record.value) if record and record.value else CalendarSpec()


def load_automation(session: Session, pipeline_id: int) -> tuple[AutomationConfig, int]:
    row = session.get(Automation, pipeline_id)
    if row is None:
        return AutomationConfig(), 0
    return AutomationConfig.model_validate(row.config), row.version
