"""What the fault drills share: the app's processes on a scratch database of the shared PostgreSQL (or a private
cluster), posting items, the triage checks and the drill's report.

Nothing here imports Django: a drill runs the app only in subprocesses (as production does) and reads the
outcome with SQL, so the same drill runs from the command line (``python -m tests.drills.<name>``) and from
pytest (whose process has its own Django settings and test database).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx
import psycopg
from psycopg import sql

from tests.support.processes import ROOT, manage, model_train
from tests.support.processes import app_env as scratch_env
from tests.support.servers import RedisServer

RESULTS = ROOT / "bench" / "results"
# The PostgreSQL the scratch databases live on (a drill that restarts PostgreSQL runs its own cluster instead).
# DRILL_POSTGRES_URL, else the server of DATABASE_URL when it is PostgreSQL (CI's), else the local service.
_database_url = os.environ.get("DATABASE_URL", "")
ADMIN_URL = os.environ.get("DRILL_POSTGRES_URL") or (
    _database_url.rsplit("/", 1)[0] + "/postgres"
    if _database_url.startswith(("postgres://", "postgresql://"))
    else "postgres://postgres@127.0.0.1:5432/postgres"
)
DATABASE_PREFIX = os.environ.get("DRILL_DATABASE_PREFIX", "ops_drill_")
# pytest runs each drill at its CI size unless DRILL_SIZE=full (what `make bench` runs).
CI_SIZE = os.environ.get("DRILL_SIZE", "ci") != "full"
SOURCE = "drill"


# --- results ----------------------------------------------------------------------------------------


@dataclass
class DrillResult:
    """One drill's outcome, as the benchmark report reads it."""

    name: str
    passed: bool
    figures: list[tuple[str, Any]]
    markdown: str
    seconds: float


@dataclass
class Drill:
    """Figures and checks collected while a drill runs; ``finish`` renders and writes them."""

    name: str
    title: str
    started: float = field(default_factory=time.monotonic)
    figures: list[tuple[str, Any]] = field(default_factory=list)
    checks: list[tuple[str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure(self, label: str, value: Any) -> None:
        self.figures.append((label, value))

    def check(self, what: str, ok: bool) -> bool:
        self.checks.append((what, bool(ok)))
        return bool(ok)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def log(self, text: str) -> None:
        print(f"[{self.name} {time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)

    def finish(self, *, write: bool = True) -> DrillResult:
        seconds = time.monotonic() - self.started
        passed = bool(self.checks) and all(ok for _, ok in self.checks)
        self.figure("drill duration", f"{seconds:.1f} s")
        lines = [f"## Drill {self.name}: {self.title} ({'PASSED' if passed else 'FAILED'})", "", "| | |", "|---|---|"]
        lines += [f"| {label} | {_text(value)} |" for label, value in self.figures]
        lines.append("")
        lines += [f"- {'pass' if ok else '**FAIL**'}: {what}" for what, ok in self.checks]
        if self.notes:
            lines += ["", *self.notes]
        markdown = "\n".join(lines) + "\n"
        if write:
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / f"drill-{self.name}.md").write_text(markdown)
        return DrillResult(self.name, passed, list(self.figures), markdown, seconds)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) or "none"
    return str(value)


def cli(run: Callable[..., DrillResult], doc: str, add_arguments: Callable[[argparse.ArgumentParser], None]) -> int:
    """The command line of a drill: its own options, then print the markdown; exit 0 only when it passed."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_arguments(parser)
    params = {k: v for k, v in vars(parser.parse_args()).items() if v is not None}
    result = run(**params)
    print(result.markdown, flush=True)
    return 0 if result.passed else 1


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the app on a scratch database ------------------------------------------------------------------


def database_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{DATABASE_PREFIX}{name}"


def app_env(database_url: str, broker_url: str, *, cache_url: str = "locmem://", **extra: str) -> dict[str, str]:
    """The environment of a production-like process (gunicorn, worker, beat, manage.py) of this checkout."""
    settings = {
        "CELERY_BROKER_URL": broker_url,
        "CACHE_URL": cache_url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_COOKIES": "0",
        "SCORING_DEFAULT_CHAIN": "local",
        "API_DEFAULT_RATE_PER_MINUTE": "1000000",
        "LOG_LEVEL": "INFO",
    }
    return scratch_env(database_url, **(settings | extra))


def _template_digest(model: bool) -> str:
    """Changes whenever a migration or the local model's code does, so a stale template is never used."""
    digest = hashlib.sha1(f"model={model}".encode())  # noqa: S324 - a cache key, not a secret
    paths = sorted(ROOT.glob("*/migrations/*.py")) + sorted(ROOT.glob("ops_platform/*/migrations/*.py"))
    paths += [ROOT / "routing/scoring" / n for n in ("local_model.py", "training.py", "registry.py")]
    for path in paths:
        digest.update(path.relative_to(ROOT).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def database_prepare(env: dict[str, str], *, model: bool = False) -> str:
    """Recreate the scratch database named by ``env``, migrated (and with a trained, promoted local model when
    ``model``); returns its URL.

    Migrating and training take a minute or two on a busy machine, so the first drill builds a template
    database and the others clone it (``CREATE DATABASE … TEMPLATE``, under a second).
    """
    url = env["DATABASE_URL"]
    base, dbname = url.rsplit("/", 1)
    if not dbname.startswith(DATABASE_PREFIX):
        raise SystemExit(f"refusing to recreate {dbname!r}: scratch databases start with {DATABASE_PREFIX!r}")
    admin = f"{base}/postgres"
    kind = f"{DATABASE_PREFIX}tpl_{'model' if model else 'plain'}_"
    template = f"{kind}{_template_digest(model)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,)).fetchone()
    if not exists:
        building = f"{template}_build"
        with psycopg.connect(admin, autocommit=True) as conn:
            _drop(conn, building)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
        build_env = {**env, "DATABASE_URL": f"{base}/{building}"}
        manage(build_env, "migrate", "--noinput")
        if model:
            model_train(build_env, actor="tests/drills")
        with psycopg.connect(admin, autocommit=True) as conn:
            stale = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
                (kind.replace("_", "\\_") + "%", building),
            ).fetchall()
            for (name,) in stale:
                _drop(conn, name)
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building), sql.Identifier(template))
            )
    with psycopg.connect(admin, autocommit=True) as conn:
        _drop(conn, dbname)
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(dbname), sql.Identifier(template)))
    return url


