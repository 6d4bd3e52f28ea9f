"""`GET /v1/persona` (PersonaGen's contract): a generated person for a seed (or a drawn one, returned), with a
secret key (`X-API-Key` or a bearer) under its monthly quota, or in demo mode (`X-Demo: true`, no key) under an
hourly limit per client address. Errors here take PersonaGen's envelope (`people_errors`)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.clock import now
from widget_server.domain import keys, people
from widget_server.domain.people import quota
from widget_server.edges.client_address import client_address
from widget_server.edges.http import query
from widget_server.edges.query_params import Param, declare
from widget_server.edges.state import AppState, app_state
from widget_server.errors import AuthError, GenerationFailed, InvalidRequest, RateLimited, WidgetError

API_VERSION = "1.0"  # PersonaGen's `metadata.version`; the generator's own is `generator_version`
MAX_SEED = 200
QUERY = declare(
    Param("seed", {"type": "string", "maxLength": MAX_SEED, "pattern": "^[^\\u0000]*$"},
          "any text; the same seed (and version) always gives the same persona; without one a seed is drawn"),
    Param("version", {"type": "string", "enum": list(people.VERSIONS)},
          f"the generator version to use (default {people.CURRENT}); an older one regenerates its personas"),
)


def _demo(request: Request) -> bool:
    value = request.headers.get("x-demo")
    if value is None or value.strip().lower() in ("true", "false"):
        return value is not None and value.strip().lower() == "true"
    raise InvalidRequest("X-Demo must be true or false", details={"param": "X-Demo"})


async def _admit(request: Request, state: AppState) -> quota.Usage:
    demo = _demo(request)
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
    if not key:
        if not demo:
            raise AuthError("send a secret key in X-API-Key (or Authorization: Bearer), or X-Demo: true to try")
        address = client_address(request, state.settings.trusted_proxies)
        verdict = await state.deps.limits.check("persona_demo", address)  # (in the RateLimit headers too)
        if verdict.wait_s is not None:
            raise RateLimited(f"demo mode allows {state.settings.persona_demo_per_hour} requests an hour per address",
                              details={"retry_after_s": verdict.wait_s})
        return quota.Usage(verdict.quota, verdict.remaining, now() + timedelta(seconds=verdict.reset_s))
    row = await keys.secret_key_row(state.deps.storage, key)
    return await quota.take(state.deps.storage.persona_usage, row, state.settings.persona_quota, now())


def persona_id(version: str, seed: str) -> str:
    """The same for every generation of one persona, so an id names a person, not a request."""
    return "persona_" + hashlib.sha256(f"{version}\x00{seed}".encode("utf-8", "surrogatepass")).hexdigest()[:20]


async def generate_persona(request: Request) -> Response:
    params = query(request)
    generator = people.version(params.get("version"))
    seed = params.get("seed") or "seed_" + secrets.token_hex(8)
    if len(seed) > MAX_SEED:
        raise InvalidRequest(f"seed is longer than {MAX_SEED} characters", details={"param": "seed"})
    state = app_state(request)
    usage = await _admit(request, state)
    try:
        data = people.generate(seed, generator.name)
    except WidgetError:
        raise
    except Exception as exc:  # a bug of the generator: the request is counted, and says so
        raise GenerationFailed("the persona could not be generated") from exc
    at = now()
    metadata = {"id": persona_id(generator.name, seed), "version": API_VERSION, "generator_version": generator.name,
                "generated_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "seed": seed, "usage": usage.public()}
    return JSONResponse({"success": True, "data": data, "metadata": metadata})
