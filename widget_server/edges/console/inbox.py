"""The console's inbox (`/console/inbox`): where agents will take over escalated conversations (human takeover
is its own issue); until then it says so, and lists the conversations waiting for a person."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from widget_server.edges.console.auth import console_page
from widget_server.edges.console.render import page


@console_page("read")
async def index(request: Request) -> Response:
    return page(request, "placeholder.html", title="Inbox",
                message="Taking over escalated conversations arrives with human takeover. Until then, find "
                        "escalated conversations under Transcripts (filter: escalated).")


ROUTES: list[BaseRoute] = [Route("/console/inbox", index, methods=["GET"])]