def _drop(conn: psycopg.Connection[Any], dbname: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def database_forget(env: dict[str, str]) -> None:
    base, dbname = env["DATABASE_URL"].rsplit("/", 1)
    if dbname.startswith(DATABASE_PREFIX):
        with contextlib.suppress(psycopg.Error), psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            _drop(conn, dbname)


WORLD = """
import json
from ops_platform.core.models import ApiScope
from ops_platform.core.services import api_client_create
from queues.models import Queue
Queue.objects.get_or_create(slug="general", defaults={"name": "General", "is_default_intake": True})
client, key = api_client_create(actor="drill", name="Drill client", source=%(source)r,
    scopes=[s.value for s in ApiScope], callback_url=%(callback)r, rate_limit_per_minute=10_000_000)
print("WORLD " + json.dumps({"key": key, "secret": client.webhook_secret}))
"""


@dataclass(frozen=True)
class World:
    key: str
    webhook_secret: str


def world_create(env: dict[str, str], *, callback_url: str = "") -> World:
    """The default intake queue and an API client (with a webhook secret when it has a callback URL)."""
    out = manage(env, "shell", "-c", WORLD % {"source": SOURCE, "callback": callback_url})
    data = json.loads(next(line for line in out.splitlines() if line.startswith("WORLD ")).removeprefix("WORLD "))
    return World(data["key"], data["secret"])


class DrillWorld(NamedTuple):
    env: dict[str, str]
    conninfo: str
    broker: RedisServer
    world: World


@contextlib.contextmanager
def drill_world(
    drill: Drill,
    settings: dict[str, str],
    *,
    keep: bool,
    model: bool = True,
    cache: bool = True,
    callback_url: str = "",
) -> Iterator[DrillWorld]:
    """What a drill on the shared PostgreSQL starts from: a private Redis as the broker (db 0) and, with ``cache``,
    the Django cache (db 1); the app's environment with ``settings``; the drill's scratch database, migrated (the
    local model trained and promoted when ``model``), with the default intake queue and an API client. Redis stops
    and the database is dropped (unless ``keep``) however the block ends."""
    broker = RedisServer()
    broker.start()
    env = app_env(database_url(drill.name), broker.url, cache_url=broker.db(1) if cache else "locmem://", **settings)
    try:
        drill.log("preparing the scratch database …")
        conninfo = database_prepare(env, model=model)
        yield DrillWorld(env, conninfo, broker, world_create(env, callback_url=callback_url))
    finally:
        broker.stop()
        if not keep:
            database_forget(env)


# --- intake over HTTP -------------------------------------------------------------------------------

TEXTS = (
    "Loved the photos from the trip, thanks for sharing!",
    "You are such an idiot, nobody asked for your opinion.",
    "Click here for free money and cheap likes, visit https://example.test/promo",
    "I will find you and break your face.",
    "Does anyone know when the library opens on Sunday?",
    "Those people are vermin and should go back to where they came from.",
    "Selling my old bike, barely used, message me.",
    "I want to die, nobody would miss me.",
)


def item_bodies(start: int, count: int, *, run: str) -> list[dict[str, Any]]:
    return [
        {"external_id": f"{run}-{n}", "text": f"{TEXTS[n % len(TEXTS)]} (#{n})", "author_ref": f"author-{n % 97}"}
        for n in range(start, start + count)
    ]


@dataclass
class Post:
    at: float  # monotonic seconds when the request started
    status: int  # 0 when no HTTP answer came back
    seconds: float
    items: int
    retry_after: str | None = None
    body: str = ""


class Poster:
    """Posts batches of new items to ``/api/v1/items`` at a steady pace in a thread until stopped."""

    def __init__(self, base: str, key: str, *, batch: int, per_second: float, run: str, limit: int | None = None):
        self.base, self.key, self.run = base, key, run
        self.batch, self.per_second, self.limit = batch, per_second, limit
        self.posts: list[Post] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drill-poster", daemon=True)

    def start(self) -> Poster:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=180)

    def wait(self, timeout: float = 600) -> None:
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        interval = self.batch / self.per_second
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {self.key}"}) as http:
            next_at = time.monotonic()
            while not self._stop.is_set() and (self.limit is None or self.sent < self.limit):
                count = self.batch if self.limit is None else min(self.batch, self.limit - self.sent)
                self.posts.append(post_items(http, self.base, item_bodies(self.sent, count, run=self.run)))
                self.sent += count
                next_at += interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def statuses(self) -> Counter[int]:
        return Counter(p.status for p in self.posts)


