"""End-to-end load: items posted over HTTP to gunicorn, triaged by real Celery workers on Redis, on PostgreSQL.

.venv/bin/python bench/e2e.py [--items 200000] [--batch 500] [--gunicorn-workers 2] [--celery-concurrency 2]
    [--media-items 20000] [--steady-items 5000 --steady-rate 200]

Three phases: the flood of --items text-only items (the headline figure); a flood of --media-items where one item
in ten carries an image (640x480 JPEG) served by this script's own HTTP server on 127.0.0.1, one image in ten of
those on cdn.example.com, a name that does not resolve here (a dead link); and --steady-items with the same mix
posted at --steady-rate items/s in batches of 100, for the latency without a backlog. The fetcher refuses
loopback addresses: this script names its server's one address and port in MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS, a
benchmark-only setting, empty by default (docs/media.md).
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib
import httpx
import psycopg
import redis
from intake import copy_rows
from scoring import texts_generate

from tests.support import rule_world
from tests.support.datasets import LABELLED_SET, labelled_rows
from tests.support.image_server import ImageServer, picture
from tests.support.processes import Gunicorn, Process, Worker, model_train, running

RESULT = benchlib.RESULTS / "e2e.md"
BROKER_URL = "redis://127.0.0.1:6379/4"
CACHE_URL = "redis://127.0.0.1:6379/5"
SOURCE, WARMUP_SOURCE = "bench-e2e", "bench-e2e-warmup"
MEDIA_SOURCE, STEADY_SOURCE = "bench-e2e-media", "bench-e2e-steady"
PICTURES = 50  # distinct images served, each under many addresses
DEAD_HOST = "cdn.example.com"  # does not resolve on the bench machine: a dead link's name
# The labelled set's prompts are English; a few items say otherwise, as a multilingual platform's would.
LANGUAGES = ["en"] * 14 + ["pt-BR", "es", "de", "ja"]


def items_generate(
    texts: Sequence[str], *, run: str, seed: int, media: ImageServer | None = None
) -> list[dict[str, Any]]:
    """Items as a service posts them: one in ten a user report, metadata rules read; with ``media``, one in ten
    with an image on that server (registered there), one image in ten of those on a name that does not resolve."""
    rng = random.Random(seed)
    items = []
    for i, text in enumerate(texts):
        followers = int(rng.paretovariate(0.9) * 40)
        metadata: dict[str, Any] = {
            "country": rng.choice(benchlib.COUNTRIES),
            "followers": followers,
            "verified": followers > 200_000 and rng.random() < 0.5,
            "account_age_days": int(rng.expovariate(1 / 400)),
            "client": rng.choice(["ios", "android", "web"]),
        }
        if rng.random() < 0.01:
            metadata["newsworthy"] = True
        item: dict[str, Any] = {
            "external_id": f"{run}-{i:09d}",
            "text": text,
            "author_ref": f"u{int(rng.paretovariate(1.2) * 1000)}",
            "surface": rng.choice(benchlib.SURFACES),
            "language": rng.choice(LANGUAGES),
            "metadata": metadata,
        }
        roll = rng.random()
        if roll < 0.1:
            item["kind"] = "user_report"
            many = rng.random() < 0.05
            count = rng.randint(5, 30) if many else rng.randint(1, 3)
            item["report_reasons"] = [rng.choice(benchlib.REASONS) for _ in range(count)]
        elif roll < 0.2 and media is not None:
            path = f"/m/{run}/{i}.jpg"
            if rng.random() < 0.1:
                item["media_urls"] = [f"https://{DEAD_HOST}{path}"]
            else:
                media.body(path, media_picture(rng.randrange(PICTURES)), content_type="image/jpeg")
                item["media_urls"] = [media.url(path)]
        items.append(item)
    return items


@functools.cache
def media_picture(n: int) -> bytes:
    return picture(n, size=(640, 480), fmt="JPEG")


def bank_import() -> int:
    """A hash bank as a programme shares it: 10,000 PDQ hashes, five of them the served pictures'. Its size."""
    import io

    from PIL import Image

    from routing.scoring.media import pdq
    from routing.scoring.media.services import banks_import

    rng = random.Random(7)
    rows = [f"{rng.getrandbits(256):064x},bench-bank,random" for _ in range(9_995)]
    rows += [f"{pdq.pdq_hash(Image.open(io.BytesIO(media_picture(n))))[0]},bench-bank,served" for n in range(5)]
    banks_import(text="\n".join(rows), actor="bench/e2e.py")
    return len(rows)


