"""Identity verification: a site that knows its visitors proves who they are to the widget.

The site's server computes `user.hash` = hex HMAC-SHA256(identity secret, `user.id`) and the widget sends both
with the session request; where the tenant requires identity, a session without a verified user is refused. A
verified visitor's conversations belong to that user: only that user resumes them.

The identity secret is never stored: it is derived from the server's secret key and a salt of the tenant's (like
webhook secrets), shown once when it is made or rotated, and a copy of the database reveals none. Rotating
`WIDGET_SECRET_KEY` changes it too. A plaintext secret set by hand before this existed keeps working until the
tenant rotates it, which removes it from the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.errors import AuthError, Conflict, InvalidRequest, TenantNotFound


def derive(server_secret: str, tenant_id: str, salt: str) -> str:
    mac = hmac.new(server_secret.encode(), f"identity:{tenant_id}:{salt}".encode(), hashlib.sha256).digest()
    return "idsec_" + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def secret_of(tenant: dict[str, Any], server_secret: str) -> str | None:
    if tenant.get("identity_salt"):
        return derive(server_secret, tenant["id"], tenant["identity_salt"])
    return tenant.get("identity_secret") or None  # the legacy plaintext, until rotated


def hash_ok(secret: str, user_id: str, user_hash: str) -> bool:
    expected = hmac.new(secret.encode(), user_id.encode(errors="surrogatepass"), hashlib.sha256).hexdigest()
    # bytes, not str: compare_digest refuses non-ASCII strings, and a hash is hex anyway
    return hmac.compare_digest(expected.encode(), (user_hash or "").encode(errors="surrogatepass"))


async def _tenant(storage: Storage, tenant_id: str) -> dict[str, Any]:
    tenant = await storage.get_tenant(tenant_id)
    if tenant is None:
        raise TenantNotFound(f"no tenant {tenant_id}")
    return tenant


def view(tenant: dict[str, Any]) -> dict[str, Any]:
    return {"require_identity": bool(tenant["require_identity"]),
            "secret_set": bool(tenant.get("identity_salt") or tenant.get("identity_secret"))}


async def settings(storage: Storage, tenant_id: str) -> dict[str, Any]:
    return view(await _tenant(storage, tenant_id))


async def rotate(storage: Storage, server_secret: str, tenant_id: str) -> dict[str, Any]:
    """A new identity secret (in this answer only); the previous one stops verifying at once."""
    await _tenant(storage, tenant_id)
    salt = secrets.token_urlsafe(24)
    await storage.set_identity(tenant_id, identity_salt=salt, identity_secret=None)
    return {**await settings(storage, tenant_id), "secret": derive(server_secret, tenant_id, salt)}


async def require(storage: Storage, tenant_id: str, required: Any) -> dict[str, Any]:
    """Whether sessions must carry a verified user; requiring it needs a secret first (or every session fails)."""
    if not isinstance(required, bool):
        raise InvalidRequest("require_identity must be true or false", details={"field": "require_identity"})
    tenant = await _tenant(storage, tenant_id)
    if required and not view(tenant)["secret_set"]:
        raise Conflict("make an identity secret first (rotate): without one no visitor can be verified",
                       code="identity.no_secret")
    await storage.set_identity(tenant_id, require_identity=required)
    return await settings(storage, tenant_id)


async def verified_user(storage: Storage, server_secret: str, tenant_id: str, user: Any) -> str | None:
    """The verified user id, None for an anonymous visitor; refused when the tenant requires one or the hash
    does not match. Without an identity secret a claimed user id is not trusted (and not returned)."""
    tenant = await _tenant(storage, tenant_id)
    if user is None:
        if tenant["require_identity"]:
            raise AuthError("this site requires a verified user", code="auth.identity_required")
        return None
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not 1 <= len(user["id"]) <= 200:
        raise InvalidRequest("user must be an object with a string id of 1 to 200 characters")
    secret = secret_of(tenant, server_secret)
    if secret is None:
        return None
    if not hash_ok(secret, user["id"], str(user.get("hash", ""))):
        raise AuthError("user hash does not match", code="auth.identity_invalid")
    return str(user["id"])
