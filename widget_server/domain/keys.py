"""A tenant's API keys: secret `sk_` keys for its servers, publishable `pk_` keys (with their allowed origins)
for browsers. Shown once when made, stored only as a SHA-256 hash (192-bit random keys: a fast hash cannot be
brute-forced and allows lookup).

A node remembers the tenant of each secret key it has seen work (`KeyTenants`), only so that a REST prompt can
check its key in the same round trip as its persona read (`persona_by_secret`): whether the key is active is always
what storage says in that request, so a key revoked or ended anywhere (another node, the CLI) stops at once.

A key is revoked at once, or rotated: a new key of the same kind (and origins) is made, and the old one keeps
working for a grace period so that a deployment can switch over; then it stops. A widget session remembers the
publishable key it was made with, and a socket opened with it is refused once that key has ended.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.backends.storage.rows import Row
from widget_server.clock import now
from widget_server.domain import origins as origins_
from widget_server.errors import AuthError, Conflict, InvalidRequest, NotFound, TenantNotFound, UnknownKey
from widget_server.ids import hash_key, new_id, new_key

KINDS = {"secret": "sk", "publishable": "pk"}
MAX_GRACE_S = 30 * 86400
DEFAULT_GRACE_S = 86400


def to_public(row: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see of a key: never the key, only its first characters."""
    def stamp(name: str) -> str | None:
        return row[name].isoformat() if row.get(name) else None

    return {"id": row["id"], "kind": row["kind"], "hint": row["hint"], "origins": row["origins"],
            "created_at": stamp("created_at"), "expires_at": stamp("expires_at"), "revoked_at": stamp("revoked_at"),
            "persona_quota": row.get("persona_quota")}


MAX_PERSONA_QUOTA = 1_000_000_000


def check_quota(quota: Any) -> int | None:
    """A key's monthly GET /v1/persona quota: None (the server's default) or a whole number from 0."""
    if quota is None:
        return None
    if isinstance(quota, float) and quota.is_integer():
        quota = int(quota)  # JSON has one number type: 100.0 is 100 requests
    if not isinstance(quota, int) or isinstance(quota, bool) or not 0 <= quota <= MAX_PERSONA_QUOTA:
        raise InvalidRequest(f"persona_quota must be a whole number from 0 to {MAX_PERSONA_QUOTA}",
                             details={"field": "persona_quota"})
    return quota


async def create_key(storage: Storage, tenant_id: str, kind: Any, origins: Any = None, persona_quota: Any = None
                     ) -> tuple[str, dict[str, Any]]:
    """The new key (returned this once) and its public view; a publishable key needs its allowed origins; a
    monthly quota of GET /v1/persona requests may be set (None: the server's default)."""
    quota = check_quota(persona_quota)
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidRequest("kind must be secret or publishable", details={"field": "kind"})
    if await storage.get_tenant(tenant_id) is None:
        raise TenantNotFound(f"no tenant {tenant_id}")
    if origins is not None and (not isinstance(origins, list) or not 1 <= len(origins) <= 50
                                or not all(isinstance(o, str) for o in origins)):
        raise InvalidRequest("origins must be a list of 1 to 50 origins", details={"field": "origins"})
    if kind == "secret" and origins is not None:
        raise InvalidRequest("a secret key has no origins (it is not used in browsers)", details={"field": "origins"})
    clean: list[str] = []
    if kind == "publishable":
        if not origins:
            raise InvalidRequest("a publishable key needs at least one allowed origin", details={"field": "origins"})
        clean = [origins_.normalize_rule(o) for o in origins]
    key = new_key(KINDS[kind])
    row = await storage.add_key(new_id("key"), tenant_id, kind, hash_key(key), key[:7], clean, quota)
    return key, to_public(row)


class KeyTenants:
    """The tenant of each secret key (by hash) seen active on this node, the newest `MAX` of them. A hint, never
    a credential: it says which tenant to ask storage about, not that the key still works."""

    MAX = 10_000

    def __init__(self) -> None:
        self._by_hash: dict[str, str] = {}

    def get(self, key_hash: str) -> str | None:
        return self._by_hash.get(key_hash)

    def knows(self, key: str) -> bool:
        return hash_key(key) in self._by_hash

    def put(self, key_hash: str, tenant_id: str) -> None:
        if key_hash not in self._by_hash and len(self._by_hash) >= self.MAX:
            del self._by_hash[next(iter(self._by_hash))]  # the oldest
        self._by_hash[key_hash] = tenant_id

    def drop(self, key_hash: str) -> None:
        self._by_hash.pop(key_hash, None)


ENDED = "unknown, revoked or expired API key"


