"""The explicit route list."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from widget_server.edges import (
    analytics,
    conversations,
    export,
    health,
    metrics,
    openapi,
    pages,
    personas,
    prompt,
    safety_policy,
    summary,
    webhooks,
    widget_session,
    widget_ws,
)
from widget_server.edges.assets import STATIC_DIR
from widget_server.edges.embed_script import embed_js


def routes() -> list[BaseRoute]:
    return [
        Route("/", pages.home, methods=["GET"]),
        Route("/demo/csp", pages.demo_csp, methods=["GET"]),
        Route("/embed.js", embed_js, methods=["GET"]),
        Route("/health", health.health, methods=["GET"]),
        Route("/openapi.json", openapi.openapi, methods=["GET"]),
        Route("/metrics", metrics.metrics, methods=["GET"]),
        Route("/v1/personas", personas.list_personas, methods=["GET"]),
        Route("/v1/personas", personas.create_persona, methods=["POST"]),
        Route("/v1/personas/{id}", personas.get_persona, methods=["GET"]),
        Route("/v1/personas/{id}", personas.replace_persona, methods=["PUT", "PATCH"]),
        Route("/v1/personas/{id}", personas.delete_persona, methods=["DELETE"]),
        Route("/v1/personas/{id}/prompt", prompt.prompt, methods=["POST"]),
        Route("/v1/personas/{id}/prompt/stream", prompt.prompt_stream, methods=["POST"]),
        Route("/v1/conversations", conversations.list_conversations, methods=["GET"]),
        Route("/v1/conversations/{id}", conversations.get_conversation, methods=["GET"]),
        Route("/v1/conversations/{id}/resolve", conversations.resolve, methods=["POST"]),
        Route("/v1/analytics/events", analytics.list_events, methods=["GET"]),
        Route("/v1/analytics/export", export.export, methods=["GET"]),
        Route("/v1/analytics/summary", summary.summary, methods=["GET"]),
        Route("/v1/analytics/visitors/{visitor_id}", analytics.erase_visitor, methods=["DELETE"]),
        Route("/v1/analytics/retention", analytics.get_retention, methods=["GET"]),
        Route("/v1/analytics/retention", analytics.put_retention, methods=["PUT"]),
        Route("/v1/webhooks", webhooks.list_webhooks, methods=["GET"]),
        Route("/v1/webhooks", webhooks.create_webhook, methods=["POST"]),
        Route("/v1/webhooks/{id}", webhooks.delete_webhook, methods=["DELETE"]),
        Route("/v1/webhooks/{id}/attempts", webhooks.list_attempts, methods=["GET"]),
        Route("/v1/safety-policy", safety_policy.get_policy, methods=["GET"]),
        Route("/v1/safety-policy", safety_policy.put_policy, methods=["PUT"]),
        Route("/v1/safety-policy", safety_policy.delete_policy, methods=["DELETE"]),
        Route("/v1/widget/sessions", widget_session.create_session, methods=["POST"]),
        Route("/v1/widget/sessions", widget_session.preflight, methods=["OPTIONS"]),
        WebSocketRoute("/v1/widget/ws", widget_ws.widget_socket),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
