"""Intake throughput: batches posted over real HTTP to gunicorn on PostgreSQL, against a raw COPY of the same rows.

.venv/bin/python bench/intake.py [--items 100000] [--batch 500] [--concurrency 2] [--keep]
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib
import psycopg
import redis
from psycopg import sql

from tests.support.processes import Gunicorn, children, running

RESULT = benchlib.RESULTS / "intake.md"
BROKER_URL = "redis://127.0.0.1:6379/15"
CACHE_URL = "redis://127.0.0.1:6379/14"
SOURCE, WARMUP_SOURCE = "bench-intake", "bench-warmup"
COPY_TABLE = "bench_copy_reviewitem"

WORDS = {language: text.split() for language, text in benchlib.VOCABULARY.items()}


def item_text(rng: random.Random, language: str) -> str:
    """Plausible user text of 50 to 400 characters."""
    words, target = WORDS[language], rng.randint(50, 400)
    out: list[str] = []
    length = 0
    while length < target:
        word = rng.choice(words)
        if rng.random() < 0.03:
            word += rng.choice(["!", "?", " 😂", " 🙏", "…"])
        out.append(word)
        length += len(word) + 1
    text = " ".join(out)[:target].rstrip()
    return text if len(text) >= 50 else text + " " + "x" * (50 - len(text) - 1)


def items_generate(*, count: int, run: str, seed: int, created_at: datetime) -> list[dict[str, Any]]:
    """Varied items with unique external ids; one in ten is a user report, one in ten carries an image."""
    rng = random.Random(seed)
    items = []
    for i in range(count):
        language = rng.choice(benchlib.LANGUAGES)
        item: dict[str, Any] = {
            "external_id": f"{run}-{i:09d}",
            "text": item_text(rng, language),
            "author_ref": f"u{int(rng.paretovariate(1.2) * 1000)}",
            "surface": rng.choice(benchlib.SURFACES),
            "language": language,
            "metadata": {
                "country": rng.choice(benchlib.COUNTRIES[:10]),
                "followers": rng.randint(0, 50_000),
                "client": rng.choice(["ios", "android", "web"]),
            },
            "created_at": created_at.isoformat(),
        }
        roll = rng.random()
        if roll < 0.1:
            item["kind"] = "user_report"
            item["report_reasons"] = rng.sample(benchlib.REASONS, rng.randint(1, 3))
        elif roll < 0.2:
            item["media_urls"] = [f"https://cdn.example.com/m/{run}/{i}.jpg"]
        items.append(item)
    return items


def copy_rows(conninfo: str, items: str, rows: list[tuple[Any, ...]]) -> float:
    """Seconds to COPY ``rows`` into a fresh logged table LIKE the items table INCLUDING ALL (indexes, checks)."""
    with psycopg.connect(conninfo) as conn:
        statement = "DROP TABLE IF EXISTS {copy}; CREATE TABLE {copy} (LIKE {items} INCLUDING ALL)"
        conn.execute(sql.SQL(statement).format(copy=sql.Identifier(COPY_TABLE), items=sql.Identifier(items)))
        conn.commit()  # the COPY alone is timed, into a table created before its transaction
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(COPY_TABLE), sql.SQL(", ").join(map(sql.Identifier, benchlib.INTAKE_FIELDS))
        )
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        seconds = time.perf_counter() - t0
        copied = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(COPY_TABLE))).fetchone()
        if copied is None or copied[0] != len(rows):
            raise SystemExit(f"COPY stored {copied} rows, expected {len(rows)}")
        return seconds


def rows_differing(conninfo: str, items: str) -> int:
    """Rows the API stored that differ from COPY's, either way (every field but received_at, the server's clock)."""
    columns = sql.SQL(", ").join(sql.Identifier(f) for f in benchlib.INTAKE_FIELDS if f != "received_at")
    one_way = "SELECT count(*) FROM (SELECT {c} FROM {a} WHERE source = %(s)s EXCEPT ALL SELECT {c} FROM {b}) d"
    total = 0
    with psycopg.connect(conninfo) as conn:
        for a, b in ((items, COPY_TABLE), (COPY_TABLE, items)):
            query = sql.SQL(one_way).format(c=columns, a=sql.Identifier(a), b=sql.Identifier(b))
            row = conn.execute(query, {"s": SOURCE}).fetchone()
            total += row[0] if row else 0
    return total


def main() -> int:
    parser = benchlib.parser(__doc__, "ops_bench_intake")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, help="connections in flight (default: one per worker)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--target", type=float, default=5000, help="items/s accepted to call it a pass")
    args = parser.parse_args()
    args.concurrency = args.concurrency or args.workers
    log = Path(tempfile.gettempdir()) / f"bench-intake-gunicorn-{os.getpid()}.log"
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    items = items_generate(count=args.items, run=f"b{now:%Y%m%d%H%M%S}", seed=1, created_at=now)
    bodies = benchlib.batches(items, args.batch)
    rows = [benchlib.intake_row(item, SOURCE, now) for item in items]
    warmup = benchlib.batches(
        items_generate(count=20 * args.concurrency, run=f"w{now:%H%M%S}", seed=2, created_at=now), 10
    )
    print(f"{len(items):,} items in {len(bodies)} pre-encoded bodies", flush=True)
    # One connection per worker for the whole run, so the backends whose CPU is counted are the ones working.
    celery, hosts = (BROKER_URL, CACHE_URL), "127.0.0.1,localhost"
    with benchlib.scratch(args, celery=celery, files=[log], ALLOWED_HOSTS=hosts, CONN_MAX_AGE="600") as db:
        conninfo, env = db.conninfo, db.env
        from django.db import connections

        from queues.models import ReviewItem

        items_table = benchlib.table(ReviewItem)
        assert benchlib.columns_of(ReviewItem, benchlib.INTAKE_FIELDS) == benchlib.INTAKE_FIELDS, (
            "COPY and EXCEPT name fields as columns"
        )
        keys = benchlib.api_keys(SOURCE, WARMUP_SOURCE)
        connections.close_all()
        web = Gunicorn(env, log, workers=args.workers)
        with running(web):
            url = f"{web.base}/api/v1/items"
            benchlib.post_all(url, keys[WARMUP_SOURCE], warmup, concurrency=args.concurrency).check("warm-up")
            workers, pg = children(web.pid or 0), benchlib.postgres_pids(conninfo, db.dbname)
            meter = benchlib.CpuMeter(
                {
                    "gunicorn workers": lambda: sum(map(benchlib.process_cpu, workers)),
                    "PostgreSQL": lambda: sum(map(benchlib.process_cpu, pg)),
                    "bench client": time.process_time,
                }
            )
            print(f"posting with {args.concurrency} connections to {args.workers} gunicorn workers …", flush=True)
            before = meter.snapshot()
            load = benchlib.post_all(url, keys[SOURCE], bodies, concurrency=args.concurrency)
            cpu = meter.usage(before, meter.snapshot())
        created = sum(json.loads(p.body)["created"] for p in load.posted if p.status == 201)
        stored = ReviewItem.objects.filter(source=SOURCE).count()
        connections.close_all()
        broker = redis.Redis.from_url(BROKER_URL)
        published = sum(broker.llen(k) for k in broker.scan_iter("triage*") if broker.type(k) == b"list") - len(warmup)
        print("the same rows straight into PostgreSQL by COPY …", flush=True)
        copy_seconds = copy_rows(conninfo, items_table, rows)
        differing = rows_differing(conninfo, items_table)

        n, elapsed = args.items, load.elapsed
        rate, copy_rate = created / elapsed, n / copy_seconds
        latencies = [p.seconds * 1000 for p in load.posted]
        server = f"gunicorn {args.workers} sync workers, no access log"
        r = benchlib.Report("Intake benchmark")
        r.stamp(conninfo)
        r.add("server", f"{server}; throttle cache in Redis db 14")
        r.add("triage hand-off", f"{published} tasks published to Redis db 15; no Celery worker runs (purged after)")
        r.add("items / batch / concurrency", f"{n:,} / {args.batch} / {args.concurrency} connections")
        r.add("body size", f"{sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB per batch, pre-encoded")
        r.add("elapsed", f"{elapsed:.2f} s")
        verdict = "met" if rate >= args.target else "MISSED"
        r.add("**items/s accepted**", f"**{rate:,.0f}** (target {args.target:,.0f}: {verdict})")
        r.add(
            "batch latency p50 / p99",
            f"{benchlib.percentile(latencies, 0.5):.0f} / {benchlib.percentile(latencies, 0.99):.0f} ms",
        )
        statuses = Counter(p.status for p in load.posted)
        r.add("responses", ", ".join(f"{status}: {k}" for status, k in sorted(statuses.items())))
        r.add("rows stored for the source", f"{stored:,} (expected {n:,})")
        r.add("rows differing from COPY's", f"{differing:,} (every stored field compared)")
        r.add("CPU during the load, in cores", cpu.line())
        per_k = 1e6 / n
        r.add(
            "server CPU per 1,000 items",
            f"{cpu.groups['gunicorn workers'] * per_k:.0f} ms in gunicorn workers, "
            f"{cpu.groups['PostgreSQL'] * per_k:.0f} ms in PostgreSQL",
        )
        r.add(
            "COPY FROM STDIN, same rows",
            f"{copy_rate:,.0f} rows/s ({copy_seconds:.2f} s, one COPY) into a new table LIKE {items_table} "
            "INCLUDING ALL (same columns, checks and indexes; no foreign keys, all NULL here anyway)",
        )
        r.add("HTTP intake vs COPY", f"{rate / copy_rate:.1%} of the COPY rate ({copy_rate / rate:.1f}x slower)")
        for p in load.failures()[:5]:
            print(f"non-201: {p.status} {p.body[:300]!r}")
        ok = not load.failures() and stored == created == n and not differing
        failure = f"{len(load.failures())} non-201 answers, {created:,} created, {stored:,} stored, {n:,} sent, "
        return r.finish(RESULT, write=not args.no_write, ok=ok, failure=failure + f"{differing:,} rows differ")


if __name__ == "__main__":
    sys.exit(main())
