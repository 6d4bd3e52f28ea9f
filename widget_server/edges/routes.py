"""The explicit route list."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from widget_server.edges import (
    analytics,
    avatars,
    console,
    conversations,
    export,
    health,
    keys,
    mcp_http,
    metrics,
    openai_compat,
    openapi,
    pages,
    people,
    persona_groups,
    persona_transfer,
    personas,
    prompt,
    prompt_jobs,
    safety_policy,
    summary,
    test_personas,
    test_runs,
    webhooks,
    widget_session,
    widget_ws,
)
from widget_server.edges.assets import STATIC_DIR
from widget_server.edges.embed_script import embed_js
from widget_server.edges.http import Operation, Resource, upgrade_required
from widget_server.edges.query_params import IGNORED

GROUPS = "/v1/projects/{project_id}/persona-groups"
MEMBERS = GROUPS + "/{group_id}/personas"


def routes() -> list[BaseRoute]:
    """One `Resource` per path with every method it has; the query parameters an operation reads are declared
    here once, and both the check of a request's query and the OpenAPI document come from that declaration."""
    return [
        Resource("/", get=Operation(pages.home, IGNORED)),
        Resource("/demo/csp", get=Operation(pages.demo_csp, IGNORED)),
        Resource("/embed.js", get=Operation(embed_js, IGNORED)),
        Resource("/health", get=health.health),
        Resource("/openapi.json", get=openapi.openapi),
        Resource("/metrics", get=metrics.metrics),
        Resource("/v1/persona", get=Operation(people.generate_persona, people.QUERY)),
        Resource("/v1/personas", get=Operation(personas.list_personas, personas.LIST), post=personas.create_persona),
        Resource("/v1/personas/import", post=Operation(persona_transfer.import_persona, persona_transfer.IMPORT)),
        Resource("/v1/personas/{id}/export", get=persona_transfer.export_persona),
        Resource("/v1/personas/{id}", get=personas.get_persona, put=personas.replace_persona,
                 patch=personas.replace_persona, delete=personas.delete_persona),
        Resource("/v1/personas/{id}/generate-image", post=avatars.generate_persona_image),
        Resource("/avatars/{id}.svg", get=Operation(avatars.avatar_svg, IGNORED)),
        Resource("/avatars/{id}.png", get=Operation(avatars.avatar_png, IGNORED)),
        Resource("/v1/test-suites/schema", get=test_runs.suite_schema),
        Resource("/v1/test-runs", get=Operation(test_runs.list_runs, test_runs.LIST), post=test_runs.create_run),
        Resource("/v1/test-runs/{id}", get=test_runs.get_run),
        Resource("/v1/test-runs/{id}/events", get=test_runs.run_events),
        Resource("/v1/personas/{id}/prompt", post=prompt.prompt),
        Resource("/v1/personas/{id}/prompt/stream", post=prompt.prompt_stream),
        Resource("/v1/personas/{id}/prompt/jobs", post=prompt_jobs.create_job),
        Resource("/v1/prompt/jobs", get=Operation(prompt_jobs.list_jobs, prompt_jobs.JOBS)),
        Resource("/v1/prompt/jobs/{id}", get=prompt_jobs.get_job),
        Resource("/v1/prompt/jobs/{id}/cancel", post=prompt_jobs.cancel_job),
        Resource("/v1/prompt/sessions", get=Operation(prompt_jobs.list_sessions, prompt_jobs.SESSIONS)),
        Resource("/v1/test-personas", get=Operation(test_personas.list_test_personas, test_personas.LIST),
                 post=test_personas.create_test_persona),
        Resource("/v1/test-personas/from-person", post=test_personas.create_from_person),
        Resource("/v1/test-personas/{id}", get=test_personas.get_test_persona, put=test_personas.replace_test_persona,
                 delete=test_personas.delete_test_persona),
        Resource("/v1/test-personas/{id}/generate-image", post=avatars.generate_test_persona_image),
        Resource(GROUPS, get=Operation(persona_groups.list_groups, persona_groups.GROUPS),
                 post=persona_groups.create_group),
        Resource(GROUPS + "/{group_id}", get=persona_groups.get_group),
        Resource(MEMBERS, get=Operation(persona_groups.list_members, persona_groups.MEMBERS),
                 post=persona_groups.add_member, delete=persona_groups.delete_members),
        Resource(MEMBERS + "/{persona_id}", get=persona_groups.get_member, patch=persona_groups.override_member,
                 delete=persona_groups.delete_member),
        Resource(MEMBERS + "/{persona_id}/promote", post=persona_groups.promote_member),
        Resource(MEMBERS + "/{persona_id}/generate-image", post=avatars.generate_group_persona_image),
        Resource("/v1/library/personas", get=Operation(persona_groups.list_library, persona_groups.LIBRARY)),
        Resource("/v1/library/personas/{id}", get=persona_groups.get_library_persona,
                 delete=persona_groups.delete_library_persona),
        Resource("/v1/conversations", get=Operation(conversations.list_conversations, conversations.LIST)),
        Resource("/v1/conversations/{id}", get=conversations.get_conversation),
        Resource("/v1/conversations/{id}/claim", post=conversations.claim),
        Resource("/v1/conversations/{id}/release", post=conversations.release),
        Resource("/v1/conversations/{id}/messages", post=conversations.post_message),
        Resource("/v1/conversations/{id}/resolve", post=conversations.resolve),
        Resource("/v1/conversations/{id}/close", post=conversations.close),
        Resource("/v1/analytics/events", get=Operation(analytics.list_events, analytics.EVENTS)),
        Resource("/v1/analytics/export", get=Operation(export.export, export.EXPORT)),
        Resource("/v1/analytics/summary", get=Operation(summary.summary, summary.SUMMARY)),
        Resource("/v1/analytics/visitors/{visitor_id}", delete=analytics.erase_visitor),
        Resource("/v1/analytics/retention", get=analytics.get_retention, put=analytics.put_retention),
        Resource("/v1/webhooks", get=webhooks.list_webhooks, post=webhooks.create_webhook),
        Resource("/v1/webhooks/{id}", delete=webhooks.delete_webhook),
        Resource("/v1/webhooks/{id}/attempts", get=Operation(webhooks.list_attempts, webhooks.ATTEMPTS)),
        Resource("/v1/safety-policy", get=safety_policy.get_policy, put=safety_policy.put_policy,
                 delete=safety_policy.delete_policy),
        Resource("/v1/keys", get=keys.list_keys, post=keys.create_key),
        Resource("/v1/keys/{id}", delete=keys.revoke_key),
        Resource("/v1/keys/{id}/rotate", post=keys.rotate_key),
        Resource("/v1/identity", get=keys.get_identity, put=keys.put_identity),
        Resource("/v1/identity/rotate", post=keys.rotate_identity),
        Resource("/v1/openai/chat/completions", post=openai_compat.chat_completions),
        Resource("/v1/openai/models", get=openai_compat.list_models),
        Resource("/v1/openai/models/{model}", get=openai_compat.get_model),
        Resource("/v1/openai/embeddings", post=openai_compat.create_embeddings),
        Resource("/v1/widget/sessions", post=widget_session.create_session, options=widget_session.preflight),
        WebSocketRoute("/v1/widget/ws", widget_ws.widget_socket),
        Route("/mcp", mcp_http.McpEndpoint()),  # the MCP server (streamable HTTP): JSON-RPC, not operations of the API
        Resource("/v1/widget/ws", get=Operation(upgrade_required, documented=False)),  # plain HTTP: 426, or 405
        *console.routes(),  # the support console's pages (not operations of the API)
        Mount("/static", app=StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