async def authenticate_secret(storage: Storage, key: str | None, seen: KeyTenants | None = None) -> str:
    """The tenant id of an active secret key, or `AuthError`; `seen` remembers it."""
    if not key or not key.startswith("sk_"):
        raise AuthError("missing or malformed API key: send Authorization: Bearer sk_…")
    key_hash = hash_key(key)
    row = await storage.find_key(key_hash, "secret")
    if row is None:
        raise AuthError(ENDED)
    if seen is not None:
        seen.put(key_hash, str(row["tenant_id"]))
    return str(row["tenant_id"])


async def persona_by_secret(storage: Storage, seen: KeyTenants, key: str | None, ref: str
                            ) -> tuple[str, Row | None] | None:
    """For a secret key this node has seen work: its tenant and the persona `ref` names (None: no such persona),
    both read in one round trip; `AuthError` when the key has ended since. None for a key not seen (the caller
    authenticates it first, as any request)."""
    if not key or not key.startswith("sk_") or (tenant_id := seen.get(key_hash := hash_key(key))) is None:
        return None
    row, active = await storage.persona_and_secret(tenant_id, ref, key_hash)
    if not active:
        seen.drop(key_hash)
        raise AuthError(ENDED)
    return tenant_id, row


async def secret_key_row(storage: Storage, key: str | None) -> dict[str, Any]:
    """The row of an active secret key; `AuthError` for a missing or malformed key, `UnknownKey` for a
    well-formed one that is unknown, revoked or expired (PersonaGen tells the two apart)."""
    if not key or not key.startswith("sk_"):
        raise AuthError("missing or malformed API key: send Authorization: Bearer sk_…")
    row = await storage.find_key(hash_key(key), "secret")
    if row is None:
        raise UnknownKey(ENDED)
    return row


async def authenticate_publishable(storage: Storage, key: Any) -> dict[str, Any]:
    if not isinstance(key, str) or not key.startswith("pk_"):
        raise AuthError("missing or malformed publishable key")
    row = await storage.find_key(hash_key(key), "publishable")
    if row is None:
        raise AuthError("unknown, revoked or expired publishable key")
    return row


async def _own(storage: Storage, tenant_id: str, key_id: str) -> dict[str, Any]:
    row = await storage.get_key(tenant_id, key_id)
    if row is None:
        raise NotFound(f"no key {key_id[:40]!r}", code="key.not_found")
    if row["revoked_at"] is not None or (row["expires_at"] is not None and row["expires_at"] <= now()):
        raise Conflict("this key has ended already", code="key.ended")
    return row


async def _last_secret(storage: Storage, tenant_id: str, key_id: str) -> bool:
    """Whether `key_id` is the tenant's only secret key that is active and not already on its way out."""
    live = [k for k in await storage.list_keys(tenant_id, "secret")
            if k["revoked_at"] is None and k["expires_at"] is None]
    return [k["id"] for k in live] == [key_id]


async def rotate(storage: Storage, tenant_id: str, key_id: str, grace_s: Any = DEFAULT_GRACE_S
                 ) -> tuple[str, dict[str, Any]]:
    """A new key like `key_id` (returned once); the old one works for `grace_s` more seconds, then stops."""
    if isinstance(grace_s, float) and grace_s.is_integer():
        grace_s = int(grace_s)  # JSON has one number type: 60.0 is 60 seconds
    if not isinstance(grace_s, int) or isinstance(grace_s, bool) or not 0 <= grace_s <= MAX_GRACE_S:
        raise InvalidRequest(f"grace_s must be whole seconds from 0 to {MAX_GRACE_S}", details={"field": "grace_s"})
    old = await _own(storage, tenant_id, key_id)
    key, made = await create_key(storage, tenant_id, old["kind"], old["origins"] or None, old.get("persona_quota"))
    await storage.end_key(tenant_id, key_id, expires_at=now() + timedelta(seconds=grace_s))
    return key, made


async def revoke(storage: Storage, tenant_id: str, key_id: str) -> None:
    """The key stops working now. The last secret key is kept: without one the tenant could not come back."""
    row = await _own(storage, tenant_id, key_id)
    if row["kind"] == "secret" and await _last_secret(storage, tenant_id, key_id):
        raise Conflict("this is the tenant's last secret key: make or rotate to another first", code="key.last_secret")
    await storage.end_key(tenant_id, key_id, revoked_at=now())


async def persona_if_active(storage: Storage, tenant_id: str, persona_id: str,
                            key_id: str | None) -> tuple[dict[str, Any] | None, bool]:
    """A widget session's persona, and whether its publishable key still works (sessions made before keys were
    recorded: no), read in one round trip."""
    if key_id is None:
        return None, False
    return await storage.persona_and_key(tenant_id, persona_id, key_id)