def post_paced(url: str, key: str, bodies: Sequence[bytes], *, per_body: int, rate: float) -> float:
    """Post the bodies one at a time, each due at its place in a steady ``rate`` items/s; the seconds taken."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(headers=headers, timeout=300) as client:
        t0 = time.perf_counter()
        for i, body in enumerate(bodies):
            if (delay := t0 + i * per_body / rate - time.perf_counter()) > 0:
                time.sleep(delay)
            response = client.post(url, content=body)
            if response.status_code != 201:
                raise SystemExit(f"the steady phase: a call failed, {response.status_code} {response.content[:500]!r}")
        return time.perf_counter() - t0


@dataclass
class Phase:
    """A phase's figures: items/s from the first received_at to the last triaged_at, the latency, the media."""

    items: int
    span: float
    latency: tuple[float, float, float, int]
    media: dict[str, int]  # MediaAsset status/refusal -> count
    received: int  # items still 'received' (should be 0)

    def rate(self) -> float:
        return self.items / self.span if self.span > 0 else float("nan")


def phase_figures(items_table: str, source: str, items: int) -> Phase:
    from django.db.models import Count

    from queues.models import ReviewItem
    from routing.models import MediaAsset

    mine = ReviewItem.objects.filter(source=source)
    first = mine.order_by("received_at").values_list("received_at", flat=True).first()
    last = mine.order_by("-triaged_at").values_list("triaged_at", flat=True).first()
    span = (last - first).total_seconds() if first and last else float("nan")
    lat = latencies(items_table, "extract(epoch FROM i.triaged_at - i.received_at)", source)
    rows = MediaAsset.objects.filter(item__source=source).values_list("status", "refusal").annotate(n=Count("pk"))
    media = {(f"{status} ({refusal})" if refusal else status): n for status, refusal, n in rows.order_by()}
    return Phase(items, span, lat, media, mine.filter(state="received").count())


class PostgresBackends:
    """CPU of the PostgreSQL processes working for this run, sampled every 2 s (docs/performance.md, e2e)."""

    def __init__(self, dbname: str, exclude: set[int]) -> None:
        self.dbname, self.exclude = dbname, exclude
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.lock = threading.Lock()

    def sample(self, conn: psycopg.Connection[Any], *, at_start: bool = False) -> None:
        rows = conn.execute(benchlib.WORKING_BACKENDS, [self.dbname]).fetchall()
        with self.lock:
            for (pid,) in rows:
                if pid not in self.exclude:
                    cpu = benchlib.tree_cpu(pid)
                    self.first.setdefault(pid, cpu if at_start else 0.0)
                    self.last[pid] = max(cpu, self.last.get(pid, 0.0))

    def total(self) -> float:
        with self.lock:
            return sum(self.last[pid] - self.first[pid] for pid in self.last)

    def watch(self, conninfo: str, stop: threading.Event) -> None:
        """Sample every 2 s, on a connection of its own, until ``stop`` is set."""
        with psycopg.connect(conninfo, autocommit=True) as conn:
            self.exclude.add(conn.info.backend_pid)
            while not stop.is_set():
                self.sample(conn)
                stop.wait(2.0)


ESCALATION_RULES = [
    # name, condition, action, queue slug, priority
    ("overdue-to-tier-2", 'overdue_minutes > 60 and queue in ["general", "hate-harassment"]', "escalate", "tier-2", 30),
    ("repeat-offender-priority", "author.prior_violations >= 5", "raise_priority", "", 10),
    ("mass-reported-priority", "report_count >= 20", "raise_priority", "", 20),
]


