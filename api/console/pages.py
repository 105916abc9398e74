"""What every page of the console shares: its templates (`templates/console/`), who is signed in, the CSRF check of
every change, and the shapes of its answers (a page, a redirect, a refusal)."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, HTTPException, Path as PathParam, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from api.console.session import CSRF_FIELD, ConsoleUser, SignInNeeded, check_csrf, current_user
from api.deps import MAX_ID, SessionDep, SettingsDep
from api.texts import MESSAGE, unstorable
from models.domain.timing import as_utc
from models.item_data import load_calendar

ROOT = Path(__file__).resolve().parent.parent.parent
templates = Jinja2Templates(directory=ROOT / "templates" / "console")
STATIC = Path(__file__).resolve().parent / "static"
Part = Literal["rules", "triggers"]
Entity = Literal["deal", "lead"]
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]
StageCode = Annotated[str, PathParam(pattern=r"^[A-Z0-9_]{1,50}$")]
PieceName = Annotated[str, PathParam(min_length=1, max_length=100)]
"""A rule's or a trigger's name: how the console finds it in its stage, whatever its place."""


def console_user(request: Request, session: SessionDep, settings: SettingsDep) -> ConsoleUser:
    user = current_user(request, session, settings)
    if user is None:
        raise SignInNeeded()
    request.state.console_user = user
    request.state.zone = load_calendar(session).timezone
    return user


# -- words for people: the company's time zone, money, text cut at a word ----------------------------------------


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def when(moment: datetime | date | str | None, zone: str | None = None, seconds: bool = False) -> str:
    """A time as people read it: in the company's time zone, to the minute (the second with `seconds`), no
    microseconds; a date as it is."""
    if moment is None or moment == "":
        return "—"
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    if not isinstance(moment, datetime):
        return moment.isoformat()
    local = as_utc(moment).astimezone(_zone(zone))
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def money(amount: float | int | None, currency: str | None = None) -> str:
    """5000.0 and EUR as `5,000.00 EUR`."""
    if amount is None:
        return "—"
    return f"{amount:,.2f} {currency or ''}".strip()


def cut(text: str | None, length: int = 80) -> str:
    """The text, cut at a word before `length` characters, with `…` when anything was cut."""
    text = " ".join((text or "").split())
    if len(text) <= length:
        return text
    shortened = text[:length].rsplit(" ", 1)[0].rstrip(",;:.-–—")
    return (shortened or text[:length]) + "…"


STAGE_KINDS = {"process": "in progress", "success": "won", "failure": "lost"}
"""A stage's `semantic` in the console's words."""


def stage_kind(semantic: str | None) -> str:
    return STAGE_KINDS.get(semantic or "", semantic or "")


def shown(value: Any) -> str:
    """A setting's value in a sentence or a comparison: as JSON (text in quotes), "nothing" for none, cut at 120
    characters."""
    text = "nothing" if value is None else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 120 else text[:119] + "…"


templates.env.filters.update(when=when, money=money, cut=cut, stage_kind=stage_kind, shown=shown)


UserDep = Annotated[ConsoleUser, Depends(console_user)]


async def changing(request: Request, user: UserDep) -> ConsoleUser:
    """A state-changing call: a session and its CSRF token, and a form of text that can be stored."""
    await check_csrf(request, user)
    if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        bad = [name for name, value in form.multi_items() if isinstance(value, str) and any(unstorable(value))]
        if bad or any(any(unstorable(name)) for name in form.keys()):
            raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                                detail=[{"loc": ["form", name], "msg": MESSAGE, "type": "value_error"} for name in bad])
    return user


ChangeDep = Annotated[ConsoleUser, Depends(changing)]


def page(request: Request, name: str, user: ConsoleUser | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    zone = getattr(request.state, "zone", "UTC")
    return templates.TemplateResponse(
        request, name, {"user": user, "csrf_field": CSRF_FIELD, "zone": zone, **context}, status_code=status_code
    )


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


ERROR_WORDS = {
    401: ("Sign in first", "Your session has ended."),
    403: ("Not for this key", "Your API key may look at this, but not change it; ask an admin."),
    404: ("Not found", "It does not exist, or no longer does."),
    405: ("Not a page", "This address takes a form's answer; open the page again from the menu."),
    409: ("Not now", "The item or the automation changed meanwhile; look at it again."),
    422: ("Not saved", "Something in the form needs another value."),
}
ADDRESS_WORDS = ("Not this address", "A part of the address is not a value this page takes.")
"""A page asked for with a value its address cannot take (`/ui/items/deal/abc`)."""


def wants_page(request: Request) -> bool:
    """A browser's navigation or form (its answer a page), not a script's call of a console route."""
    return request.url.path.startswith("/ui/") and "text/html" in request.headers.get("accept", "")


def error_page(request: Request, status_code: int, detail: Any) -> HTMLResponse:
    """A refusal as a page of the console, in words: what happened and what to do."""
    title, hint = ERROR_WORDS.get(status_code, ("Something went wrong", "Try again in a moment."))
    if status_code == status.HTTP_422_UNPROCESSABLE_CONTENT and request.method == "GET":
        title, hint = ADDRESS_WORDS
    if isinstance(detail, list):
        text = "; ".join(str(problem.get("msg", "")) for problem in detail if isinstance(problem, dict))
    else:
        text = str(detail)
    return page(request, "error.html", getattr(request.state, "console_user", None), status_code=status_code,
                title=title, text=text, hint=hint)


def refusal(request: Request, user: ConsoleUser, pipeline_id: int, refused: HTTPException) -> HTMLResponse:
    problems = refused.detail if isinstance(refused.detail, list) else [{"loc": [], "msg": str(refused.detail)}]
    return page(request, "refused.html", user, status_code=refused.status_code, pipeline_id=pipeline_id,
                problems=problems)


def refusal_text(refused: HTTPException) -> str:
    """A refusal's `detail` as one line for a page: each problem's message, with its field."""
    if not isinstance(refused.detail, list):
        return str(refused.detail)
    return "; ".join(f"{'.'.join(str(part) for part in problem.get('loc', [])[1:])}: {problem.get('msg', '')}"
                     .lstrip(": ") for problem in refused.detail)
