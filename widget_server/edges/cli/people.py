"""`persona generate`: generated people on stdout, from the same generator as GET /v1/persona (no database, no
settings). With --count N and a --seed S, the seeds are S:0 … S:N-1, so a population is one seed too."""

from __future__ import annotations

import argparse
import json
import secrets
from typing import Any

from widget_server.domain import people

MAX_COUNT = 100_000


def add_parser(persona: Any) -> None:
    pg = persona.add_parser("generate", help="print generated people (the same seed gives the same person)")
    pg.add_argument("--seed", help="the seed (default: drawn, and printed so the person can be made again)")
    pg.add_argument("--count", type=int, default=1, help=f"how many (1 to {MAX_COUNT}; default 1)")
    pg.add_argument("--version", dest="generator_version", default=people.CURRENT, choices=list(people.VERSIONS),
                    help=f"the generator version (default {people.CURRENT})")
    pg.add_argument("--json", action="store_true", help="one JSON object a line: seed, generator_version, data")


def _seeds(seed: str | None, count: int) -> list[str]:
    if seed is None:
        return ["seed_" + secrets.token_hex(8) for _ in range(count)]
    return [seed] if count == 1 else [f"{seed}:{i}" for i in range(count)]


def _line(seed: str, data: dict[str, Any]) -> str:
    d = data["demographics"]
    return (f"{seed}  {data['name']['first_name']} {data['name']['last_name']}, {d['age']}, {d['gender']}, "
            f"{d['location']}, {d['education']}, {d['occupational_background']}, {d['income']}")


def cmd_persona_generate(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= MAX_COUNT:
        raise SystemExit(f"widget-server: error: --count must be 1 to {MAX_COUNT}")
    for seed in _seeds(args.seed, args.count):
        data = people.generate(seed, args.generator_version)
        if args.json:
            print(json.dumps({"seed": seed, "generator_version": args.generator_version, "data": data},
                             ensure_ascii=False))
        else:
            print(_line(seed, data))
    return 0
