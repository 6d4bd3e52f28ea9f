"""The console's Personas pages (`/console/personas`): the list, a persona's form (new and edit), delete after a
confirmation, import and export YAML (the format of `widget-server persona import|export`).

Every role reads; only owners change (`configure`). The domain validates (`domain/personas`); a refused form comes
back as typed, each error beside its field (`personas_form`). After a change the browser is sent on (POST,
redirect, GET) to a page that says what happened.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from widget_server.domain import persona_files, personas
from widget_server.edges.console import yaml_text
from widget_server.edges.console.auth import console_page, user_of
from widget_server.edges.console.personas_form import SIDES, PersonaForm, control_id
from widget_server.edges.console.render import page
from widget_server.edges.state import app_state
from widget_server.errors import Conflict, InvalidRequest, PolicyError, TopicsUnavailable, WidgetError

REFUSED = (InvalidRequest, Conflict, PolicyError, TopicsUnavailable)  # what a form shows; anything else is a page
NOTICES = {"created": "The persona was created.", "saved": "Your changes were saved.",
           "deleted": "The persona was deleted.", "imported": "The persona was imported.",
           "replaced": "The import replaced the persona with the same slug."}


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    doc = row["doc"]
    provider, topics = doc.get("provider") or {}, doc.get("topics") or {}
    return {"id": row["id"], "name": doc["name"], "slug": row["slug"], "greeting": doc.get("greeting") or "",
            "topics": {side: [t["id"] for t in topics.get(side) or []] for side in SIDES},
            "off_topic": topics.get("off_topic", "refuse"),
            "provider": " · ".join(p for p in (provider.get("kind") or "server default", provider.get("model")) if p),
            "updated": row["updated_at"]}


PAGE = 50  # personas per page of the list (a tenant may have 500)


@console_page("read")
async def index(request: Request) -> Response:
    storage, tenant_id = app_state(request).deps.storage, user_of(request).tenant_id
    after = request.query_params.get("after") or None
    if after is not None and (len(after) > 40 or not after.isascii()):
        after = None
    rows = await storage.list_personas(tenant_id, after=after, limit=PAGE + 1)
    more = rows[PAGE]["id"] if len(rows) > PAGE else None
    return page(request, "personas.html", title="Personas", personas=[_summary(r) for r in rows[:PAGE]],
                total=await storage.count_personas(tenant_id), after=after, more=rows[PAGE - 1]["id"] if more else None,
                notice=_notice(request))


def _form_page(request: Request, form: PersonaForm, row: dict[str, Any] | None = None,
               error: WidgetError | None = None) -> Response:
    errors = form.errors(error) if error is not None else {}
    return page(request, "personas_form.html", status_code=error.status_code if error else 200,
                title=f"Edit {row['doc']['name']}" if row else "New persona", form=form, row=row, errors=errors,
                control_id=control_id, notice=None if error else _notice(request),
                retype_key=bool(error and form.api_key), editable=user_of(request).can("configure"))


@console_page("configure")
async def new(request: Request) -> Response:
    if request.method == "GET":
        return _form_page(request, PersonaForm.blank())
    form = PersonaForm.of_form(await request.form())
    deps = app_state(request).deps
    try:
        made = await personas.create(deps.storage, user_of(request).tenant_id, form.create(), deps.sealer)
    except REFUSED as exc:
        return _form_page(request, form, error=exc)
    return _see(f"/console/personas/{made['id']}?notice=created")


@console_page("read", write="configure")
async def edit(request: Request) -> Response:
    deps, tenant_id = app_state(request).deps, user_of(request).tenant_id
    row = await personas.get(deps.storage, tenant_id, request.path_params["id"])
    if request.method == "GET":
        return _form_page(request, PersonaForm.of_persona(row), row)
    api_key_set = bool((row["doc"].get("provider") or {}).get("api_key"))
    form = PersonaForm.of_form(await request.form(), api_key_set)
    try:
        await personas.replace(deps.storage, tenant_id, row["id"], form.patch(), partial=True, sealer=deps.sealer)
    except REFUSED as exc:
        return _form_page(request, form, row, exc)
    deps.hub.changed("persona", [tenant_id, row["id"]])  # every node reads its topics again
    return _see(f"/console/personas/{row['id']}?notice=saved")


@console_page("configure")
async def delete(request: Request) -> Response:
    storage, tenant_id = app_state(request).deps.storage, user_of(request).tenant_id
    row = await personas.get(storage, tenant_id, request.path_params["id"])
    if request.method == "GET":
        return page(request, "personas_delete.html", title=f"Delete {row['doc']['name']}", row=row)
    app_state(request).deps.hub.persona_deleted(tenant_id, await personas.delete(storage, tenant_id, row["id"]))
    return _see("/console/personas?notice=deleted")


@console_page("read")
async def export(request: Request) -> Response:
    row = await personas.get(app_state(request).deps.storage, user_of(request).tenant_id, request.path_params["id"])
    shown = persona_files.export_doc(row)  # as the CLI prints it: no sealed api_key
    return Response(persona_files.to_yaml(shown), media_type="application/yaml; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{row["slug"]}.yaml"'})


async def _uploaded(form: Any) -> str:
    """The YAML of the import form: the file chosen, else the text pasted."""
    upload = form.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        raw = await upload.read(yaml_text.MAX_CHARS + 1)
        try:
            return raw.decode("utf-8-sig").replace("\r\n", "\n")
        except UnicodeDecodeError:
            raise yaml_text.InvalidYaml("the file is not UTF-8 text") from None
    text = form.get("yaml")
    return text.replace("\r\n", "\n") if isinstance(text, str) else ""


async def _import(request: Request, doc: Any) -> tuple[dict[str, Any], str]:
    """Create the persona, or replace the one its slug (or its name's) names, as `persona import` does."""
    deps, tenant_id = app_state(request).deps, user_of(request).tenant_id
    made, created = await persona_files.import_doc(deps.storage, tenant_id, doc, deps.sealer, replace=True)
    if not created:
        deps.hub.changed("persona", [tenant_id, made["id"]])
    return made, "imported" if created else "replaced"


@console_page("configure")
async def import_(request: Request) -> Response:
    if request.method == "GET":
        return page(request, "personas_import.html", title="Import a persona", text="", errors=[])
    text, parsed = "", None
    try:
        text = await _uploaded(await request.form())
        if not text.strip():
            raise InvalidRequest("choose a YAML file, or paste the YAML")
        parsed = yaml_text.parse(text)
        if not isinstance(parsed.doc, dict):
            raise InvalidRequest("the YAML must be a mapping of a persona's fields (name: …, greeting: …)")
        made, verb = await _import(request, parsed.doc)
    except REFUSED as exc:
        return page(request, "personas_import.html", status_code=exc.status_code, title="Import a persona",
                    text=text, errors=_located(exc, parsed))
    return _see(f"/console/personas/{made['id']}?notice={verb}")


def _located(exc: WidgetError, parsed: yaml_text.YamlText | None) -> list[dict[str, Any]]:
    """The errors of an import, each with its field and the line where the YAML has it."""
    listed = exc.details.get("errors")
    if not isinstance(listed, list) or parsed is None:
        return [{"field": None, "message": exc.message, "line": exc.details.get("line")}]
    return [{"field": e.get("field"), "message": str(e.get("message", "")).removeprefix("Value error, "),
             "line": parsed.line_of(str(e.get("field", "")))} for e in listed]


ROUTES: list[BaseRoute] = [
    Route("/console/personas", index, methods=["GET"]),
    Route("/console/personas/new", new, methods=["GET", "POST"]),
    Route("/console/personas/import", import_, methods=["GET", "POST"]),
    Route("/console/personas/{id}", edit, methods=["GET", "POST"]),
    Route("/console/personas/{id}/delete", delete, methods=["GET", "POST"]),
    Route("/console/personas/{id}/export", export, methods=["GET"]),
]
