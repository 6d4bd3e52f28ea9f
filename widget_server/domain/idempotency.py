"""`Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): a POST sent again with the same key and the
same request gets the first one's answer, without running again.

Keys are per tenant and stored hashed with the request's fingerprint (a hash of its method, path, query and body)
in the database, so every node sees them: the insert that claims a key decides a race between two nodes. The same
key with another fingerprint is a 422; a key whose request is still running is a 409 (a request whose node died is
given up after `IN_FLIGHT_S`); a key is forgotten `ttl_s` after its first use (read as absent once past it, and
swept). Stored answers are sealed (a new API key's secret is in the answer that made it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from widget_server.backends.storage import Storage
from widget_server.clock import now
from widget_server.domain.sealed import Sealer
from widget_server.errors import IdempotencyInFlight, IdempotencyKeyInvalid, IdempotencyKeyReused

log = logging.getLogger(__name__)
MAX_KEY = 255
IN_FLIGHT_S = 600.0  # longer than any request runs (a reply is cut at the provider's timeout well before)


@dataclass(frozen=True)
class Stored:
    """An answer as it is replayed: its status, the headers it had (but its length) and its body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def parse_key(header: str) -> str:
    """The key of an `Idempotency-Key` header: a structured-field string (`"…"`, RFC 8941), or the bare value
    that many clients send; 1 to 255 characters, else a 400."""
    value = header.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not value:
        raise IdempotencyKeyInvalid("the Idempotency-Key header is empty", details={"header": "Idempotency-Key"})
    if len(value) > MAX_KEY:
        raise IdempotencyKeyInvalid(f"an Idempotency-Key has at most {MAX_KEY} characters",
                                    details={"header": "Idempotency-Key", "max_length": MAX_KEY})
    return value


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256(f"{method}\n{path}\n{query}\n".encode("utf-8", "surrogateescape"))
    digest.update(body)
    return digest.hexdigest()


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class Idempotency:
    def __init__(self, storage: Storage, sealer: Sealer, ttl_s: float,
                 clock: Callable[[], datetime] = now) -> None:
        self.store = storage.idempotency
        self.sealer = sealer
        self.ttl = timedelta(seconds=ttl_s)
        self.clock = clock

    async def begin(self, tenant_id: str, key: str, fingerprint: str) -> Stored | None:
        """Claim `key` for this request (None: run it), or the stored answer of the request that used it."""
        key_hash, stamp = _hash(key), self.clock()
        row = {"tenant_id": tenant_id, "key_hash": key_hash, "fingerprint": fingerprint, "state": "running",
               "created_at": stamp, "expires_at": stamp + self.ttl}
        for _ in range(3):  # a claim lost to a row gone (finished and released) before it could be read: again
            if await self.store.claim(row, stamp, stale_before=stamp - timedelta(seconds=IN_FLIGHT_S)):
                return None
            held = await self.store.get(tenant_id, key_hash)
            if held is None:
                continue
            if held["fingerprint"] != fingerprint:
                raise IdempotencyKeyReused("this Idempotency-Key was used for another request (method, path or "
                                           "body): use a new key for a new request",
                                           details={"header": "Idempotency-Key"})
            if held["state"] != "done":
                raise IdempotencyInFlight("a request with this Idempotency-Key is still running: retry later",
                                          details={"header": "Idempotency-Key"})
            if (stored := self._open(held["response"])) is not None:
                return stored
            await self.store.release(tenant_id, key_hash)  # sealed under another server key: unreadable
        raise IdempotencyInFlight("this Idempotency-Key is being used concurrently: retry later")

    async def finish(self, tenant_id: str, key: str, answer: Stored) -> None:
        doc = {"status": answer.status, "headers": answer.headers, "body": base64.b64encode(answer.body).decode()}
        await self.store.finish(tenant_id, _hash(key), self.sealer.seal(json.dumps(doc)))

    async def release(self, tenant_id: str, key: str) -> None:
        """Forget the key: the request had no answer worth replaying (a server error, a stream), so a retry runs."""
        await self.store.release(tenant_id, _hash(key))

    def _open(self, sealed: str | None) -> Stored | None:
        text = self.sealer.open(sealed or "")
        if text is None:
            return None
        doc = json.loads(text)
        return Stored(int(doc["status"]), [(str(k), str(v)) for k, v in doc["headers"]], base64.b64decode(doc["body"]))

    async def sweep_forever(self, every_s: float) -> None:
        """Delete expired keys now and then (reading one past its expiry already treats it as absent)."""
        while True:
            try:
                await self.store.sweep(self.clock())
            except Exception:
                log.exception("idempotency sweep failed; next try in %.0f s", every_s)
            await asyncio.sleep(every_s)