@dataclass
class World:
    intake_id: int
    escalation_id: int
    rules: int
    keys: dict[str, str]


def world_create() -> World:
    """rule_world's world, its 50-rule intake set and an escalation set made live by policy staff; API clients."""
    from django.contrib.auth.models import Group

    from ops_platform.core.models import Role
    from routing.models import RuleAction, RuleSetKind
    from routing.rules import lifecycle
    from routing.rules.coverage import ruleset_unproduced_scores
    from tests.routing.rules_setup import policy_staff_member, ruleset_live

    world = rule_world.world_create()
    author, approver = world.draft.created_by, policy_staff_member("bench.approver")
    author.groups.add(Group.objects.get(name=str(Role.POLICY_STAFF)))
    lifecycle.ruleset_submit(actor=author, rule_set=world.draft, change_note="bench/e2e.py: the 50-rule set")
    # Scores no active backend produces (this bench writes none itself) are acknowledged, as a person would.
    unproduced = ruleset_unproduced_scores(world.draft)
    lifecycle.ruleset_approve(actor=approver, rule_set=world.draft, acknowledge=unproduced)
    intake = lifecycle.ruleset_activate(
        actor=author, rule_set=world.draft, reason="bench/e2e.py", acknowledge=unproduced
    )
    rules = [
        lifecycle.RuleData(name, condition, RuleAction(action), queue_id=world.queues[q].pk if q else None, priority=p)
        for name, condition, action, q, p in ESCALATION_RULES
    ]
    escalation = ruleset_live(RuleSetKind.ESCALATION, rules, author=author, approver=approver)
    keys = benchlib.api_keys(SOURCE, WARMUP_SOURCE, MEDIA_SOURCE, STEADY_SOURCE)
    return World(intake.pk, escalation.pk, intake.rules.count(), keys)


def wait_triaged(
    conn: psycopg.Connection[Any], items: str, expected: int, procs: Sequence[Process], *, poll: float = 0.25
) -> float:
    """Poll until no item is left 'received', counting the backlog every 5 s (docs/performance.md, e2e)."""
    last, last_change, counted_at, stall = -1, time.monotonic(), 0.0, 180.0
    while True:
        now = time.perf_counter()
        if conn.execute(f"SELECT 1 FROM {items} WHERE state = 'received' LIMIT 1").fetchone() is None:
            return now
        if time.monotonic() - counted_at >= 5:
            row = conn.execute(f"SELECT count(*) FROM {items} WHERE state = 'received'").fetchone()
            done, counted_at = expected - (int(row[0]) if row else 0), time.monotonic()
            if done != last:
                last, last_change = done, time.monotonic()
        if any(p.proc is None or p.proc.poll() is not None for p in procs):
            raise SystemExit("a server process exited during the run")
        if time.monotonic() - last_change > stall:
            raise SystemExit(f"no progress for {stall:.0f} s at {last:,} of {expected:,} items triaged")
        time.sleep(poll)


def latencies(items: str, expr: str, source: str, where: str = "") -> tuple[float, float, float, int]:
    """p50, p99 and max of ``expr`` over the source's items, and how many."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {expr}), percentile_cont(0.99) WITHIN GROUP "
            f"(ORDER BY {expr}), max({expr}), count(*) FROM {items} i WHERE i.source = %s {where}",
            [source],
        )
        row = cur.fetchone()
    return float(row[0] or 0), float(row[1] or 0), float(row[2] or 0), int(row[3])


@dataclass
class Check:
    """The run's validity: every item triaged exactly once, and a sample routed and scored as in-process."""

    items: int
    counts: dict[str, int] = field(default_factory=dict)  # what should be 0, by what it counts
    states: dict[str, int] = field(default_factory=dict)
    sample: int = 0
    history_dependent: int = 0  # sampled outcomes that depend on author history, which changed during the run
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return sum(self.states.values()) == self.items and not any(self.counts.values())

    def describe(self) -> str:
        states = ", ".join(f"{s} {n:,}" for s, n in sorted(self.states.items()))
        text = f"{sum(self.states.values()):,} of {self.items:,} items stored ({states}); "
        text += "; ".join(f"{n:,} {what}" for what, n in self.counts.items())
        if self.sample:
            text += (
                f" (a sample of {self.sample:,} re-routed and re-scored in-process; {self.history_dependent} depend on "
                "author history, accepted if any history value seen in the run gives the stored result)"
            )
        return ("ok: " if self.ok else "WRONG: ") + text


