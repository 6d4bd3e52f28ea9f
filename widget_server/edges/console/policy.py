"""The console's Safety policy page (`/console/policy`): the tenant's guardrail policy as YAML in an editor, saved
only when valid (each error listed beside the editor with its field path and the line that has it), removed, and
tried on a text with the saved policy or with the draft in the editor, unsaved (`policy_check`).

Saving and removing are `configure` (owners); checking a text is reading, so every role may try a draft.
Validation and compilation are the guard's (`TenantGuard.save`, `tenant_guard.validate`), as over REST.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from widget_server.domain.guardrails.policy import LIMITS
from widget_server.domain.guardrails.tenant_guard import Compiled, off_loop, validate
from widget_server.edges.console import policy_check, yaml_text
from widget_server.edges.console.auth import console_page, user_of
from widget_server.edges.console.render import page
from widget_server.edges.state import app_state
from widget_server.errors import InvalidRequest, PolicyError, WidgetError

REFUSED = (InvalidRequest, PolicyError)
MAX_SAMPLE = LIMITS["max_chars"]
STARTER = """version: 1
# A few rules to start from (remove the # to use them):
# blocked_terms:
#   - {id: rival, terms: ["acme rival", "rivalco"], match: word, action: refuse}
# pii: {entities: [email, phone, credit_card, iban], action: mask}
# patterns:
#   - {id: ticket, regex: 'TCK-\\d{6}', action: mask, applies_to: [output]}
"""
NOTICES = {"saved": "The policy was saved: it applies to every message from now on.",
           "removed": "The policy was removed: the built-in default applies."}


def _text(value: object) -> str:
    return value.replace("\r\n", "\n") if isinstance(value, str) else ""


async def _saved(request: Request) -> dict[str, Any] | None:
    return await app_state(request).deps.storage.get_policy(user_of(request).tenant_id)


def _located(exc: WidgetError, parsed: yaml_text.YamlText | None) -> list[dict[str, Any]]:
    """Each error of a refused policy: its field path, what is wrong, and the line of the YAML that has it."""
    listed = exc.details.get("errors")
    if not isinstance(listed, list) or parsed is None:
        return [{"field": None, "message": exc.message, "line": exc.details.get("line")}]
    return [{"field": e.get("field"), "message": e.get("message"), "line": parsed.line_of(str(e.get("field", "")))}
            for e in listed]


async def _view(request: Request, text: str, *, errors: list[dict[str, Any]] | None = None, status: int = 200,
                **values: Any) -> Response:
    return page(request, "policy.html", status_code=status, title="Safety policy", text=text, errors=errors or [],
                saved=await _saved(request), can_save=user_of(request).can("configure"),
                notice=NOTICES.get(request.query_params.get("notice", "")) if request.method == "GET" else None,
                **{"sample": "", "source": "input", "use": "saved", "result": None, "used": None, "check_error": None,
                   **values})


@console_page("read", write="configure")
async def index(request: Request) -> Response:
    if request.method == "GET":
        saved = await _saved(request)
        return await _view(request, yaml_text.dump(saved["doc"]) if saved else STARTER)
    text, parsed = _text((await request.form()).get("policy")), None
    try:
        parsed = yaml_text.parse(text)
        await app_state(request).deps.guard.save(user_of(request).tenant_id, parsed.doc)
    except REFUSED as exc:
        return await _view(request, text, errors=_located(exc, parsed), status=exc.status_code)
    return RedirectResponse("/console/policy?notice=saved", status_code=303)


@console_page("configure")
async def remove(request: Request) -> Response:
    await app_state(request).deps.guard.delete(user_of(request).tenant_id)
    return RedirectResponse("/console/policy?notice=removed", status_code=303)


def _sample_problem(sample: str, source: str, use: str) -> str | None:
    if source not in policy_check.SOURCES:
        return "choose where the text comes from: a visitor's message (input) or a reply (output)"
    if use not in ("saved", "draft"):
        return "choose the policy to check with: the saved one or the draft in the editor"
    if len(sample) > MAX_SAMPLE:
        return f"the text to check is longer than {MAX_SAMPLE} characters"
    return None


@console_page("read")
async def check(request: Request) -> Response:
    form = await request.form()
    text, sample = _text(form.get("policy")), _text(form.get("text"))
    source, use = _text(form.get("source")), _text(form.get("use"))
    kept: dict[str, Any] = {"sample": sample, "source": source, "use": use}
    problem = _sample_problem(sample, source, use)
    if problem is not None:
        return await _view(request, text, status=400, check_error=problem, **kept)
    compiled: Compiled
    parsed = None
    try:
        if use == "draft":  # validated and compiled as saving would, and not saved
            parsed = yaml_text.parse(text)
            compiled = (await off_loop(validate, parsed.doc))[1]
        else:
            compiled = await app_state(request).deps.guard.policy(user_of(request).tenant_id)
    except REFUSED as exc:
        return await _view(request, text, errors=_located(exc, parsed), status=exc.status_code, **kept)
    result = await policy_check.check(compiled, sample, source)
    used = "draft" if use == "draft" else ("none" if compiled is None else "saved")
    return await _view(request, text, result=result, used=used, **kept)


ROUTES: list[BaseRoute] = [
    Route("/console/policy", index, methods=["GET", "POST"]),
    Route("/console/policy/remove", remove, methods=["POST"]),
    Route("/console/policy/check", check, methods=["POST"]),
]
