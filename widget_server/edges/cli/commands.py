"""`tenant create`, `key create|list|rotate|revoke`, `identity show|rotate|require`, `persona import|export`."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from widget_server.backends.storage import Storage
from widget_server.domain import identity, keys, persona_files, personas, tenants
from widget_server.domain.sealed import Sealer
from widget_server.edges.cli.common import require_tenant, tenant_arg, with_storage, yaml_problem
from widget_server.errors import WidgetError
from widget_server.settings import Settings


async def cmd_tenant_create(settings: Settings, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        tenant_id, secret = await tenants.create_tenant(storage, args.name)
        if args.json:
            print(json.dumps({"tenant_id": tenant_id, "secret_key": secret}))
        else:
            print(f"tenant_id:  {tenant_id}\nsecret_key: {secret}\n(the secret key is shown only this once)")
        return 0
    return await with_storage(settings, run)


def _show_key(key: str, made: dict[str, Any], as_json: bool, ending: str = "") -> None:
    if as_json:
        print(json.dumps({"key": key, "id": made["id"], "kind": made["kind"], "origins": made["origins"]}))
        return
    lines = [f"key:     {key}", f"id:      {made['id']}"]
    if made["origins"]:
        lines.append(f"origins: {' '.join(made['origins'])}")
    print("\n".join(lines + [f"(the key is shown only this once{ending})"]))


async def cmd_key_create(settings: Settings, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        kind = args.kind or ("publishable" if args.origin else "secret")
        key, made = await keys.create_key(storage, args.tenant, kind, args.origin, args.persona_quota)
        _show_key(key, made, args.json)
        return 0
    return await with_storage(settings, run)


async def cmd_key_list(settings: Settings, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        await require_tenant(storage, args.tenant)
        rows = [keys.to_public(r) for r in await storage.list_keys(args.tenant)]
        if args.json:
            print(json.dumps(rows))
        for r in [] if args.json else rows:
            state = ("revoked " + r["revoked_at"]) if r["revoked_at"] else (
                ("expires " + r["expires_at"]) if r["expires_at"] else "active")
            print(f"{r['id']}  {r['kind']:<11}  {r['hint']}…  {state}  {' '.join(r['origins'])}".rstrip())
        return 0
    return await with_storage(settings, run)


async def cmd_key_rotate(settings: Settings, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        key, made = await keys.rotate(storage, args.tenant, args.key_id, args.grace)
        _show_key(key, made, args.json, f"; the old key works for {args.grace} s more")
        return 0
    return await with_storage(settings, run)


async def cmd_key_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        await keys.revoke(storage, args.tenant, args.key_id)
        print(f"revoked {args.key_id}")
        return 0
    return await with_storage(settings, run)


async def cmd_identity(settings: Settings, args: argparse.Namespace) -> int:
    """`identity show|rotate|require on|off`: the tenant's identity verification."""
    async def run(storage: Storage) -> int:
        if args.action == "rotate":
            shown = await identity.rotate(storage, settings.signing_secret(), args.tenant)
        elif args.action == "require":
            shown = await identity.require(storage, args.tenant, args.state == "on")
        else:
            shown = await identity.settings(storage, args.tenant)
        if args.json:
            print(json.dumps(shown))
        else:
            print("\n".join(f"{k}: {v}" for k, v in shown.items()))
            if "secret" in shown:
                print("(the secret is shown only this once: user.hash = hex HMAC-SHA256(secret, user.id))")
        return 0
    return await with_storage(settings, run)


async def cmd_persona_import(settings: Settings, args: argparse.Namespace) -> int:
    try:
        doc = yaml.safe_load(args.file.read_text())
    except OSError as exc:
        raise WidgetError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise WidgetError(f"cannot read {args.file}: {yaml_problem(exc)}") from exc
    tenant_id = tenant_arg(settings, args.tenant)

    async def run(storage: Storage) -> int:
        await require_tenant(storage, tenant_id)
        # a file that names a persona that exists (its slug, or the slug of its name) updates it
        persona, created = await persona_files.import_doc(storage, tenant_id, doc, Sealer(settings.signing_secret()),
                                                          replace=True)
        print(f"{'created' if created else 'updated'} persona {persona['slug']} ({persona['id']})")
        return 0
    return await with_storage(settings, run)


async def cmd_persona_export(settings: Settings, args: argparse.Namespace) -> int:
    tenant_id = tenant_arg(settings, args.tenant)

    async def run(storage: Storage) -> int:
        await require_tenant(storage, tenant_id)
        row = await personas.get(storage, tenant_id, args.slug)
        print(persona_files.to_yaml(persona_files.export_doc(row)), end="")  # a sealed api_key is never printed
        return 0
    return await with_storage(settings, run)
