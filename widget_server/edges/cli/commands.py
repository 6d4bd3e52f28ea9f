"""`tenant create`, `key create`, `persona import|export`."""

from __future__ import annotations

import argparse
import json

import yaml

from widget_server.backends.storage import Storage
from widget_server.domain import personas, tenants
from widget_server.edges.cli.common import require_tenant, tenant_arg, with_storage, yaml_problem
from widget_server.errors import SlugTaken, WidgetError
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


async def cmd_key_create(settings: Settings, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        key, origins = await tenants.create_publishable_key(storage, args.tenant, args.origin)
        text = f"key:     {key}\norigins: {' '.join(origins)}"
        print(json.dumps({"key": key, "origins": origins}) if args.json else text)
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
        try:
            persona = await personas.create(storage, tenant_id, doc)
            verb = "created"
        except SlugTaken as exc:  # the file names a persona that exists (its slug, or the slug of its name)
            persona = await personas.replace(storage, tenant_id, exc.details["slug"], doc, partial=False)
            verb = "updated"
        print(f"{verb} persona {persona['slug']} ({persona['id']})")
        return 0
    return await with_storage(settings, run)


async def cmd_persona_export(settings: Settings, args: argparse.Namespace) -> int:
    tenant_id = tenant_arg(settings, args.tenant)

    async def run(storage: Storage) -> int:
        await require_tenant(storage, tenant_id)
        row = await personas.get(storage, tenant_id, args.slug)
        print(yaml.safe_dump({"slug": row["slug"], **row["doc"]}, sort_keys=False, allow_unicode=True), end="")
        return 0
    return await with_storage(settings, run)
