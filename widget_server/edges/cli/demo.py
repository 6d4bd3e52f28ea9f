"""`demo`: the demo tenant, persona, key and console owner, made once, then served."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.domain import console_users, keys, personas, tenants
from widget_server.domain.guardrails.tenant_guard import validate
from widget_server.edges.cli.common import read_demo, with_storage
from widget_server.edges.cli.serve import serve
from widget_server.private_files import private_file
from widget_server.settings import Settings

DEMO_PERSONA: dict[str, Any] = {
    "name": "Ada", "slug": "ada",
    "description": "The demo persona: a friendly guide to the Crumb & Co bakery.",
    "system_prompt": "Ada is the friendly assistant of Crumb & Co, a small bakery. Ada answers in one or two short, "
                     "kind sentences about bread, cakes, opening hours (8am to 6pm, Monday to Saturday) and orders.",
    "greeting": "Hi, I'm Ada from Crumb & Co. What can I bake for you today?",
    "starters": ["What bread do you have?", "When are you open?", "Can I order a cake?"],
}

# Asking for a person escalates, so that a takeover can be tried from the console's inbox (README, "Human
# takeover"). Set with the demo persona, when the tenant has no policy: one edited since is kept.
DEMO_POLICY: dict[str, Any] = {"version": 1, "escalation": {"on_request": True}}

DEMO_OWNER = "owner@demo.example"  # the demo tenant's console owner (its password is made once, kept in demo.json)


async def ensure_demo(settings: Settings, origin: str) -> dict[str, Any]:
    """The demo tenant, persona and key; made once, then read back (the keys live in data_dir/demo.json)."""
    async def run(storage: Storage) -> dict[str, Any]:
        demo = read_demo(settings)
        if demo and await storage.get_tenant(demo["tenant_id"]) is not None:
            if origin not in demo["origins"]:
                demo["publishable_key"], made = await keys.create_key(
                    storage, demo["tenant_id"], "publishable", [*demo["origins"], origin])
                demo["origins"] = made["origins"]
        else:
            tenant_id, secret = await tenants.create_tenant(storage, "Demo")
            pk, made = await keys.create_key(storage, tenant_id, "publishable", [origin])
            demo = {"tenant_id": tenant_id, "secret_key": secret, "publishable_key": pk, "origins": made["origins"]}
        if await storage.get_persona(demo["tenant_id"], DEMO_PERSONA["slug"]) is None:
            await personas.create(storage, demo["tenant_id"], DEMO_PERSONA)
            if await storage.get_policy(demo["tenant_id"]) is None:
                await storage.put_policy(demo["tenant_id"], validate(DEMO_POLICY)[0])
        owner = await storage.console.user_by_email(DEMO_OWNER)
        if not demo.get("console_password") or owner is None or owner["tenant_id"] != demo["tenant_id"]:
            if owner is not None:  # left by an earlier demo whose password is lost: start it over
                await storage.console.delete_user(owner["tenant_id"], owner["id"])
            _, demo["console_password"] = await console_users.create_user(storage, demo["tenant_id"], DEMO_OWNER)
            demo["console_email"] = DEMO_OWNER
        demo.update(persona=DEMO_PERSONA["slug"], persona_name=DEMO_PERSONA["name"])
        private_file(Path(settings.data_dir) / "demo.json").write_text(json.dumps(demo, indent=2))
        return demo
    storage_result: dict[str, Any] = {}

    async def wrapped(storage: Storage) -> int:
        storage_result.update(await run(storage))
        return 0
    await with_storage(settings, wrapped)
    return storage_result


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    origin = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    demo = asyncio.run(ensure_demo(settings, origin))
    print(f"""
widget_server demo
  demo page:        {origin}/
  API docs:         {origin}/openapi.json
  tenant_id:        {demo['tenant_id']}
  secret key:       {demo['secret_key']}
  publishable key:  {demo['publishable_key']}  (origins: {', '.join(demo['origins'])})
  persona:          {demo['persona']}
  console:          {origin}/console/  sign in as {demo['console_email']} / {demo['console_password']}
  provider:         {settings.provider}
  try:  curl -s {origin}/v1/personas/{demo['persona']}/prompt -H 'Authorization: Bearer {demo['secret_key']}' \\
             -H 'content-type: application/json' -d '{{"message": "When are you open?"}}'
""", flush=True)
    return 0 if args.no_serve else serve(settings, args.host, args.port, args.workers)