def check_database(world: World, items: int, source: str) -> Check:
    """Every item triaged exactly once: one queued/auto_actioned event, live routing decision and local score."""
    from django.db.models import Count, F, Q

    from queues.models import ItemEvent, ReviewItem
    from routing.models import ClassifierScore, DeadLetter

    mine = ReviewItem.objects.filter(source=source)

    def not_one(related: str, **where: Any) -> int:
        return mine.annotate(n=Count(related, filter=Q(**where))).exclude(n=1).count()

    c = Check(items, states=dict(mine.values_list("state").annotate(n=Count("pk")).order_by()))
    c.counts = {
        "still received": c.states.get("received", 0),
        "without exactly one queued/auto_actioned event": not_one(
            "events", events__event__in=["queued", "auto_actioned"]
        ),
        "queued_at differing from the event": ItemEvent.objects.filter(item__source=source, event="queued")
        .exclude(at=F("item__queued_at"))
        .count(),
        "without exactly one live intake routing decision": not_one(
            "routing_decisions", routing_decisions__shadow=False, routing_decisions__rule_set_id=world.intake_id
        ),
        "without exactly one local score": not_one("scores", scores__backend="local"),
        "unscored": ClassifierScore.objects.filter(item__source=source, backend="unscored").count(),
        "dead letters": DeadLetter.objects.count(),
    }
    return c


def check_sample(check: Check, world: World, size: int, seed: int) -> None:
    """Route and score a sample again in-process and compare; one that depends on author history passes if any does."""
    from django.db import connections

    from queues.models import ReviewItem
    from routing.models import ClassifierScore, RoutingDecision, RuleSet
    from routing.rules.apply import placements_preview
    from routing.rules.engine import program_for
    from routing.rules.features import item_rows
    from routing.scoring.registry import classifier_load, model_active

    ids = list(ReviewItem.objects.filter(source=SOURCE).values_list("pk", flat=True))
    sample = sorted(random.Random(seed).sample(ids, min(size, len(ids))))
    check.sample = len(sample)
    intake = program_for(RuleSet.objects.get(pk=world.intake_id))
    escalation = program_for(RuleSet.objects.get(pk=world.escalation_id))
    live = RoutingDecision.objects.filter(item_id__in=sample, rule_set_id=world.intake_id, shadow=False)
    stored = {d.item_id: stored_key(d) for d in live}
    differing = 0
    for start in range(0, len(sample), 500):
        rows = item_rows(list(ReviewItem.objects.filter(pk__in=sample[start : start + 500]).order_by("pk")))
        views = [
            (pk, {**row, "author.prior_violations": float(v)})
            for pk, row in rows.items()
            for v in range(int(row["author.prior_violations"]) + 1)
        ]
        outcomes: dict[int, list[frozenset[Any]]] = {}
        for p in placements_preview(views, intake=intake, escalation=escalation):
            outcomes.setdefault(p.item_id, []).append(frozenset(placement_keys(p)))
        for pk, found in outcomes.items():
            check.history_dependent += len(set(found)) > 1
            if stored.get(pk) not in frozenset().union(*found):
                differing += 1
                if len(check.examples) < 5:
                    check.examples.append(
                        f"item {pk}: stored {stored.get(pk)}, in-process {sorted(set().union(*found))}"
                    )
    model = classifier_load(model_active())
    scores = dict(ClassifierScore.objects.filter(item_id__in=sample, backend="local").values_list("item_id", "scores"))
    texts = dict(ReviewItem.objects.filter(pk__in=sample).values_list("pk", "text"))
    score_differing = 0
    for start in range(0, len(sample), 500):
        chunk = sample[start : start + 500]
        predicted = model.predict([texts[pk] for pk in chunk])
        for i, pk in enumerate(chunk):
            want = {c: round(float(p[i]), 6) for c, p in predicted.items()}
            have = scores.get(pk, {})
            score_differing += set(have) != set(want) or any(abs(have[c] - v) > 2e-6 for c, v in want.items())
    check.counts["of the sample routed otherwise than in-process"] = differing
    check.counts["of the sample scored otherwise than in-process predict"] = score_differing
    connections.close_all()


