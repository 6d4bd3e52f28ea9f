"""Who is signed in to the console, and what they may do: the session cookie, CSRF tokens, role checks.

- The cookie `console_session` holds the session id signed with itsdangerous (salt `console`, its own), HttpOnly,
  `SameSite=Strict`, `Path=/console`, `Secure` when the request came over https; it is refused past the session's
  absolute lifetime, and the database refuses it once idle too long or signed out (`domain/console_users`).
- CSRF: every POST carries a token, as the form field `csrf` or the header `X-CSRF-Token`: HMAC-SHA256 of the
  session id under the server's secret (the sign-in form's, of a random pre-session cookie). Without it, or with
  another session's, the answer is 403 and nothing changes.
- `console_page(capability)` wraps every endpoint: no session sends a GET to the sign-in page (and a POST gets 401);
  a role without the capability gets 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from widget_server.domain import console_users
from widget_server.domain.console_users import ConsoleSession
from widget_server.edges.state import app_state
from widget_server.errors import CsrfFailed, Forbidden, PayloadTooLarge, SignedOut

COOKIE = "console_session"
LOGIN_COOKIE = "console_login"  # the sign-in form's CSRF secret, before there is a session
SALT = "console"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
MAX_BODY = 2 * 1024 * 1024  # a console form (a persona or a policy of YAML included) is far smaller


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(app_state(request).secret.get_secret_value(), salt=SALT)


def _mac(request: Request, purpose: str, value: str) -> str:
    key = app_state(request).secret.get_secret_value().encode()
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/console", httponly=True, samesite="strict",
                        secure=secure(request))


def sign_in(request: Request, response: Response, session_id: str) -> None:
    """Give the browser its session cookie (and forget the sign-in form's)."""
    settings = app_state(request).settings
    set_cookie(request, response, COOKIE, _serializer(request).dumps(session_id), int(settings.console_absolute_s))
    response.delete_cookie(LOGIN_COOKIE, path="/console", httponly=True, samesite="strict", secure=secure(request))


def sign_out(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict", secure=secure(request))


def session_id(request: Request) -> str | None:
    """The signed session id of the cookie, if the signature holds and it is within the absolute lifetime."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        value = _serializer(request).loads(raw, max_age=int(app_state(request).settings.console_absolute_s))
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


async def current(request: Request) -> ConsoleSession | None:
    """The signed-in user of this request, or None."""
    cached = getattr(request.state, "console", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    sid = session_id(request)
    if sid is None:
        return None
    settings = app_state(request).settings
    found = await console_users.resume_session(app_state(request).deps.storage, sid, settings.console_idle_s,
                                               settings.console_absolute_s)
    request.state.console = found
    return found


def csrf_token(request: Request) -> str:
    sid = session_id(request)
    return _mac(request, "csrf", sid) if sid else ""


def login_form_token(request: Request) -> tuple[str, str]:
    """The sign-in form's pre-session secret (kept, or new) and the CSRF token bound to it; the secret goes in a
    cookie with `set_login_cookie`."""
    pre = request.cookies.get(LOGIN_COOKIE) or ""
    if len(pre) < 20:
        pre = secrets.token_urlsafe(24)
    return pre, _mac(request, "login", pre)


def set_login_cookie(request: Request, response: Response, pre: str) -> None:
    set_cookie(request, response, LOGIN_COOKIE, pre, 3600)


def login_expected_token(request: Request) -> str:
    pre = request.cookies.get(LOGIN_COOKIE) or ""
    return _mac(request, "login", pre) if len(pre) >= 20 else ""


async def _sent_token(request: Request) -> str:
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    if request.headers.get("content-type", "").split(";")[0].strip() in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        value = form.get("csrf")
        return value if isinstance(value, str) else ""
    return ""


async def check_csrf(request: Request, expected: str) -> None:
    sent = await _sent_token(request)
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise CsrfFailed("this form has expired or did not come from the console: reload the page and try again")


def check_size(request: Request) -> None:
    """A console request's body is declared (browsers always say how long a form is) and at most `MAX_BODY`."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > MAX_BODY:
        raise PayloadTooLarge(f"a console request has a Content-Length of at most {MAX_BODY} bytes")


Handler = Callable[[Request], Awaitable[Response]]


def console_page(capability: str = "read", write: str | None = None) -> Callable[[Handler], Handler]:
    """Wrap a console endpoint: signed in, CSRF on a change, and the role's capability checked (`capability` for
    reading, `write` — default the same — for a POST)."""
    def wrap(handler: Handler) -> Handler:
        @wraps(handler)
        async def endpoint(request: Request) -> Response:
            user = await current(request)
            if user is None:
                if request.method in UNSAFE:
                    raise SignedOut("your console session has ended: sign in again")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/console/login?next={quote(target, safe='')}", status_code=303)
            if request.method in UNSAFE:
                check_size(request)
                await check_csrf(request, csrf_token(request))
            needed = (write or capability) if request.method in UNSAFE else capability
            if not user.can(needed):
                raise Forbidden(f"your role ({user.role}) cannot do this", details={"needs": needed})
            return await handler(request)
        return endpoint
    return wrap


def user_of(request: Request) -> ConsoleSession:
    """The signed-in user (inside a `console_page` endpoint)."""
    user: ConsoleSession = request.state.console
    return user


def context(request: Request) -> dict[str, Any]:
    """What every console template gets: the user, the CSRF token, the current path."""
    return {"user": getattr(request.state, "console", None), "csrf": csrf_token(request),
            "path": request.url.path}
