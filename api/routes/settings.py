"""Company-wide settings: my company (requisites, bank, signature and stamp) and the business calendar."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import Session

from api.deps import SessionDep, admin_only, member_only
from api.errors import Problems
from api.schemas import IMAGE_MAX_BYTES, CalendarSettings, CompanySettingsPublic, CompanySettingsUpdate
from models.tables import SettingsRecord, User, utcnow

router = APIRouter(prefix="/settings", tags=["settings"], dependencies=member_only)
COMPANY_MAX_BODY_BYTES = 3 * IMAGE_MAX_BYTES  # two base64 images and the rest


def _read(session: Session, key: str) -> dict:
    record = session.get(SettingsRecord, key)
    return dict(record.value) if record is not None else {}


def _write(session: Session, key: str, value: dict) -> None:
    record = session.get(SettingsRecord, key) or SettingsRecord(key=key)
    record.value = value
    record.updated_at = utcnow()
    session.add(record)
    session.commit()


@router.put("/company", response_model=CompanySettingsPublic, dependencies=admin_only)
def put_company(body: CompanySettingsUpdate, session: SessionDep):
    problems = Problems()
    if body.signer_user_id is not None and session.get(User, body.signer_user_id) is None:
        problems.add(("body", "signer_user_id"), f"user {body.signer_user_id} does not exist")
    problems.raise_if_any()
    value = body.model_dump(mode="json")
    _write(session, "company", value)
    return value


@router.get("/company", response_model=CompanySettingsPublic)
def get_company(session: SessionDep):
    return CompanySettingsPublic.model_validate(_read(session, "company"))


@router.put("/calendar", response_model=CalendarSettings, dependencies=admin_only)
def put_calendar(body: CalendarSettings, session: SessionDep):
    value = body.model_dump(mode="json")
    _write(session, "calendar", value)
    return value


@router.get("/calendar", response_model=CalendarSettings)
def get_calendar(session: SessionDep):
    return CalendarSettings.model_validate(_read(session, "calendar"))
