"""Signing in to the console with an API key, and out."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from api.console.pages import ChangeDep, UserDep, back, page
from api.console.session import COOKIE, LOGIN_COOKIE, SESSION_SECONDS, end_session, make_cookie
from api.deps import SessionDep, SettingsDep, caller_for_key

router = APIRouter()

@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str = ""):
    token = secrets.token_hex(16)
    response = page(request, "login.html", None, login_token=token, error=error[:200])
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/ui", max_age=3600)
    return response


@router.post("/login")
def login(
    request: Request, session: SessionDep, settings: SettingsDep,
    api_key: Annotated[str, Form(max_length=500)] = "", login_token: Annotated[str, Form(max_length=100)] = "",
):
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or login_token != expected:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="The sign-in form's token is missing or wrong")
    caller = caller_for_key(settings, session, api_key.strip()) if api_key.strip() else None
    if caller is None:
        response = page(request, "login.html", None, status_code=status.HTTP_401_UNAUTHORIZED,
                        login_token=expected, error="That API key is not valid.")
        return response
    cookie = make_cookie(session, caller.name, caller.role, caller.key_id, caller.key_hash)
    response = back("/ui/pipelines")
    response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", path="/ui", max_age=SESSION_SECONDS,
                        secure=request.url.scheme == "https")
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(user: ChangeDep, session: SessionDep):
    end_session(session, user)
    response = back("/ui/login")
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/")
def home(user: UserDep):
    return back("/ui/pipelines")
