"""What the benchmarks share (scratch database, COPY, HTTP load, CPU accounting, markdown); the scripts
run as ``python bench/<name>.py``, so the checkout's root is put on the import path for the app and tests/support."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.processes import app_env, children, manage

RESULTS = ROOT / "bench" / "results"
TICK = os.sysconf("SC_CLK_TCK")


def parser(doc: str | None, database: str) -> argparse.ArgumentParser:
    """The options every benchmark has; ``database``: the default scratch database, a prefix of any other."""
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    p.add_argument("--database-url", default=f"postgres://postgres@127.0.0.1:5432/{database}")
    p.add_argument("--keep", action="store_true", help="keep the scratch database (and logs) afterwards")
    p.add_argument("--no-write", action="store_true", help="print the result only, do not write bench/results/")
    p.set_defaults(prefix=database)
    return p


@dataclass
class Scratch:
    env: dict[str, str]  # the app's processes' environment
    conninfo: str
    dbname: str


@contextmanager
def scratch(
    args: argparse.Namespace,
    *,
    redis: Sequence[str] = (),
    celery: tuple[str, str] | None = None,
    files: Sequence[Path] = (),
    reuse: bool = False,
    django: bool = True,
    **env: str,
) -> Iterator[Scratch]:
    """The scratch database recreated and migrated (``reuse``: kept), the app's env and Django here on it (``celery``:
    broker and cache URLs, not eager), the run's Redis databases flushed; all dropped afterwards unless ``--keep``."""
    if celery:
        redis = [*redis, *celery]
        env |= {"CELERY_BROKER_URL": celery[0], "CELERY_TASK_ALWAYS_EAGER": "false", "CACHE_URL": celery[1]}
    conninfo = make_conninfo(args.database_url)
    dbname = str(conninfo_to_dict(conninfo).get("dbname") or "")
    if not dbname.startswith(args.prefix):
        raise SystemExit(f"--database-url must name a scratch database {args.prefix}*: it is dropped and recreated")

    def database(*statements: str) -> None:
        with psycopg.connect(make_conninfo(conninfo, dbname="postgres"), autocommit=True) as conn:
            for statement in statements:
                conn.execute(sql.SQL(statement).format(sql.Identifier(dbname)))

    settings = app_env(args.database_url, **env)
    if not reuse:
        print(f"recreating database {dbname} and migrating …", flush=True)
        database("DROP DATABASE IF EXISTS {} WITH (FORCE)", "CREATE DATABASE {}")
    for url in redis:
        Redis.from_url(url).flushdb()
    try:
        manage(settings, "migrate", *(["analytics"] if reuse else []), "--noinput")
        if django:
            django_setup(settings)
        yield Scratch(settings, conninfo, dbname)
    finally:
        for url in redis:
            Redis.from_url(url).flushdb()
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if args.keep or reuse:
            print(f"kept database {dbname}" + "".join(f", {p}" for p in files))
        else:
            database("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            for path in files:
                path.unlink(missing_ok=True)


def django_setup(env: dict[str, str], *, refuse_eager: str = "") -> None:
    """Django in this process too; ``refuse_eager``: why Celery's eager mode would spoil the run, said if it is on."""
    os.environ.update(env)
    import django

    django.setup()
    if refuse_eager:
        from ops_platform.celery import app

        if app.conf.task_always_eager:
            raise SystemExit(f"Celery is in eager mode: {refuse_eager}")


def table(model: Any) -> str:
    return str(model._meta.db_table)


def columns_of(model: Any, names: Iterable[str]) -> list[str]:
    """The database columns of ``model``'s fields (by name or attname); an unknown name fails here, not in SQL."""
    return [model._meta.get_field(name).column for name in names]


def names(text: str, sep: str | None = None) -> list[str]:
    """Names written as one string: a list the formatter keeps on a line or two."""
    return text.split(sep)


def copy_rows(conn: psycopg.Connection[Any], model: Any, names: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY ``rows`` (values for the fields ``names``) into ``model``'s table; other columns get the ORM's default."""
    from django.db import connection

    given = set(columns_of(model, names))
    others = [f for f in model._meta.concrete_fields if not f.primary_key and f.column not in given]
    defaults = tuple(f.get_db_prep_save(f.get_default(), connection) for f in others)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table(model)),
        sql.SQL(", ").join(map(sql.Identifier, [*columns_of(model, names), *(f.column for f in others)])),
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row((*row, *defaults))


# The fields an intake insert fills with something other than NULL, in the order ``intake_row`` gives them.
INTAKE_FIELDS = names(
    "source external_id kind text media_urls author_ref surface language metadata report_reasons report_count state "
    "priority received_at created_at required_reviews tags is_golden"
)
# Every NOT NULL field of a queued item without a database default, and the queue fields (claim.py, metrics.py).
QUEUED_FIELDS = names(
    "source external_id kind text media_urls author_ref surface language metadata report_reasons report_count "
    "is_golden state queue_id priority tags required_reviews received_at triaged_at queued_at due_at"
)
INTAKE_DEFAULTS: dict[str, Any] = {"kind": "content", "author_ref": "", "surface": "", "language": "", "tags": []}
INTAKE_DEFAULTS |= {"media_urls": [], "metadata": {}, "report_reasons": [], "state": "received", "priority": 0}
INTAKE_DEFAULTS |= {"required_reviews": 1, "is_golden": False, "created_at": None}
JSON_FIELDS = {"media_urls", "metadata", "report_reasons", "tags"}


def intake_row(item: dict[str, Any], source: str, received_at: Any) -> tuple[Any, ...]:
    """The row intake stores for an item as the API takes it (JSON fields as JSON text), in INTAKE_FIELDS order."""
    reasons = item.get("report_reasons", [])
    row = {**INTAKE_DEFAULTS, **item, "source": source, "report_count": len(reasons), "received_at": received_at}
    return tuple(json.dumps(row[k]) if k in JSON_FIELDS else row[k] for k in INTAKE_FIELDS)


# What post-like generated items draw from (intake, rules and e2e alike).
SURFACES = ["post", "post", "post", "comment", "comment", "comment", "dm", "profile", "listing", "story"]
COUNTRIES = ["US", "BR", "MX", "DE", "JP", "IN", "GB", "FR", "ES", "ID", "AT", "IT", "NL", "PL"]
REASONS = ["spam", "harassment", "hate_speech", "scam", "nudity", "violence", "impersonation", "self_harm"]
LANGUAGES = ["en"] * 6 + ["pt-BR", "pt-BR", "es", "es", "de", "ja"]
VOCABULARY = {
    "en": (
        "the this is not what I said about your post and you know it honestly people like you should stop "
        "buy cheap followers now click link in bio free giveaway limited offer great photo love it thanks "
        "for sharing anyone else seeing this report spam account again scam crypto double your money "
        "meeting tomorrow at noon see you there lol that was hilarious worst service ever never again"
    ),
    "pt-BR": (
        "olha só que absurdo ninguém merece isso compre agora promoção imperdível link na bio ótimo trabalho "
        "parabéns pessoal denunciem essa conta golpe pix grátis amanhã às dez nos vemos lá"
    ),
    "es": (
        "esto es increíble gracias por compartir oferta limitada haz clic aquí cuenta falsa estafa nunca más pésimo "
        "servicio nos vemos mañana qué risa denuncien este perfil por favor"
    ),
    "de": (
        "das ist wirklich unglaublich danke fürs teilen jetzt kaufen gratis gewinnspiel link im profil betrug "
        "gefälschtes konto bis morgen schlechtester service überhaupt bitte melden"
    ),
    "ja": "これは ひどい 投稿 です 今すぐ クリック 無料 プレゼント 詐欺 アカウント 通報 ありがとう また 明日",
}


@dataclass
class Posted:
    status: int  # 0: no HTTP answer
    sent: float  # perf_counter
    answered: float
    body: bytes

    @property
    def seconds(self) -> float:
        return self.answered - self.sent


@dataclass
class Load:
    posted: list[Posted]
    elapsed: float

    def failures(self) -> list[Posted]:
        return [p for p in self.posted if p.status != 201]

    def check(self, what: str) -> Load:
        """Stop the run when a call was not a 201: what follows would measure something else."""
        if failed := self.failures():
            raise SystemExit(
                f"{what}: {len(failed)} calls failed, the first {failed[0].status} {failed[0].body[:500]!r}"
            )
        return self


def api_keys(*sources: str) -> dict[str, str]:
    """An API client per source (items:write, no rate limit to speak of); their keys."""
    from ops_platform.core.services import api_client_create

    return {
        source: api_client_create(
            actor="bench", name=source, source=source, scopes=["items:write"], rate_limit_per_minute=10_000_000
        )[1]
        for source in sources
    }


def batches(items: list[dict[str, Any]], size: int) -> list[bytes]:
    return [json.dumps(items[i : i + size], ensure_ascii=False).encode() for i in range(0, len(items), size)]


def post_all(url: str, key: str, bodies: list[bytes], *, concurrency: int) -> Load:
    """Post every body, ``concurrency`` at a time, flat out."""
    results: list[Posted | None] = [None] * len(bodies)
    order = itertools.count()  # next() on it is atomic under the GIL
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    start = threading.Barrier(concurrency + 1)

    def work() -> None:
        with httpx.Client(headers=headers, timeout=300) as client:
            start.wait()
            while (i := next(order)) < len(bodies):
                sent = time.perf_counter()
                try:
                    response = client.post(url, content=bodies[i])
                    results[i] = Posted(response.status_code, sent, time.perf_counter(), response.content)
                except httpx.HTTPError as exc:
                    results[i] = Posted(0, sent, time.perf_counter(), repr(exc).encode())

    threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    return Load([r for r in results if r is not None], time.perf_counter() - t0)


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state first), or none if the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    stat = proc_stat(pid)
    return (int(stat[11]) + int(stat[12])) / TICK if stat else 0.0


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants."""
    stat = proc_stat(pid)
    return sum(int(v) for v in stat[11:15]) / TICK + sum(map(tree_cpu, children(pid))) if stat else 0.0


def pids_named(name: str) -> list[int]:
    """The processes whose command name is ``name``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/comm"):
        try:
            found += [int(entry.parent.name)] if entry.read_text().strip() == name else []
        except OSError:
            continue
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICK, sum(values[:8]) / TICK


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# The PostgreSQL processes working for a bench: the backends connected to its database, and the server's own
# writers (WAL, checkpoints, background), which work for them.
WORKING_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (datname = %s OR backend_type IN "
    "('walwriter', 'checkpointer', 'background writer'))"
)


def postgres_pids(conninfo: str, dbname: str) -> list[int]:
    with psycopg.connect(conninfo) as conn:
        return [pid for (pid,) in conn.execute(WORKING_BACKENDS, [dbname]).fetchall()]


@dataclass
class Usage:
    """CPU seconds per process group over a wall-clock window, and the whole machine's busy and total seconds."""

    wall: float = 0.0
    groups: dict[str, float] = field(default_factory=dict)
    busy: float = 0.0
    total: float = 0.0

    @property
    def others(self) -> float:
        """Cores used by every process outside the groups."""
        return max(0.0, self.busy - sum(self.groups.values())) / max(self.wall, 1e-9)

    def line(self) -> str:
        text = ", ".join(f"{name} {v / max(self.wall, 1e-9):.2f}" for name, v in self.groups.items())
        return f"{text}, anything else {self.others:.2f} (machine {self.busy / max(self.total, 1e-9):.0%} busy)"


class CpuMeter:
    """Snapshots of named process groups' CPU seconds (each a function reading /proc), differenced into Usage."""

    def __init__(self, groups: dict[str, Callable[[], float]]) -> None:
        self.groups = groups

    def snapshot(self) -> tuple[float, dict[str, float], float, float]:
        busy, total = machine_busy()
        return time.perf_counter(), {k: f() for k, f in self.groups.items()}, busy, total

    @staticmethod
    def usage(before: tuple[float, dict[str, float], float, float], after: tuple[Any, ...]) -> Usage:
        groups = {k: after[1][k] - before[1][k] for k in before[1]}
        return Usage(after[0] - before[0], groups, after[2] - before[2], after[3] - before[3])


def cpu_model() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return next((ln.split(":", 1)[1].strip() for ln in lines if "model name" in ln), platform.processor() or "?")


def machine_description(conninfo: str, *extra: str) -> str:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT current_setting('server_version'), current_setting('shared_buffers')").fetchone()
    version, buffers = row if row else ("?", "?")
    parts = [f"{len(os.sched_getaffinity(0))} CPUs ({cpu_model()})", f"PostgreSQL {version} (shared_buffers {buffers})"]
    return ", ".join([*parts, *extra, f"Python {platform.python_version()}"])


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``call`` took, and what it returned."""
    t0 = time.perf_counter()
    out = call()
    return time.perf_counter() - t0, out


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``q`` of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def quantiles(values: Sequence[float], qs: Sequence[float], fmt: str = ".1f", unit: str = "") -> str:
    """ "p50 1.0 ms, p99 …": ``percentile`` at each of ``qs``."""
    return ", ".join(f"p{q * 100:g} {percentile(values, q):{fmt}}{unit}" for q in qs)


@dataclass
class Report:
    """A benchmark's figures as a two-column markdown table under a heading, then any text."""

    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    intro: str = ""

    def add(self, label: str, value: str) -> None:
        self.rows.append((label, value))

    def stamp(self, conninfo: str, *extra: str) -> None:
        self.add("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
        self.add("machine", machine_description(conninfo, *extra))

    def render(self) -> str:
        width = max(len(label) for label, _ in self.rows)
        lines = [f"## {self.title}", "", *([self.intro, ""] if self.intro else [])]
        lines += [f"| {'':<{width}} | |", f"|{'-' * (width + 2)}|---|"]
        lines += [f"| {label:<{width}} | {value} |" for label, value in self.rows]
        return "\n".join(lines) + "\n" + "".join("\n" + text for text in self.after)

    def finish(self, path: Path, *, write: bool, ok: bool, failure: str) -> int:
        """Print the report, write it unless told not to, and say FAILED with ``failure`` when not ``ok``."""
        text = self.render()
        print("\n" + text)
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"written to {path.relative_to(ROOT)}")
        if not ok:
            print(f"FAILED: {failure}")
        return 0 if ok else 1
