"""The console's sign-in: an API key exchanged for a session cookie (HttpOnly, SameSite=Strict, signed), and the
CSRF token every form and state-changing call carries.

The cookie holds who signed in (the key's id, role, a prefix of its hash), when the session ends and a random
session id, signed with a secret kept in the database (`SettingsRecord` `console`), so every API process accepts
it. It stops working when it expires, when its key is revoked or replaced, or when the session signs out (the
session id is then remembered as ended until it would have expired). The CSRF token is an HMAC of the session id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from api.deps import hash_key
from models.settings import Settings
from models.tables import ApiKey, SettingsRecord, utcnow

COOKIE = "stageflow_console"
LOGIN_COOKIE = "stageflow_console_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_SECONDS = 12 * 3600
RECORD = "console"


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    role: str
    session_id: str
    csrf: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


class SignInNeeded(Exception):
    """A console page asked for without a valid session."""


def _record(session: Session) -> SettingsRecord:
    record = session.get(SettingsRecord, RECORD)
    if record is None:
        record = SettingsRecord(key=RECORD, value={"secret": secrets.token_hex(32), "ended": {}})
        session.add(record)
        try:
            session.commit()
        except IntegrityError:  # another process made it first
            session.rollback()
            record = session.get(SettingsRecord, RECORD)
    return record


def _sign(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def _csrf(secret: str, session_id: str) -> str:
    return _sign(secret, f"csrf:{session_id}".encode())[:40]


def make_cookie(session: Session, name: str, role: str, key_id: int | None, key_hash: str) -> str:
    secret = _record(session).value["secret"]
    payload = json.dumps({
        "n": name, "r": role, "k": key_id, "h": key_hash[:16], "e": int(time.time()) + SESSION_SECONDS,
        "s": secrets.token_hex(16),
    }, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _sign(secret, payload)


def _payload(session: Session, cookie: str | None) -> tuple[dict[str, Any], str] | None:
    if not cookie or "." not in cookie or len(cookie) > 2000:
        return None
    encoded, signature = cookie.rsplit(".", 1)
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    record = _record(session)
    secret = record.value["secret"]
    if not hmac.compare_digest(_sign(secret, payload), signature) or not isinstance(data, dict):
        return None
    if data.get("e", 0) < time.time() or data.get("s") in (record.value.get("ended") or {}):
        return None
    return data, secret


def current_user(request: Request, session: Session, settings: Settings) -> ConsoleUser | None:
    """Who holds the request's session cookie, while the session and its key are valid."""
    found = _payload(session, request.cookies.get(COOKIE))
    if found is None:
        return None
    data, secret = found
    if data.get("k") is None:
        bootstrap = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        if not bootstrap or not hash_key(bootstrap).startswith(str(data.get("h"))):
            return None
    else:
        row = session.exec(select(ApiKey).where(ApiKey.id == data["k"])).first()
        if row is None or row.revoked or not row.key_hash.startswith(str(data.get("h"))):
            return None
    return ConsoleUser(name=str(data.get("n")), role=str(data.get("r")), session_id=str(data["s"]),
                       csrf=_csrf(secret, str(data["s"])))


def end_session(session: Session, user: ConsoleUser) -> None:
    record = _record(session)
    now = int(time.time())
    ended = {sid: until for sid, until in (record.value.get("ended") or {}).items() if until > now}
    ended[user.session_id] = now + SESSION_SECONDS
    record.value = {**record.value, "ended": ended}
    record.updated_at = utcnow()
    session.add(record)
    session.commit()


async def check_csrf(request: Request, user: ConsoleUser) -> None:
    """A state-changing call carries the session's CSRF token, as a form field or the X-CSRF-Token header."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        given = (await request.form()).get(CSRF_FIELD)
    if not isinstance(given, str) or not hmac.compare_digest(given, user.csrf):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="The form's CSRF token is missing or wrong")


def require_admin(user: ConsoleUser) -> None:
    if not user.admin:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Only an admin key changes this")
