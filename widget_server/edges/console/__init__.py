"""The support console: Jinja2 pages under /console, signed in with a console user's session.

Each page's module lists its routes (`ROUTES`); `routes()` gathers them after sign-in and sign-out.
"""

from __future__ import annotations

from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Route

from widget_server.edges.console import dashboard, inbox, personas, playground, policy, signin, testcases, transcripts


async def _to_dashboard(_request: object) -> RedirectResponse:
    return RedirectResponse("/console/", status_code=308)


def routes() -> list[BaseRoute]:
    return [
        Route("/console", _to_dashboard, methods=["GET"]),
        Route("/console/login", signin.login_form, methods=["GET"]),
        Route("/console/login", signin.login, methods=["POST"]),
        Route("/console/logout", signin.logout, methods=["POST"]),
        *dashboard.ROUTES, *personas.ROUTES, *policy.ROUTES, *playground.ROUTES, *transcripts.ROUTES,
        *inbox.ROUTES, *testcases.ROUTES,
    ]
