"""`user create|list|delete`: the console users of a tenant."""

from __future__ import annotations

import argparse
import json
import sys

from widget_server.backends.storage import Storage
from widget_server.domain import console_users
from widget_server.edges.cli.common import with_storage
from widget_server.settings import Settings


async def cmd_user_create(settings: Settings, args: argparse.Namespace) -> int:
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")

    async def run(storage: Storage) -> int:
        user, generated = await console_users.create_user(storage, args.tenant, args.email, args.role, password)
        if args.json:
            out = {"user_id": user["user_id"], "email": user["email"], "role": user["role"]}
            print(json.dumps({**out, "password": generated} if generated else out))
        else:
            print(f"user_id:  {user['user_id']}\nemail:    {user['email']}\nrole:     {user['role']}")
            if generated:
                print(f"password: {generated}\n(the password is shown only this once)")
        return 0
    return await with_storage(settings, run)


async def cmd_user_list(settings: Settings, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        users = await console_users.list_users(storage, args.tenant)
        if args.json:
            print(json.dumps(users))
        for u in [] if args.json else users:
            print(f"{u['user_id']}  {u['role']:<6}  {u['email']}")
        return 0
    return await with_storage(settings, run)


async def cmd_user_delete(settings: Settings, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        user = await console_users.delete_user(storage, args.tenant, args.user)
        print(json.dumps({"deleted": user["user_id"], "email": user["email"]}) if args.json
              else f"deleted {user['user_id']} ({user['email']}); their sessions have ended")
        return 0
    return await with_storage(settings, run)