def post_items(http: httpx.Client, base: str, items: list[dict[str, Any]]) -> Post:
    started = time.monotonic()
    try:
        response = http.post(f"{base}/api/v1/items", json=items)
    except httpx.HTTPError as exc:
        return Post(started, 0, time.monotonic() - started, len(items), body=type(exc).__name__)
    body = response.text[:300] if response.status_code >= 300 else ""
    seconds = time.monotonic() - started
    return Post(started, response.status_code, seconds, len(items), response.headers.get("Retry-After"), body)


# --- what the database says ---------------------------------------------------------------------------


@dataclass
class Triage:
    """The triage outcome of a drill's items, read with SQL."""

    items: int
    by_state: dict[str, int]
    untriaged: int
    routing_decisions: int
    items_routed_twice: int
    items_without_decision: int
    items_queued_twice: int
    items_triage_events: int
    duplicate_scores: int
    items_by_backend: dict[str, int]
    resent_by_sweeper: int
    dead_letters: int

    @property
    def ok(self) -> bool:
        return (
            self.items > 0
            and self.untriaged == 0
            and self.items_routed_twice == 0
            and self.items_without_decision == 0
            and self.items_queued_twice == 0
            and self.duplicate_scores == 0
            and self.dead_letters == 0
        )


def triage_read(conninfo: str, source: str = SOURCE) -> Triage:
    """Every item of ``source``: its state, its live routing decisions, its 'queued'/'auto_actioned' events
    (one each: an item routed twice would have two) and its score rows (one per backend and model version)."""
    with psycopg.connect(conninfo) as conn:

        def one(sql: str) -> int:
            row = conn.execute(sql, {"source": source}).fetchone()
            return int(row[0] or 0) if row else 0

        items = "SELECT id FROM queues_reviewitem WHERE source = %(source)s"
        by_state: dict[str, int] = dict(
            conn.execute(
                "SELECT state, count(*) FROM queues_reviewitem WHERE source = %(source)s GROUP BY state ORDER BY 1",
                {"source": source},
            ).fetchall()
        )
        decisions = f"SELECT item_id, count(*) AS n FROM routing_routingdecision WHERE NOT shadow AND item_id IN ({items}) GROUP BY item_id"  # noqa: E501
        events = f"SELECT item_id, count(*) AS n FROM queues_itemevent WHERE event IN ('queued', 'auto_actioned') AND from_state = 'received' AND item_id IN ({items}) GROUP BY item_id"  # noqa: E501
        scores = f"SELECT item_id, backend, model_version, prompt_version, count(*) AS n FROM routing_classifierscore WHERE item_id IN ({items}) GROUP BY 1, 2, 3, 4"  # noqa: E501
        backends: dict[str, int] = dict(
            conn.execute(
                f"SELECT backend, count(DISTINCT item_id) FROM routing_classifierscore WHERE item_id IN ({items}) GROUP BY 1 ORDER BY 1",  # noqa: E501
                {"source": source},
            ).fetchall()
        )
        return Triage(
            items=one(f"SELECT count(*) FROM ({items}) i"),
            by_state={str(k): int(v) for k, v in by_state.items()},
            untriaged=int(by_state.get("received", 0)),
            routing_decisions=one(f"SELECT sum(n) FROM ({decisions}) d"),
            items_routed_twice=one(f"SELECT count(*) FROM ({decisions}) d WHERE n > 1"),
            items_without_decision=one(
                f"SELECT count(*) FROM ({items}) i WHERE i.id NOT IN (SELECT item_id FROM ({decisions}) d)"
            ),
            items_queued_twice=one(f"SELECT count(*) FROM ({events}) e WHERE n > 1"),
            items_triage_events=one(f"SELECT count(*) FROM ({events}) e"),
            duplicate_scores=one(f"SELECT count(*) FROM ({scores}) s WHERE n > 1"),
            items_by_backend={str(k): int(v) for k, v in backends.items()},
            resent_by_sweeper=one(
                f"SELECT count(*) FROM ({items}) i JOIN queues_reviewitem r ON r.id = i.id "
                "WHERE r.triage_requested_at IS NOT NULL"
            ),
            dead_letters=one("SELECT count(*) FROM routing_deadletter"),
        )