def placement_keys(p: Any) -> set[tuple[str, str, int, tuple[str, ...]]]:
    """What a placement may store (rule, destination, priority, tags); an auto-action may have gone to people."""
    tags = tuple(sorted(set(p.tags)))
    if p.auto is not None:
        auto = f"auto:{p.auto.policy_slug}/{p.auto.enforcement_action_slug}"
        return {(p.matched, auto, 0, tags), (p.matched, f"queue:{p.queue.slug}", 0, tags)}
    return {(p.matched, f"queue:{p.queue.slug}", p.priority, tags)}


def stored_key(d: Any) -> tuple[str, str, int, tuple[str, ...]]:
    """The same of a stored live decision, the hold-back's reason taken off the rule name."""
    matched = d.matched.removeprefix("cap-reached:").removeprefix("policy-refuses-auto:")
    return (matched, d.destination, d.priority, tuple(sorted(d.tags)))


def references(world: World, texts: Sequence[str], batch: int, rows: int) -> tuple[float, float]:
    """Seconds of in-process ``predict`` over the run's texts, and of compiled ``decide`` over stored rows."""
    from queues.models import ReviewItem
    from routing.models import RuleSet
    from routing.rules.engine import program_for
    from routing.rules.features import item_rows
    from routing.scoring.registry import classifier_load, model_active

    model = classifier_load(model_active())
    model.predict(list(texts[:200]))
    predict, _ = benchlib.timed(
        lambda: [model.predict(list(texts[i : i + batch])) for i in range(0, len(texts), batch)]
    )
    program = program_for(RuleSet.objects.get(pk=world.intake_id))
    items = list(ReviewItem.objects.filter(source=SOURCE).order_by("pk")[:rows])
    views = [row for i in range(0, len(items), 1000) for row in item_rows(items[i : i + 1000]).values()]
    return predict, benchlib.timed(lambda: deque(map(program.decide, views), maxlen=0))[0]  # keeping no result


def main() -> int:
    parser = benchlib.parser(__doc__, "ops_bench_e2e")
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="items per HTTP call (one triage task each)")
    parser.add_argument("--concurrency", type=int, default=2, help="HTTP connections in flight")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--celery-concurrency", type=int, default=2, help="triage worker pool processes")
    parser.add_argument("--sample", type=int, default=5000, help="items re-routed and re-scored in-process to check")
    parser.add_argument("--target", type=float, default=2000, help="items/s triaged end to end to call it a pass")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--media-items", type=int, default=20_000, help="the flood with images (0: none)")
    parser.add_argument("--steady-items", type=int, default=5_000, help="posted at --steady-rate (0: none)")
    parser.add_argument("--steady-rate", type=float, default=200, help="items/s of the steady phase")
    args = parser.parse_args()
    if args.items < args.batch or args.batch < 1:
        raise SystemExit("--items must be at least one --batch")
    tmp = Path(tempfile.gettempdir())
    logs = {name: tmp / f"bench-e2e-{name}-{os.getpid()}.log" for name in ("gunicorn", "worker")}
    print(f"generating {args.items:,} items …", flush=True)
    prompts = [row["prompt"] for row in labelled_rows()]
    texts = texts_generate(prompts, count=args.items, seed=args.seed)
    run = f"e{datetime.now(UTC):%Y%m%d%H%M%S}"
    items = items_generate(texts, run=run, seed=args.seed)
    bodies = benchlib.batches(items, args.batch)
    images = ImageServer().__enter__()
    media_root = Path(tempfile.mkdtemp(prefix="bench-e2e-media-"))
    media_items = items_generate(
        texts_generate(prompts, count=args.media_items, seed=args.seed + 1), run=f"{run}m", seed=2, media=images
    )
    steady_items = items_generate(
        texts_generate(prompts, count=args.steady_items, seed=args.seed + 2), run=f"{run}s", seed=3, media=images
    )
    settings = {
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SCORING_DEFAULT_CHAIN": "local",
        "CONN_MAX_AGE": "600",
        # Benchmark-only: the fetcher may reach this script's image server, that address and port alone.
        "MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS": f"127.0.0.1:{images.port}",
        "MEDIA_STORAGE_ROOT": str(media_root),
    }
    try:
        with benchlib.scratch(args, celery=(BROKER_URL, CACHE_URL), files=list(logs.values()), **settings) as db:
            return run_phases(args, db, logs, texts, prompts, items, bodies, media_items, steady_items, images)
    finally:
        images.__exit__(None, None, None)
        shutil.rmtree(media_root, ignore_errors=True)


