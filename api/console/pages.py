"""What every page of the console shares: its templates (`templates/console/`), who is signed in, the CSRF check of
every change, and the shapes of its answers (a page, a redirect, a refusal)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Path as PathParam, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from api.console.session import CSRF_FIELD, ConsoleUser, SignInNeeded, check_csrf, current_user
from api.deps import MAX_ID, SessionDep, SettingsDep
from api.texts import MESSAGE, unstorable

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
    return user


UserDep = Annotated[ConsoleUser, Depends(console_user)]


async def changing(request: Request, user: UserDep) -> ConsoleUser:
    """A state-changing call: a session and its CSRF token, and a form of text that can be stored."""
    await check_csrf(request, user)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        bad = [name for name, value in form.multi_items() if isinstance(value, str) and any(unstorable(value))]
        if bad or any(any(unstorable(name)) for name in form.keys()):
            raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                                detail=[{"loc": ["form", name], "msg": MESSAGE, "type": "value_error"} for name in bad])
    return user


ChangeDep = Annotated[ConsoleUser, Depends(changing)]


def page(request: Request, name: str, user: ConsoleUser | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"user": user, "csrf_field": CSRF_FIELD, **context}, status_code=status_code
    )


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


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
