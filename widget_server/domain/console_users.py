"""Console users (a tenant's people, with a role) and their sign-in sessions.

Passwords: scrypt from the standard library (memory-hard), N=2^14, r=8, p=5 — 16 MiB a hash, one of OWASP's
recommended settings, 0.4 s on one core here — with a 16-byte salt, stored as `scrypt$N$r$p$salt$hash` so that
the parameters can be raised later and old hashes still verify. Hashing runs in a worker thread.

Sessions: a sign-in makes a random 256-bit session id; the browser keeps it (signed, in the cookie the edge sets)
and the database keeps only its SHA-256. A session ends when it has been idle longer than `idle_s`, when it is
older than `absolute_s`, at sign-out, or when its user is deleted.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.backends.storage.console import EmailTaken
from widget_server.clock import now
from widget_server.errors import Conflict, InvalidRequest, NotFound, TenantNotFound
from widget_server.ids import new_id

log = logging.getLogger(__name__)
ROLES = ("owner", "agent", "viewer")
# What each role may do: everyone reads; agents and owners handle conversations (and try personas in the
# playground); only owners configure (personas, policy).
CAN = {"read": {"owner", "agent", "viewer"}, "converse": {"owner", "agent"}, "configure": {"owner"}}
SCRYPT = {"n": 2**14, "r": 8, "p": 5}
MIN_PASSWORD, MAX_PASSWORD = 12, 1024
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s.]{1,63}$")
TOUCH_EVERY = timedelta(seconds=60)  # `last_seen_at` is written at most this often per session


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=32)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, **SCRYPT)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = _scrypt(password, base64.urlsafe_b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.urlsafe_b64decode(digest))


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the e-mail is unknown, so that a wrong e-mail takes as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def generate_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def normalize_email(email: Any) -> str:
    if not isinstance(email, str) or not EMAIL.match(email.strip()):
        raise InvalidRequest("not an e-mail address", details={"errors": [{"field": "email",
                                                                           "message": "not an e-mail address"}]})
    return email.strip().lower()


def check_password(password: Any) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidRequest(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters",
                             details={"errors": [{"field": "password", "message": "too short or too long"}]})
    return password


def to_public(row: dict[str, Any]) -> dict[str, Any]:
    return {"user_id": row["id"], "email": row["email"], "role": row["role"], "tenant_id": row["tenant_id"],
            "display_name": row.get("display_name"), "created_at": row["created_at"].isoformat()}


async def create_user(storage: Storage, tenant_id: str, email: Any, role: Any = "owner", password: Any = None,
                      display_name: str | None = None) -> tuple[dict[str, Any], str | None]:
    """The new user's public view, and the generated password when none was given (shown this once)."""
    email = normalize_email(email)
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", details={"errors": [{"field": "role",
                                                                                            "message": "unknown"}]})
    if await storage.get_tenant(tenant_id) is None:
        raise TenantNotFound(f"no tenant {tenant_id}")
    generated = generate_password() if password is None else None
    password_hash = await asyncio.to_thread(hash_password, check_password(password or generated))
    row = {"id": new_id("usr"), "tenant_id": tenant_id, "email": email, "role": role,
           "display_name": (display_name or email.split("@")[0])[:100], "password_hash": password_hash,
           "created_at": now()}
    try:
        await storage.console.add_user(row)
    except EmailTaken:
        raise Conflict(f"a console user already signs in with {email}", code="user.email_taken") from None
    return to_public(row), generated


async def list_users(storage: Storage, tenant_id: str) -> list[dict[str, Any]]:
    if await storage.get_tenant(tenant_id) is None:
        raise TenantNotFound(f"no tenant {tenant_id}")
    return [to_public(r) for r in await storage.console.list_users(tenant_id)]


async def delete_user(storage: Storage, tenant_id: str, ref: str) -> dict[str, Any]:
    """Delete a user by id or e-mail; their sessions end with them."""
    rows = await storage.console.list_users(tenant_id)
    found = next((r for r in rows if ref == r["id"] or ref.strip().lower() == r["email"]), None)
    if found is None:
        raise NotFound(f"no console user {ref} in tenant {tenant_id}", code="user.not_found")
    await storage.console.delete_user(tenant_id, found["id"])
    return to_public(found)


async def authenticate(storage: Storage, email: str, password: str) -> dict[str, Any] | None:
    """The user whose e-mail and password these are, or None (in about the same time either way)."""
    row = await storage.console.user_by_email(email.strip().lower())
    ok = await asyncio.to_thread(verify_password, password, row["password_hash"] if row else _dummy_hash())
    return row if ok and row is not None else None


@dataclass(frozen=True)
class ConsoleSession:
    id_hash: str
    tenant_id: str
    user_id: str
    email: str
    role: str
    display_name: str

    def can(self, what: str) -> bool:
        return self.role in CAN[what]


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def start_session(storage: Storage, user: dict[str, Any]) -> str:
    """A new session for `user`; returns its id (for the cookie; the database keeps only its hash)."""
    session_id = secrets.token_urlsafe(32)
    stamp = now()
    await storage.console.add_session({"id_hash": session_hash(session_id), "tenant_id": user["tenant_id"],
                                       "user_id": user["id"], "created_at": stamp, "last_seen_at": stamp})
    return session_id


async def resume_session(storage: Storage, session_id: str, idle_s: float, absolute_s: float
                         ) -> ConsoleSession | None:
    """The live session with this id, its idle clock restarted; None when unknown, idle too long or too old."""
    id_hash = session_hash(session_id)
    row = await storage.console.session_user(id_hash)
    if row is None:
        return None
    stamp = now()
    if stamp - row["last_seen_at"] > timedelta(seconds=idle_s) or stamp - row["created_at"] > timedelta(
            seconds=absolute_s):
        await storage.console.end_session(id_hash)
        return None
    if stamp - row["last_seen_at"] > TOUCH_EVERY:
        await storage.console.touch_session(id_hash, stamp)
    return ConsoleSession(id_hash, row["tenant_id"], row["user_id"], row["email"], row["role"],
                          row["display_name"] or row["email"])


async def end_session(storage: Storage, session_id: str) -> None:
    await storage.console.end_session(session_hash(session_id))


async def sweep_sessions(storage: Storage, idle_s: float, absolute_s: float) -> int:
    """Forget the sessions that can no longer sign anyone in; returns how many."""
    stamp = now()
    return await storage.console.end_sessions_before(stamp - timedelta(seconds=idle_s),
                                                     stamp - timedelta(seconds=absolute_s))


async def sweep_sessions_forever(storage: Storage, idle_s: float, absolute_s: float, every_s: float = 3600) -> None:
    while True:
        try:
            await sweep_sessions(storage, idle_s, absolute_s)
        except Exception:
            log.exception("console session sweep failed; next try in %.0f s", every_s)
        await asyncio.sleep(every_s)