def run_phases(
    args: Any,
    db: Any,
    logs: dict[str, Path],
    texts: Sequence[str],
    prompts: Sequence[str],
    items: list[dict[str, Any]],
    bodies: list[bytes],
    media_items: list[dict[str, Any]],
    steady_items: list[dict[str, Any]],
    images: ImageServer,
) -> int:
    conninfo, dbname, env = db.conninfo, db.dbname, db.env
    print("training the local model …", flush=True)
    label, train_seconds, _ = model_train(env, actor="bench/e2e.py")
    benchlib.django_setup(env, refuse_eager="triage would run inside gunicorn, not in the workers")

    from queues.models import ReviewItem

    items_table = benchlib.table(ReviewItem)
    world = world_create()
    bank = bank_import()
    print(f"model {label} promoted; rule sets published ({world.rules} intake rules); starting …", flush=True)
    web = Gunicorn(env, logs["gunicorn"], workers=args.gunicorn_workers)
    worker = Worker(
        env, logs["worker"], name="bench-e2e", pool="prefork", concurrency=args.celery_concurrency, prefetch=1
    )
    with running(web, worker), psycopg.connect(conninfo, autocommit=True) as conn:
        url = f"{web.base}/api/v1/items"
        # Small batches until every gunicorn worker has answered and every pool process has loaded the model.
        t0 = time.perf_counter()
        warm_texts = texts_generate(prompts, count=160 * max(args.celery_concurrency, 1), seed=99)
        warm_items = items_generate(warm_texts, run=f"w{datetime.now(UTC):%H%M%S}", seed=99, media=images)
        warm_concurrency = max(args.concurrency, args.celery_concurrency)
        benchlib.post_all(
            url, world.keys[WARMUP_SOURCE], benchlib.batches(warm_items, 40), concurrency=warm_concurrency
        ).check("warm-up")
        wait_triaged(conn, items_table, len(warm_items), [web, worker])
        conn.execute("ANALYZE")  # as autovacuum would have in a live database
        print(f"warm in {time.perf_counter() - t0:.1f} s; posting {len(bodies):,} batches …", flush=True)
        pg = PostgresBackends(dbname, exclude={conn.info.backend_pid})
        meter = benchlib.CpuMeter(
            {
                "gunicorn (master + workers)": lambda: benchlib.tree_cpu(web.pid or 0),
                "celery (master + pool)": lambda: benchlib.tree_cpu(worker.pid or 0),
                "PostgreSQL (this database's backends + WAL/checkpoint writers)": pg.total,
                "Redis (whole server, shared)": lambda: sum(
                    map(benchlib.tree_cpu, benchlib.pids_named("redis-server"))
                ),
                "bench client (send + poll)": lambda: time.process_time() + benchlib.tree_cpu(conn.info.backend_pid),
            }
        )
        stop = threading.Event()
        watcher = threading.Thread(target=pg.watch, args=(conninfo, stop), daemon=True)
        pg.sample(conn, at_start=True)
        watcher.start()
        before = meter.snapshot()
        load = benchlib.post_all(url, world.keys[SOURCE], bodies, concurrency=args.concurrency)
        pg.sample(conn)
        load.check("the load")
        print(f"posted in {load.elapsed:.1f} s; waiting for triage …", flush=True)
        wait_triaged(conn, items_table, args.items, [web, worker], poll=0.1)
        pg.sample(conn)
        after = meter.snapshot()
        stop.set()
        watcher.join()
        if media_items:
            print(f"the media flood: {len(media_items):,} items …", flush=True)
            media_bodies = benchlib.batches(media_items, args.batch)
            benchlib.post_all(url, world.keys[MEDIA_SOURCE], media_bodies, concurrency=args.concurrency).check(
                "the media flood"
            )
            wait_triaged(conn, items_table, len(media_items), [web, worker], poll=0.1)
        if steady_items:
            print(f"the steady phase: {len(steady_items):,} items at {args.steady_rate:,.0f}/s …", flush=True)
            steady_bodies = benchlib.batches(steady_items, 100)
            post_paced(url, world.keys[STEADY_SOURCE], steady_bodies, per_body=100, rate=args.steady_rate)
            wait_triaged(conn, items_table, len(steady_items), [web, worker], poll=0.1)
        redis_version = redis.Redis.from_url(BROKER_URL).info("server").get("redis_version", "?")
    print("figures, checks, then the references …", flush=True)
    first = ReviewItem.objects.filter(source=SOURCE).order_by("received_at").values_list("received_at").first()
    last = ReviewItem.objects.filter(source=SOURCE).order_by("-triaged_at").values_list("triaged_at").first()
    span = (last[0] - first[0]).total_seconds() if first and last else float("nan")
    to_triaged = "extract(epoch FROM i.triaged_at - i.received_at)"
    lat = latencies(items_table, to_triaged, SOURCE)
    check = check_database(world, args.items, SOURCE)
    check_sample(check, world, args.sample, args.seed)
    phases = {
        source: (phase_figures(items_table, source, len(generated)), generated)
        for source, generated in ((MEDIA_SOURCE, media_items), (STEADY_SOURCE, steady_items))
        if generated
    }
    for source, (phase, generated) in phases.items():
        urls = [u for item in generated for u in item.get("media_urls", [])]
        dead = sum(DEAD_HOST in u for u in urls)
        check.counts[f"{source} items still received"] = phase.received
        check.counts[f"{source} images not stored"] = abs(len(urls) - dead - phase.media.get("stored", 0))
        check.counts[f"{source} dead links not refused as dns_failed"] = abs(
            dead - phase.media.get("refused (dns_failed)", 0)
        )
    print("reference: COPY of the same rows …", flush=True)
    copy_seconds = copy_rows(
        conninfo, items_table, [benchlib.intake_row(item, SOURCE, datetime.now(UTC)) for item in items]
    )
    print("reference: in-process predict and decide …", flush=True)
    decide_rows = min(args.items, 20_000)
    predict_seconds, decide_seconds = references(world, texts, args.batch, decide_rows)

    cpu = benchlib.CpuMeter.usage(before, after)
    triaged_rate = args.items / span
    verdict = "met" if triaged_rate >= args.target else "MISSED"
    server = sum(cpu.groups[k] for k in list(cpu.groups)[:3])
    per_k = 1e6 / args.items
    gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    r = benchlib.Report("End-to-end load benchmark")
    r.intro = (
        f"{args.items:,} text-only items posted over HTTP (batches of {args.batch}, {args.concurrency} connections) to "
        f"gunicorn ({args.gunicorn_workers} sync workers); triage (local-model scoring + a {world.rules}-rule "
        f"intake set and a {len(ESCALATION_RULES)}-rule escalation set) by `celery worker -Q triage "
        f"--pool prefork --concurrency {args.celery_concurrency} --prefetch-multiplier 1` on "
        "Redis; PostgreSQL. "
        f"Target {args.target:,.0f} items/s triaged end to end (the text-only flood). Then the phases with "
        "images (module docstring): fetched from this script's own HTTP server, allowed by the benchmark-only "
        "MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS."
    )
    r.stamp(conninfo, f"{gib:.0f} GiB", f"Redis {redis_version}")
    r.add("model", f"`{label}` trained on {LABELLED_SET.name} in {train_seconds:.0f} s, promoted")
    r.add(
        "**intake items/s (accepted)**",
        f"**{args.items / load.elapsed:,.0f}** ({load.elapsed:.1f} s for {args.items:,} items, "
        f"{len(bodies):,} calls, all 201)",
    )
    r.add(
        "**triaged items/s end to end (text only)**",
        f"**{triaged_rate:,.0f}** (target {args.target:,.0f}: **{verdict}**): first item accepted (its "
        f"received_at) to the last triaged_at, {span:.1f} s",
    )
    r.add(
        "**latency accepted → queued, p50 / p99 / max**",
        f"**{lat[0]:.2f} / {lat[1]:.2f}** / {lat[2]:.2f} s (received_at → triaged_at, all {lat[3]:,} items, "
        "queued or auto-actioned; in a flood mostly the backlog's wait)",
    )
    for source, (phase, generated) in phases.items():
        with_media = sum(bool(item.get("media_urls")) for item in generated)
        how = (
            f"a flood of {phase.items:,} (batches of {args.batch})"
            if source == MEDIA_SOURCE
            else f"{phase.items:,} posted at a steady {args.steady_rate:,.0f}/s (batches of 100)"
        )
        media = ", ".join(f"{what} {n:,}" for what, n in sorted(phase.media.items()))
        lat_m = phase.latency
        r.add(
            f"**with images: {'flood' if source == MEDIA_SOURCE else 'steady'}**",
            f"**{phase.rate():,.0f} items/s** triaged end to end over {phase.span:.1f} s; accepted → queued "
            f"p50 / p99 / max **{lat_m[0]:.2f} / {lat_m[1]:.2f}** / {lat_m[2]:.2f} s; {how}, {with_media:,} with an "
            f"image (640x480 JPEG from this script's server; one in ten on {DEAD_HOST}, which does not resolve "
            f"here); media: {media}",
        )
    r.add("hash bank", f"{bank:,} PDQ hashes in one active bank (five of them the served pictures')")
    r.add("CPU over the text-only flood, in cores", cpu.line())
    gun, cel, pgs = (cpu.groups[k] * per_k for k in list(cpu.groups)[:3])
    r.add(
        "CPU per 1,000 items (text only)",
        f"gunicorn {gun:.0f} ms, celery {cel:.0f} ms, PostgreSQL {pgs:.0f} ms: {server * per_k:.0f} ms, so "
        f"2 cores allow at most {2 / max(server / args.items, 1e-9):,.0f} items/s",
    )
    r.add(
        "reference: COPY FROM STDIN of the same rows",
        f"{args.items / copy_seconds:,.0f} rows/s ({copy_seconds:.2f} s, one COPY into a fresh table LIKE "
        f"{items_table} INCLUDING ALL)",
    )
    r.add(
        "reference: in-process `LocalClassifier.predict`, same texts",
        f"{len(texts) / predict_seconds:,.0f} texts/s on one core ({predict_seconds:.1f} s, {args.batch} a call)",
    )
    r.add(
        "reference: in-process compiled intake rules `decide`",
        f"{decide_rows / max(decide_seconds, 1e-9):,.0f} rows/s on one core ({decide_rows:,} stored items' rows)",
    )
    r.add("check", check.describe())
    if cpu.others > 0.15:
        r.add("**the machine was not quiet**", f"other processes used {cpu.others:.2f} cores; figures pessimistic")
    for example in check.examples:
        r.add("differing example", example)
    return r.finish(RESULT, write=not args.no_write, ok=check.ok, failure=check.describe())


if __name__ == "__main__":
    sys.exit(main())