def untriaged_count(conninfo: str, source: str = SOURCE) -> int:
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM queues_reviewitem WHERE source = %s AND state = 'received'", (source,)
        ).fetchone()
        return int(row[0]) if row else 0


def items_count(conninfo: str, source: str = SOURCE) -> int:
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM queues_reviewitem WHERE source = %s", (source,)).fetchone()
        return int(row[0]) if row else 0


def triage_report(drill: Drill, triage: Triage, *, accepted: int) -> None:
    """The triage figures and the checks every triage drill makes: every accepted item stored and triaged once."""
    drill.figure("items stored", triage.items)
    drill.figure("items by state", triage.by_state)
    drill.figure("items still un-triaged", triage.untriaged)
    drill.figure("live routing decisions", triage.routing_decisions)
    drill.figure("items routed twice (>1 live routing decision)", triage.items_routed_twice)
    drill.figure("items with two 'queued'/'auto_actioned' events", triage.items_queued_twice)
    drill.figure("duplicate score rows (same item, backend, version)", triage.duplicate_scores)
    drill.figure("items scored, by backend", triage.items_by_backend)
    drill.figure("items re-sent by the un-triaged sweeper", triage.resent_by_sweeper)
    drill.figure("dead letters", triage.dead_letters)
    drill.check(f"every accepted item is stored ({triage.items} of {accepted})", triage.items == accepted)
    drill.check("nothing lost: every item left 'received' (queued or auto-actioned)", triage.untriaged == 0)
    drill.check(
        "nothing routed twice: exactly one live routing decision and one queued/auto_actioned event per item",
        triage.items_routed_twice == 0
        and triage.items_queued_twice == 0
        and triage.items_without_decision == 0
        and triage.items_triage_events == triage.items,
    )
    drill.check("no duplicate scores", triage.duplicate_scores == 0)
    drill.check("no dead letters", triage.dead_letters == 0)
