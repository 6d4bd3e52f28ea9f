"""Transcript search benchmark: the console's search page query over 1,000,000 messages, on SQLite and PostgreSQL.

Run from the repository root: `.venv/bin/python -m bench.search [--messages 1000000] [--no-postgres]` (several
minutes on two cores: most of it is seeding). Prints figures next to their target; asserts nothing.

Seeding: 5 tenants, the messages split evenly, 10 messages per conversation, written with executemany in batches
of 10,000 through the real schema (migrations, so SQLite's triggers index every row as the server's writes do).
The text is varied support talk in the seven languages the product speaks (sentences drawn from templates with
products, numbers, names and places), plus a rare word in about 1 message in 20,000.

Queries, on one tenant, through `Storage.transcripts.page` (what `/console/transcripts?q=` runs: 50 conversations,
each at its newest match, with the filters and the conversation rows): a common word, a rare word, a phrase,
two words, a last word typed as a prefix, a word that matches nothing, and a common word under a filter
(channel = api). Each query runs `--rounds` times, interleaved; p50 and p95 per query and over the mix.
Baseline, measured in the same run: the same tenant's newest 50 conversations without a search (the same call
with no text). Index cost: SQLite's FTS tables and the docs table (`dbstat`), PostgreSQL's GIN index and the
(tenant_id, id) btree its windows read (`pg_relation_size`), each beside the size of the messages table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from widget_server.backends.storage import Storage, open_storage
from widget_server.backends.storage.search import TranscriptFilter
from widget_server.backends.storage.search_query import parse
from widget_server.backends.storage.tables import conversations, messages, tenants
from widget_server.clock import now

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
TENANTS = 5
PER_CONVERSATION = 10
BATCH = 10_000
RARE = "zircon"

SENTENCES = {
    "en": ["Where is my order {n}?", "I want a refund for the {p}.", "The {p} arrived broken, what now?",
           "Can you send the tracking number for order {n}?", "Delivery to {c} takes three days.",
           "Your order ships tomorrow from our warehouse in {c}.", "Thanks {name}, that helped a lot!",
           "How do I reset my password?", "Is the {p} in stock in blue?", "I was charged twice for order {n}."],
    "de": ["Wo ist meine Bestellung {n}?", "Ich möchte eine Rückerstattung für {p}.", "Die Lieferung nach {c} dauert.",
           "Können Sie mir die Sendungsnummer schicken?", "Danke {name}, das hat geholfen."],
    "fr": ["Où est ma commande {n} ?", "Je voudrais un remboursement pour le {p}.", "La livraison à {c} est lente.",
           "Merci {name}, c'est parfait.", "Pouvez-vous envoyer le numéro de suivi ?"],
    "es": ["¿Dónde está mi pedido {n}?", "Quiero un reembolso del {p}.", "La entrega en {c} tarda mucho.",
           "Gracias {name}, muy amable.", "¿Me envía el número de seguimiento?"],
    "it": ["Dov'è il mio ordine {n}?", "Vorrei un rimborso per il {p}.", "La consegna a {c} è in ritardo.",
           "Grazie {name}, perfetto."],
    "pt": ["Onde está o meu pedido {n}?", "Quero um reembolso do {p}.", "A entrega em {c} atrasou.",
           "Obrigado {name}, resolvido."],
    "nl": ["Waar is mijn bestelling {n}?", "Ik wil mijn geld terug voor de {p}.", "De levering in {c} duurt lang.",
           "Bedankt {name}, top."],
}
PRODUCTS = ["helmet", "bicycle", "jacket", "kettle", "lamp", "backpack", "tent", "blender", "charger", "sofa"]
CITIES = ["Lisbon", "Köln", "Zürich", "Sevilla", "Genova", "Utrecht", "Lyon", "Boston", "Porto", "Málaga"]
NAMES = ["Ana", "Jürgen", "Chloé", "Luca", "Marta", "Sven", "Noor", "Inês", "Pablo", "Emma"]
WEIGHTS = [50, 12, 10, 10, 6, 6, 6]  # English most, the others after
QUERIES = {"common word": "order", "rare word": RARE, "phrase": '"tracking number"', "two words": "refund helmet",
           "prefix": "deliv", "no match": "xylophonequartz"}


def _text(rng: random.Random) -> str:
    lang = rng.choices(list(SENTENCES), WEIGHTS)[0]
    parts = [rng.choice(SENTENCES[lang]).format(n=rng.randrange(10_000, 99_999), p=rng.choice(PRODUCTS),
                                                c=rng.choice(CITIES), name=rng.choice(NAMES))
             for _ in range(rng.choice((1, 1, 2, 3)))]
    if rng.random() < 1 / 20_000:
        parts.append(f"The {RARE} edition, please.")
    return " ".join(parts)


async def seed(storage: Storage, total: int) -> list[str]:
    rng = random.Random(7)
    ids = [f"ten_{secrets.token_hex(13)}" for _ in range(TENANTS)]
    start = now() - timedelta(days=30)
    async with storage.engine.begin() as conn:
        await conn.execute(sa.insert(tenants), [{"id": t, "name": t, "created_at": start} for t in ids])
    made, n_conv = 0, 0
    began = time.perf_counter()
    while made < total:
        convs, msgs = [], []
        for _ in range(BATCH // PER_CONVERSATION):
            tenant = ids[n_conv % TENANTS]
            stamp = start + timedelta(seconds=n_conv)
            cid = f"conv_{n_conv:026d}"
            convs.append({"id": cid, "tenant_id": tenant, "persona_id": "per_bench", "visitor_id": f"vis_{n_conv}",
                          "channel": "api" if n_conv % 3 == 0 else "widget", "status": "bot", "created_at": stamp,
                          "updated_at": stamp})
            for i in range(PER_CONVERSATION):
                msgs.append({"id": f"msg_{made:026d}", "tenant_id": tenant, "conversation_id": cid,
                             "role": "visitor" if i % 2 == 0 else "persona", "text": _text(rng),
                             "created_at": stamp + timedelta(milliseconds=i)})
                made += 1
            n_conv += 1
        async with storage.engine.begin() as conn:
            await conn.execute(sa.insert(conversations), convs)
            await conn.execute(sa.insert(messages), msgs)
    print(f"  seeded {made:,} messages in {n_conv:,} conversations in {time.perf_counter() - began:.0f} s")
    return ids


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def measure(storage: Storage, tenant_id: str, rounds: int) -> dict[str, list[float]]:
    cases: dict[str, TranscriptFilter] = {name: TranscriptFilter(text=parse(q)) for name, q in QUERIES.items()}
    cases["common word, channel=api"] = TranscriptFilter(text=parse("order"), channel="api")
    cases["baseline: newest 50"] = TranscriptFilter()
    times: dict[str, list[float]] = {name: [] for name in cases}
    found: dict[str, int] = {}
    for name, f in cases.items():  # warm the caches once
        found[name] = len((await storage.transcripts.page(tenant_id, f, limit=50)).rows)
    for _ in range(rounds):
        for name, f in cases.items():
            began = time.perf_counter()
            await storage.transcripts.page(tenant_id, f, limit=50)
            times[name].append((time.perf_counter() - began) * 1000)
    for name in cases:
        print(f"  {name:28s} p50 {_pct(times[name], 50):7.1f} ms  p95 {_pct(times[name], 95):7.1f} ms"
              f"  ({found[name]} conversations on the page)")
    return times


def report(times: dict[str, list[float]]) -> None:
    mix = [t for name, ts in times.items() if not name.startswith("baseline") for t in ts]
    base = times["baseline: newest 50"]
    p50, p95 = _pct(mix, 50), _pct(mix, 95)
    print(f"  search mix: p50 {p50:.1f} ms, p95 {p95:.1f} ms (target p95 <= 200 ms: "
          f"{'met' if p95 <= 200 else 'NOT met'}); baseline p50 {_pct(base, 50):.1f} ms, p95 {_pct(base, 95):.1f} ms;"
          f" ratio p50 {p50 / _pct(base, 50):.1f}x, p95 {p95 / _pct(base, 95):.1f}x")


async def sqlite_size(storage: Storage) -> None:
    async with storage.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))).all()
    sizes = {name: int(size) for name, size in rows}
    index = sum(v for k, v in sizes.items() if k.startswith("message_search"))
    table = sizes.get("messages", 0) + sum(v for k, v in sizes.items() if k.startswith("sqlite_autoindex_messages"))
    print(f"  index on disk: {index / 2**20:.0f} MiB (FTS5 tables and doc ids: "
          + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in sorted(sizes.items()) if k.startswith("message_search"))
          + f"); messages table and its primary key: {table / 2**20:.0f} MiB; ratio {index / table:.2f}")


async def postgres_size(storage: Storage) -> None:
    async with storage.engine.connect() as conn:
        index = (await conn.execute(sa.text("SELECT pg_relation_size('ix_messages_search')"))).scalar_one()
        tenant = (await conn.execute(sa.text("SELECT pg_relation_size('ix_messages_tenant')"))).scalar_one()
        table = (await conn.execute(sa.text("SELECT pg_table_size('messages')"))).scalar_one()
    print(f"  index on disk: {index / 2**20:.0f} MiB (GIN, pg_relation_size), and the tenant's messages by id (btree"
          f" read by the search's windows) {tenant / 2**20:.0f} MiB; messages table: {table / 2**20:.0f} MiB;"
          f" ratio {index / table:.2f}, with the btree {(index + tenant) / table:.2f}")


async def run_sqlite(total: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        storage = await open_storage(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            ids = await seed(storage, total)
            await sqlite_size(storage)
            report(await measure(storage, ids[2], rounds))
        finally:
            await storage.close()


async def run_postgres(total: int, rounds: int) -> None:
    import asyncpg

    name = f"widget_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        storage = await open_storage(f"postgresql://postgres@127.0.0.1:5432/{name}")
        try:
            ids = await seed(storage, total)
            async with storage.engine.begin() as conn:
                await conn.execute(sa.text("ANALYZE messages"))  # as autovacuum would, soon after a bulk load
                await conn.execute(sa.text("ANALYZE conversations"))
            await postgres_size(storage)
            report(await measure(storage, ids[2], rounds))
        finally:
            await storage.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    print(f"SQLite (FTS5), {args.messages:,} messages, {TENANTS} tenants")
    asyncio.run(run_sqlite(args.messages, args.rounds))
    if not args.no_postgres:
        print(f"PostgreSQL (GIN over to_tsvector('simple')), {args.messages:,} messages, {TENANTS} tenants")
        asyncio.run(run_postgres(args.messages, args.rounds))


if __name__ == "__main__":
    main()
