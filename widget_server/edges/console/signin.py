"""Sign-in and sign-out (`/console/login`, `/console/logout`).

Attempts are counted per account (the e-mail, known or not) and per client address, over
`console_login_window_s`; past either limit the form says when to try again and checks no password.
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from widget_server.domain import console_users
from widget_server.edges.console import auth
from widget_server.edges.console.render import page
from widget_server.edges.state import app_state
from widget_server.errors import CsrfFailed

MAX_FIELD = 1024


def safe_next(value: object) -> str:
    """Where to go after signing in: a console path of this server, never another site (`//evil`, `/\\evil`)."""
    if isinstance(value, str) and value.startswith("/console") and "\\" not in value and "//" not in value \
            and all(32 < ord(c) < 127 for c in value):
        return value
    return "/console/"


def _form_page(request: Request, status: int = 200, *, error: str | None = None, email: str = "",
               next_: str = "/console/", notice: str | None = None) -> Response:
    pre, token = auth.login_form_token(request)
    response = page(request, "login.html", status_code=status, error=error, email=email, next=next_, notice=notice,
                    login_csrf=token)
    auth.set_login_cookie(request, response, pre)
    return response


async def login_form(request: Request) -> Response:
    if await auth.current(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    notice = "You have signed out." if request.query_params.get("signed_out") else None
    return _form_page(request, next_=safe_next(request.query_params.get("next")), notice=notice)


async def login(request: Request) -> Response:
    auth.check_size(request)
    form = await request.form()
    email = str(form.get("email") or "")[:MAX_FIELD].strip()
    password = str(form.get("password") or "")[:MAX_FIELD]
    next_ = safe_next(form.get("next"))
    try:
        await auth.check_csrf(request, auth.login_expected_token(request))
    except CsrfFailed as exc:
        return _form_page(request, 403, error=exc.message, email=email, next_=next_)
    limits = app_state(request).deps.limits
    address = request.client.host if request.client else "unknown"
    for rule, key, whose in (("console_login_address", address, "from your address"),
                             ("console_login", email.lower(), "for this account")):
        wait = await limits.hit(rule, key)
        if wait is not None:
            minutes = max(1, math.ceil(wait / 60))
            return _form_page(request, 429, email=email, next_=next_,
                              error=f"Too many sign-in attempts {whose}. Try again in {minutes} minute"
                                    f"{'s' if minutes > 1 else ''}.")
    user = await console_users.authenticate(app_state(request).deps.storage, email, password) if email else None
    if user is None:
        return _form_page(request, 401, error="That e-mail and password do not match an account.", email=email,
                          next_=next_)
    session_id = await console_users.start_session(app_state(request).deps.storage, user)
    response = RedirectResponse(next_, status_code=303)
    auth.sign_in(request, response, session_id)
    return response


@auth.console_page("read")
async def logout(request: Request) -> Response:
    sid = auth.session_id(request)
    if sid:
        await console_users.end_session(app_state(request).deps.storage, sid)
    response = RedirectResponse("/console/login?signed_out=1", status_code=303)
    auth.sign_out(request, response)
    return response
