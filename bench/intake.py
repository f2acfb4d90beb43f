"""Intake throughput: batches posted over real HTTP to gunicorn on PostgreSQL, against a raw COPY of the same rows.

Self-contained: creates its own database, migrates it, starts gunicorn, posts, checks, COPYs, cleans up.

    .venv/bin/python bench/intake.py [--items 100000] [--batch 500] [--concurrency 2] [--profile] [--keep]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from benchlib import (
    INTAKE_COLUMNS,
    ITEMS_TABLE,
    ROOT,
    Report,
    app_env,
    children,
    database_recreate,
    gunicorn,
    machine_busy,
    machine_description,
    manage,
    percentile,
    postgres_pids,
    process_cpu,
    py_spy,
    redis_flush,
    scratch_database,
    scratch_release,
)
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

RESULTS = ROOT / "bench" / "results" / "intake.md"
PROFILE = RESULTS.with_name("intake-profile.txt")
BROKER_URL = "redis://127.0.0.1:6379/15"
CACHE_URL = "redis://127.0.0.1:6379/14"
SOURCE = "bench-intake"
WARMUP_SOURCE = "bench-warmup"
COPY_TABLE = "bench_copy_reviewitem"
INSERT_TABLE = "bench_insert_reviewitem"

# --- items --------------------------------------------------------------------------------------------

VOCABULARY = {
    "en": (
        "the this is not what I said about your post and you know it honestly people like you should stop "
        "buy cheap followers now click link in bio free giveaway limited offer great photo love it thanks "
        "for sharing anyone else seeing this report spam account again scam crypto double your money "
        "meeting tomorrow at noon see you there lol that was hilarious worst service ever never again"
    ),
    "pt-BR": (
        "olha só que absurdo ninguém merece isso compre agora promoção imperdível link na bio ótimo "
        "trabalho parabéns pessoal denunciem essa conta golpe pix grátis amanhã às dez nos vemos lá"
    ),
    "es": (
        "esto es increíble gracias por compartir oferta limitada haz clic aquí cuenta falsa estafa "
        "nunca más pésimo servicio nos vemos mañana qué risa denuncien este perfil por favor"
    ),
    "de": (
        "das ist wirklich unglaublich danke fürs teilen jetzt kaufen gratis gewinnspiel link im profil "
        "betrug gefälschtes konto bis morgen schlechtester service überhaupt bitte melden"
    ),
    "ja": "これは ひどい 投稿 です 今すぐ クリック 無料 プレゼント 詐欺 アカウント 通報 ありがとう また 明日",
}
WORDS = {language: text.split() for language, text in VOCABULARY.items()}
LANGUAGES = ["en"] * 6 + ["pt-BR", "pt-BR", "es", "es", "de", "ja"]
SURFACES = ["post", "post", "post", "comment", "comment", "comment", "dm", "profile", "listing", "story"]
COUNTRIES = ["US", "BR", "MX", "DE", "JP", "IN", "GB", "FR", "ES", "ID"]
REASONS = ["spam", "harassment", "hate_speech", "scam", "nudity", "violence", "impersonation", "self_harm"]


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
    stamp = created_at.isoformat()
    for i in range(count):
        language = rng.choice(LANGUAGES)
        item: dict[str, Any] = {
            "external_id": f"{run}-{i:09d}",
            "text": item_text(rng, language),
            "author_ref": f"u{int(rng.paretovariate(1.2) * 1000)}",
            "surface": rng.choice(SURFACES),
            "language": language,
            "metadata": {
                "country": rng.choice(COUNTRIES),
                "followers": rng.randint(0, 50_000),
                "client": rng.choice(["ios", "android", "web"]),
            },
            "created_at": stamp,
        }
        roll = rng.random()
        if roll < 0.1:
            item["kind"] = "user_report"
            item["report_reasons"] = rng.sample(REASONS, rng.randint(1, 3))
        elif roll < 0.2:
            item["media_urls"] = [f"https://cdn.example.com/m/{run}/{i}.jpg"]
        items.append(item)
    return items


def copy_row(item: dict[str, Any], received_at: datetime) -> tuple[Any, ...]:
    """The row intake stores for ``item``, in INTAKE_COLUMNS order (JSON columns as JSON text)."""
    reasons = item.get("report_reasons", [])
    return (
        SOURCE,
        item["external_id"],
        item.get("kind", "content"),
        item["text"],
        json.dumps(item.get("media_urls", [])),
        item["author_ref"],
        item["surface"],
        item["language"],
        json.dumps(item["metadata"]),
        json.dumps(reasons),
        len(reasons),
        "received",
        0,
        received_at,
        1,
        "[]",
        False,
    )


# --- processes and services -----------------------------------------------------------------------


CREATE_CLIENTS = f"""
import json
from ops_platform.core.services import api_client_create
keys = {{}}
for source in ({SOURCE!r}, {WARMUP_SOURCE!r}):
    _, keys[source] = api_client_create(
        actor="bench", name=source, source=source, scopes=["items:write"], rate_limit_per_minute=10_000_000
    )
