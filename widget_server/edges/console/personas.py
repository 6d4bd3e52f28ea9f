"""The console's Personas page (`/console/personas`): a placeholder until it is built."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from widget_server.edges.console.auth import console_page
from widget_server.edges.console.render import page


@console_page("read")
async def index(request: Request) -> Response:
    return page(request, "placeholder.html", title="Personas", message="This page is being built.")


ROUTES: list[BaseRoute] = [Route("/console/personas", index, methods=["GET"])]
