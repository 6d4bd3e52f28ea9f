"""`/mcp`: the MCP server over streamable HTTP, its session manager run by the app's lifespan.

The tenant's secret key is the bearer token, checked as every API call checks it, before the SDK sees the request:
a missing or wrong key is a 401 in the house's error shape, and a tool call serves the tenant of the key that came
with that very request.

The transport is stateless: each POST stands alone (no `Mcp-Session-Id` to remember), so behind a balancer any node
answers any call, and a restart loses no session. A reply's progress still streams, on that POST's own answer
(Server-Sent Events). The SDK's check of the Host header against localhost is off: the app's trusted hosts
(`WIDGET_ALLOWED_HOSTS`) rule the Host header here as everywhere, and a rebinding page cannot hold the secret key
anyway.
"""

from __future__ import annotations

import contextlib

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import HTTPConnection, Request
from starlette.types import Receive, Scope, Send

from widget_server.domain.chat.deps import Deps
from widget_server.edges import mcp_server
from widget_server.edges.http import MAX_BODY, tenant_of
from widget_server.edges.mcp_server import Caller
from widget_server.errors import AuthError

NO_HOST_CHECK = TransportSecuritySettings(enable_dns_rebinding_protection=False)


class McpHttp:
    """The MCP server of one app: made and started by its lifespan (`start`), closed by it (`aclose`)."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.server = mcp_server.build(self._caller)
        self._running = contextlib.AsyncExitStack()

    def _caller(self, ctx: Context) -> Caller:
        user = getattr(ctx.request_context.request, "scope", {}).get("user")
        if not isinstance(user, AuthenticatedUser):  # every request was authenticated before the SDK saw it
            raise AuthError("this call came without a secret key")
        return Caller(self.deps, user.access_token.client_id)

    async def start(self) -> None:
        self.server.streamable_http_app(stateless_http=True, transport_security=NO_HOST_CHECK,
                                        max_request_body_size=MAX_BODY)  # (makes the session manager)
        await self._running.enter_async_context(self.server.session_manager.run())

    async def aclose(self) -> None:
        """Ends the calls in flight (a chat's reply is stored as cancelled)."""
        await self._running.aclose()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.server.session_manager.handle_request(scope, receive, send)


def mcp_of(conn: HTTPConnection) -> McpHttp:
    """The MCP server of the app serving this request (the lifespan puts it in every request's state)."""
    found: McpHttp = conn.state.mcp
    return found


class McpEndpoint:
    """The ASGI app at `/mcp`: the key first (an `AuthError` is rendered by the app's one error handler)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        tenant_id = await tenant_of(request)
        # The SDK's own notion of a caller; its `client_id` is what the tools read as the tenant.
        scope["user"] = AuthenticatedUser(AccessToken(token="", client_id=tenant_id, scopes=[]))
        await mcp_of(request).handle(scope, receive, send)


# `/mcp` in the OpenAPI document: described, with no operation (JSON-RPC is not REST), so generated clients and
# schemathesis leave it to MCP clients.
PATH_ITEM = {
    "summary": "The MCP server (Model Context Protocol, streamable HTTP, stateless)",
    "description": "Not a REST operation: connect an MCP client (Authorization: Bearer sk_…; without a valid secret "
                   "key every method is a 401 in the error shape of this API). Tools: list_personas, chat (progress "
                   "notifications while the reply streams), get_conversation, search_transcripts; resource template "
                   "persona://{slug}. The same tools over stdio: `widget-server mcp --tenant ID`.",
    "x-mcp": {"transport": "streamable-http", "stateless": True, "auth": "bearer",
              "tools": ["list_personas", "chat", "get_conversation", "search_transcripts"],
              "resource_templates": ["persona://{slug}"]},
}