print("KEYS", json.dumps(keys))
"""


def api_keys_create(env: dict[str, str]) -> dict[str, str]:
    out = manage(env, "shell", "-c", CREATE_CLIENTS)
    line = next(line for line in out.splitlines() if line.startswith("KEYS "))
    return json.loads(line.removeprefix("KEYS "))


# Where a sampled stack belongs: the first phase whose every marker is in it. py-spy names a frame
# "function (path/file.py:line)"; the order matters (the INSERT's psycopg work is not "other psycopg").
PHASES: list[tuple[str, tuple[str, ...]]] = [
    ("triage hand-off (Celery publish to Redis)", ("triage_enqueue (",)),
    ("auth: API key lookup", ("ApiKeyAuthentication.authenticate (",)),
    ("throttle: per-client rate limit (Redis)", ("allow_request (",)),
    ("read body + json.loads", ("LimitedJSONParser.parse (",)),
    ("validation: ItemIn(many=True).is_valid()", ("ListSerializer.is_valid (",)),
    ("INSERT: psycopg parses the SQL text (too long to cache)", ("_insert_ignoring_duplicates (", "_query2pg_client")),
    ("INSERT: psycopg quotes params, sends, waits", ("_insert_ignoring_duplicates (", "(psycopg/")),
    ("INSERT: builds SQL + get_db_prep_save per field", ("_insert_ignoring_duplicates (",)),
    ("SELECT id, state of the batch after the insert", ("items_ingest (", "QuerySet.")),
    ("commit", ("items_ingest (", "Atomic.__exit__ (")),
    ("ReviewItem(...) objects and result rows", ("items_ingest (",)),
    ("response rows (routing.api.ingest)", ("ingest (routing/api.py",)),
    ("JSON render of the response", ("JSONRenderer.render (",)),
    ("view dispatch (DRF)", ("APIView.dispatch (",)),
]
OTHER = "gunicorn, WSGI, middleware"


def profile_phases(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """Samples per phase, self samples per function, and the total, from a py-spy raw (collapsed) file."""
    phases: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "SyncWorker.handle_request (" not in stack:
            continue  # the arbiter, or a worker between requests
        n = int(count)
        total += n
        phases[next((label for label, marks in PHASES if all(m in stack for m in marks)), OTHER)] += n
        leaves[stack.rsplit(";", 1)[-1]] += n
    return phases, leaves, total


def profile_report(path: Path, *, worker_cpu: float, items: int, batches: int) -> str:
    phases, leaves, total = profile_phases(path)
    per_item = worker_cpu / items * 1e6 / total  # µs of worker CPU per item, per sample
    lines = [
        "### Where the workers' CPU goes (py-spy, CPU samples only)",
        "",
        f"{total} samples during requests; worker CPU {worker_cpu / items * 1e6:.0f} ms per 1,000 items, "
        f"{worker_cpu / batches * 1000:.0f} ms per batch.",
        "",
        "| phase | share | ms per 1,000 items |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {n / total:.1%} | {n * per_item:.0f} |" for label, n in phases.most_common()]
    lines += ["", "| hottest functions (self) | share |", "|---|---:|"]
    lines += [f"| `{frame}` | {n / total:.1%} |" for frame, n in leaves.most_common(15)]
    return "\n".join(lines) + "\n"


# --- CPU accounting -------------------------------------------------------------------------------


@dataclass
class CpuSnapshot:
    client: float
    workers: float
    postgres: float
    machine_busy: float
    machine_total: float

    @classmethod
    def take(cls, worker_pids: list[int], pg_pids: list[int]) -> CpuSnapshot:
        busy, total = machine_busy()
        return cls(
            client=time.process_time(),
            workers=sum(process_cpu(p) for p in worker_pids),
            postgres=sum(process_cpu(p) for p in pg_pids),
            machine_busy=busy,
            machine_total=total,
        )


# --- the HTTP load --------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    seconds: float
    body: bytes


@dataclass
class Load:
    outcomes: list[Outcome]
    elapsed: float


def post_all(*, url: str, key: str, bodies: list[bytes], concurrency: int) -> Load:
    """Post every body, ``concurrency`` at a time, one connection per thread; bodies are pre-encoded."""
    outcomes: list[Outcome | None] = [None] * len(bodies)
    order = itertools.count()  # next() on it is atomic under the GIL
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    start = threading.Barrier(concurrency + 1)

    def work() -> None:
        with httpx.Client(headers=headers, timeout=120) as client:
            start.wait()
            while (i := next(order)) < len(bodies):
                t0 = time.perf_counter()
                try:
                    response = client.post(url, content=bodies[i])
                    outcomes[i] = Outcome(response.status_code, time.perf_counter() - t0, response.content)
                except httpx.HTTPError as exc:
                    outcomes[i] = Outcome(0, time.perf_counter() - t0, repr(exc).encode())

    threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return Load([o for o in outcomes if o is not None], elapsed)


def batches(items: list[dict[str, Any]], size: int) -> list[bytes]:
    return [json.dumps(items[i : i + size], ensure_ascii=False).encode() for i in range(0, len(items), size)]


# --- the database alone: the app's INSERT statement, and COPY ------------------------------------


def scratch_table(conn: psycopg.Connection[Any], name: str) -> None:
    """A fresh, logged table shaped like the items table: same columns, defaults, checks and indexes."""
    conn.execute(
        sql.SQL("DROP TABLE IF EXISTS {copy}; CREATE TABLE {copy} (LIKE {items} INCLUDING ALL)").format(
            copy=sql.Identifier(name), items=sql.Identifier(ITEMS_TABLE)
        )
    )
    conn.commit()


def insert_rows(conninfo: str, rows: list[tuple[Any, ...]], batch: int) -> tuple[float, float]:
    """Seconds, and this process's CPU seconds, to store ``rows`` with intake's own statement from psycopg.

    One transaction per batch, as intake commits one per request. The statement is the one
    ``routing.services._insert_ignoring_duplicates`` writes on PostgreSQL: the batch as one jsonb
    parameter, ``INSERT … SELECT … FROM jsonb_to_recordset(%s::jsonb) … ON CONFLICT (source,
    external_id) DO NOTHING RETURNING id, external_id``.
    """
    with psycopg.connect(conninfo) as conn:
        scratch_table(conn, INSERT_TABLE)
        typed = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attnum > 0 AND NOT attisdropped AND attname <> 'id' ORDER BY attnum",
            [ITEMS_TABLE],
        ).fetchall()
        columns = [name for name, _ in typed]
        json_columns = {name for name, kind in typed if kind == "jsonb"}
        position = {c: INTAKE_COLUMNS.index(c) for c in columns if c in INTAKE_COLUMNS}
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        statement = sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM jsonb_to_recordset(%s::jsonb) AS r({}) "
            "ON CONFLICT (source, external_id) DO NOTHING RETURNING id, external_id"
        ).format(
            sql.Identifier(INSERT_TABLE),
            names,
            names,
            sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in typed),
        )
        t0, cpu0 = time.perf_counter(), time.process_time()
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            records = [
                {c: _jsonable(row[position[c]], c in json_columns) if c in position else None for c in columns}
                for row in chunk
            ]
            with conn.cursor() as cur:
                cur.execute(statement, [json.dumps(records)])
                if len(cur.fetchall()) != len(chunk):
                    raise SystemExit("the direct INSERT skipped rows it should have created")
            conn.commit()
        return time.perf_counter() - t0, time.process_time() - cpu0


def _jsonable(value: Any, is_json_text: bool) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return json.loads(value) if is_json_text and isinstance(value, str) else value


def copy_rows(conninfo: str, rows: list[tuple[Any, ...]]) -> float:
    """Seconds to COPY ``rows`` into a fresh logged copy of the items table (same indexes and checks)."""
    with psycopg.connect(conninfo) as conn:
        scratch_table(conn, COPY_TABLE)
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(COPY_TABLE), sql.SQL(", ").join(map(sql.Identifier, INTAKE_COLUMNS))
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


def rows_differing(conninfo: str) -> int:
    """Rows the API stored that differ from the rows COPY stored, or the reverse: intake kept every field as sent."""
    columns = sql.SQL(", ").join(map(sql.Identifier, INTAKE_COLUMNS))
    one_way = "SELECT count(*) FROM (SELECT {c} FROM {a} WHERE source = %(s)s EXCEPT ALL SELECT {c} FROM {b}) d"
    with psycopg.connect(conninfo) as conn:
        total = 0
        for a, b in ((ITEMS_TABLE, COPY_TABLE), (COPY_TABLE, ITEMS_TABLE)):
            query = sql.SQL(one_way).format(c=columns, a=sql.Identifier(a), b=sql.Identifier(b))
            row = conn.execute(query, {"s": SOURCE}).fetchone()
            total += row[0] if row else 0
        return total


# --- the run --------------------------------------------------------------------------------------


def triage_messages(broker: redis.Redis) -> int:
    """Triage tasks waiting in the broker (kombu keeps one Redis list per queue and priority)."""
    return sum(broker.llen(k) for k in broker.scan_iter("triage*") if broker.type(k) == b"list")


@dataclass
class Measured:
    load: Load
    cpu: tuple[CpuSnapshot, CpuSnapshot]
    created: int
    failures: list[Outcome]
    stored: int
    published: int
    differing: int = -1  # rows whose stored fields differ from the COPY of the same items; -1 until compared


def measure_http(args: argparse.Namespace, env: dict[str, str], conninfo: str, bodies: list[bytes]) -> Measured:
    """Migrate, make the API clients, start gunicorn, warm it up, post every batch, then check the result."""
    manage(env, "migrate", "--noinput")
    keys = api_keys_create(env)
    now = datetime.now(UTC)
    warmup = batches(items_generate(count=20 * args.concurrency, run=f"w{now:%H%M%S}", seed=2, created_at=now), 10)
    dbname = str(conninfo_to_dict(conninfo)["dbname"])
    with gunicorn(env, workers=args.workers, log=args.log) as (base, proc):
        url = f"{base}/api/v1/items"
        warm = post_all(url=url, key=keys[WARMUP_SOURCE], bodies=warmup, concurrency=args.concurrency)
        bad = [o for o in warm.outcomes if o.status != 201]
        if bad:
            raise SystemExit(f"warm-up failed: {bad[0].status} {bad[0].body[:500]!r}")
        worker_pids, pg_pids = children(proc.pid), postgres_pids(conninfo, dbname)
        print(f"posting with {args.concurrency} connections to {args.workers} gunicorn workers …", flush=True)
        with py_spy(proc.pid, PROFILE, "--subprocesses") if args.profile else nullcontext():
            before = CpuSnapshot.take(worker_pids, pg_pids)
            load = post_all(url=url, key=keys[SOURCE], bodies=bodies, concurrency=args.concurrency)
            after = CpuSnapshot.take(worker_pids, pg_pids)

    # Every call answered 201, every item was created once, and the table holds exactly the items sent.
    created = sum(json.loads(o.body)["created"] for o in load.outcomes if o.status == 201)
    with psycopg.connect(conninfo) as conn:
        counted = conn.execute(f"SELECT count(*) FROM {ITEMS_TABLE} WHERE source = %s", [SOURCE]).fetchone()
    broker = redis.Redis.from_url(BROKER_URL)
    return Measured(
        load=load,
        cpu=(before, after),
        created=created,
        failures=[o for o in load.outcomes if o.status != 201],
        stored=counted[0] if counted else -1,
        published=triage_messages(broker) - len(warmup),
    )


def report_build(
    args: argparse.Namespace,
    conninfo: str,
    m: Measured,
    *,
    bodies: list[bytes],
    copy_seconds: float,
    insert: tuple[float, float],
) -> Report:
    items, elapsed = args.items, m.load.elapsed
    before, after = m.cpu
    workers, postgres, client = (
        after.workers - before.workers,
        after.postgres - before.postgres,
        after.client - before.client,
    )
    busy = after.machine_busy - before.machine_busy
    others = max(0.0, busy - workers - postgres - client)
    rate = m.created / elapsed
    copy_rate = items / copy_seconds
    insert_seconds, insert_cpu = insert
    latencies = [o.seconds * 1000 for o in m.load.outcomes]
    statuses = Counter(o.status for o in m.load.outcomes)
    verdict = "met" if rate >= args.target else "MISSED"

    report = Report("Intake benchmark")
    report.add("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    report.add("machine", machine_description(conninfo))
    sampled = " (sampled by py-spy: slower than without)" if args.profile else ""
    report.add("server", f"gunicorn {args.workers} sync workers, no access log{sampled}; throttle cache in Redis db 14")
    report.add("triage hand-off", f"{m.published} tasks published to Redis db 15; no Celery worker runs (purged after)")
    report.add("items / batch / concurrency", f"{items:,} / {args.batch} / {args.concurrency} connections")
    report.add("body size", f"{sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB per batch, pre-encoded")
    report.add("elapsed", f"{elapsed:.2f} s")
    report.add("**items/s accepted**", f"**{rate:,.0f}** (target {args.target:,.0f}: {verdict})")
    report.add("batch latency p50 / p99", f"{percentile(latencies, 0.5):.0f} / {percentile(latencies, 0.99):.0f} ms")
    report.add("responses", ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items())))
    report.add("rows stored for the source", f"{m.stored:,} (expected {items:,})")
    report.add("rows differing from COPY's", f"{m.differing:,} (every stored field compared)")
    report.add(
        "CPU during the load, in cores",
        f"gunicorn workers {workers / elapsed:.2f}, PostgreSQL {postgres / elapsed:.2f}, "
        f"bench client {client / elapsed:.2f}, anything else {others / elapsed:.2f} "
        f"(machine {busy / (after.machine_total - before.machine_total):.0%} busy)",
    )
    report.add(
        "server CPU per 1,000 items",
        f"{workers / items * 1e6:.0f} ms in gunicorn workers, {postgres / items * 1e6:.0f} ms in PostgreSQL",
    )
    report.add(
        "same INSERT from psycopg directly",
        f"{items / insert_seconds:,.0f} rows/s, batches of {args.batch}, a transaction each; "
        f"{insert_cpu / items * 1e6:.0f} ms client CPU per 1,000 rows",
    )
    report.add(
        "COPY FROM STDIN, same rows",
        f"{copy_rate:,.0f} rows/s ({copy_seconds:.2f} s, one COPY in one transaction, psycopg write_row)",
    )
    report.add(
        "scratch tables",
        f"new logged tables LIKE {ITEMS_TABLE} INCLUDING ALL (same columns, checks, unique and other indexes; "
        "no foreign keys, all NULL here anyway)",
    )
    report.add("HTTP intake vs COPY", f"{rate / copy_rate:.1%} of the COPY rate ({copy_rate / rate:.1f}x slower)")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--concurrency", type=int, help="connections in flight (default: one per worker, so latency has no queueing)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/ops_bench_intake")
    parser.add_argument("--target", type=float, default=5000, help="items/s accepted to call it a pass")
    parser.add_argument("--profile", action="store_true", help="sample the workers with py-spy (slows them)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the gunicorn log afterwards")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    args.concurrency = args.concurrency or args.workers
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    args.log = Path(tempfile.gettempdir()) / f"bench-intake-gunicorn-{os.getpid()}.log"

    conninfo, dbname, admin = scratch_database(args.database_url)
    env = app_env(
        args.database_url,
        drop=(),
        CELERY_BROKER_URL=BROKER_URL,
        CELERY_TASK_ALWAYS_EAGER="false",
        CACHE_URL=CACHE_URL,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # One connection per worker for the whole run, so the backends whose CPU is counted are the ones working.
        CONN_MAX_AGE="600",
    )

    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    items = items_generate(count=args.items, run=f"b{now:%Y%m%d%H%M%S}", seed=1, created_at=now)
    bodies = batches(items, args.batch)
    rows = [copy_row(item, now) for item in items]
    print(f"{len(items):,} items in {len(bodies)} pre-encoded bodies; recreating database {dbname} …", flush=True)
    database_recreate(admin, dbname)
    redis_flush(BROKER_URL, CACHE_URL)
    try:
        measured = measure_http(args, env, conninfo, bodies)
        print("the same rows straight into PostgreSQL: INSERT, then COPY …", flush=True)
        insert = insert_rows(conninfo, rows, args.batch)
        copy_seconds = copy_rows(conninfo, rows)
        measured.differing = rows_differing(conninfo)
        report = report_build(args, conninfo, measured, bodies=bodies, copy_seconds=copy_seconds, insert=insert)
        text = report.render()
        if args.profile:
            before, after = measured.cpu
            text += "\n" + profile_report(
                PROFILE, worker_cpu=after.workers - before.workers, items=args.items, batches=len(bodies)
            )
        print("\n" + text)
        for o in measured.failures[:5]:
            print(f"non-201: {o.status} {o.body[:300]!r}")
        if not args.no_write:
            RESULTS.write_text(text)
            print(f"written to {RESULTS.relative_to(ROOT)}")
        ok = not measured.failures and measured.stored == measured.created == len(items) and not measured.differing
        if not ok:
            print(
                f"FAILED: {len(measured.failures)} non-201 answers, {measured.created:,} created, "
                f"{measured.stored:,} stored, {len(items):,} sent, {measured.differing:,} rows differ from COPY's"
            )
        return 0 if ok else 1
    finally:
        redis_flush(BROKER_URL, CACHE_URL)
        scratch_release(admin, dbname, keep=args.keep, kept=f" and gunicorn log {args.log}", files=[args.log])


if __name__ == "__main__":
    sys.exit(main())
