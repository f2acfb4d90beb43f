"""End-to-end load: items posted over HTTP to gunicorn, triaged by real Celery workers on Redis, on PostgreSQL.

Self-contained: creates its own database, migrates it, trains and promotes the local model on the shared labeled
set, publishes a 50-rule intake set and an escalation set through the rule lifecycle (drafted, submitted, approved
by a second policy-staff member, activated), starts gunicorn and Celery workers, posts every item, waits until
every item is queued or auto-actioned, measures the same rows through raw COPY and the same texts through
in-process ``LocalClassifier.predict``, checks the result and cleans up.

    .venv/bin/python bench/e2e.py [--items 200000] [--batch 500] [--gunicorn-workers 2] [--celery-concurrency 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from benchlib import (
    DATASET,
    ITEMS_TABLE,
    ROOT,
    TICK,
    WORKING_BACKENDS,
    app_env,
    celery_worker,
    children,
    cpu_model,
    database_recreate,
    django_setup,
    gunicorn,
    machine_busy,
    manage,
    model_train,
    proc_stat,
    py_spy,
    redis_flush,
    scratch_database,
    scratch_release,
)
from intake import batches, copy_row, copy_rows
from scoring import dataset_prompts, texts_generate

RESULTS = ROOT / "bench" / "results" / "e2e.md"
BROKER_URL = "redis://127.0.0.1:6379/4"
CACHE_URL = "redis://127.0.0.1:6379/5"
SOURCE = "bench-e2e"
WARMUP_SOURCE = "bench-e2e-warmup"
PACED_SOURCE = "bench-e2e-paced"

# --- items --------------------------------------------------------------------------------------------

SURFACES = ["post", "post", "post", "comment", "comment", "comment", "dm", "profile", "listing", "story"]
COUNTRIES = ["US", "BR", "MX", "DE", "JP", "IN", "GB", "FR", "ES", "ID", "AT", "IT", "NL", "PL"]
REASONS = ["spam", "harassment", "hate_speech", "scam", "nudity", "violence", "impersonation", "self_harm"]
# The shared set's prompts are English; a few items say otherwise, as a multilingual platform's would.
LANGUAGES = ["en"] * 14 + ["pt-BR", "es", "de", "ja"]


def items_generate(texts: Sequence[str], *, run: str, seed: int) -> list[dict[str, Any]]:
    """Items as an integrating service posts them: texts cut from the labeled set's prompts, one in ten a user
    report (a few reported by many), one in ten with an image, metadata the rules read (followers, verified,
    account age, country). No ``received_at``: intake stamps the time it accepted the item."""
    rng = random.Random(seed)
    items = []
    for i, text in enumerate(texts):
        followers = int(rng.paretovariate(0.9) * 40)
        metadata: dict[str, Any] = {
            "country": rng.choice(COUNTRIES),
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
            "surface": rng.choice(SURFACES),
            "language": rng.choice(LANGUAGES),
            "metadata": metadata,
        }
        roll = rng.random()
        if roll < 0.1:
            item["kind"] = "user_report"
            many = rng.random() < 0.05
            item["report_reasons"] = [
                rng.choice(REASONS) for _ in range(rng.randint(5, 30) if many else rng.randint(1, 3))
            ]
        elif roll < 0.2:
            item["media_urls"] = [f"https://cdn.example.com/m/{run}/{i}.jpg"]
        items.append(item)
    return items


# --- profiles -------------------------------------------------------------------------------------


def profile_summary(path: Path, title: str, marker: str) -> str:
    """Inclusive share of the app's own functions and the hottest leaves, from a py-spy raw file."""
    if not path.exists():
        return f"### {title}\n\nno profile written\n"
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if marker not in stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaves[frames[-1]] += n
        for frame in set(frames):
            if re.search(r"\((routing|queues|ops_platform)/", frame):
                inclusive[frame] += n
    if not total:
        return f"### {title}\n\nno samples\n"
    lines = [f"### {title}", "", f"{total} CPU samples.", "", "| app function (inclusive) | share |", "|---|---:|"]
    lines += [f"| `{frame}` | {n / total:.1%} |" for frame, n in inclusive.most_common(25)]
    lines += ["", "| hottest functions (self) | share |", "|---|---:|"]
    lines += [f"| `{frame}` | {n / total:.1%} |" for frame, n in leaves.most_common(20)]
    return "\n".join(lines) + "\n"


# --- CPU accounting -------------------------------------------------------------------------------


def tree_cpu(pid: int, exclude: frozenset[int] = frozenset()) -> float:
    """CPU seconds of a process, its reaped children and its live descendants (but ``exclude``)."""
    stat = proc_stat(pid)
    own = sum(int(v) for v in stat[11:15]) / TICK if stat else 0.0
    return own + sum(tree_cpu(child, exclude) for child in children(pid) if child not in exclude)


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class PostgresBackends:
    """CPU of the PostgreSQL processes working for this run: the backends connected to the scratch database
    (sampled each second, since Celery's pool reconnects now and then) and the server's WAL writer,
    checkpointer and background writer (shared with anything else writing on this server). Other databases'
    backends on the same server (another benchmark) are not counted."""

    def __init__(self, dbname: str, exclude: set[int]) -> None:
        self.dbname, self.exclude = dbname, exclude
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.lock = threading.Lock()

    def sample(self, conn: psycopg.Connection[Any], *, at_start: bool = False) -> None:
        rows = conn.execute(WORKING_BACKENDS, [self.dbname]).fetchall()
        with self.lock:
            for (pid,) in rows:
                if pid in self.exclude:
                    continue
                cpu = tree_cpu(pid)
                if pid not in self.first:
                    self.first[pid] = cpu if at_start else 0.0
                self.last[pid] = max(cpu, self.last.get(pid, 0.0))

    def total(self) -> float:
        with self.lock:
            return sum(self.last[pid] - self.first[pid] for pid in self.last)


@dataclass
class CpuSnapshot:
    at: float
    gunicorn: float
    celery: float
    postgres: float
    redis: float
    bench: float
    machine_busy: float
    machine_total: float

    @classmethod
    def take(cls, *, gunicorn: int, celery: int, postgres: PostgresBackends, poll_backend: int) -> CpuSnapshot:
        busy, total = machine_busy()
        return cls(
            at=time.perf_counter(),
            gunicorn=tree_cpu(gunicorn),
            celery=tree_cpu(celery),
            postgres=postgres.total(),
            redis=sum(tree_cpu(p) for p in pids_named("redis-server")),
            bench=time.process_time() + tree_cpu(poll_backend),
            machine_busy=busy,
            machine_total=total,
        )


def cpu_line(before: CpuSnapshot, after: CpuSnapshot) -> tuple[str, float]:
    """CPU per process group over the window, in cores, and the cores everything else used."""
    wall = after.at - before.at
    groups = {
        "gunicorn (master + workers)": after.gunicorn - before.gunicorn,
        "celery (master + pool)": after.celery - before.celery,
        "PostgreSQL (this database's backends + WAL/checkpoint writers)": after.postgres - before.postgres,
        "Redis (whole server, shared)": after.redis - before.redis,
        "bench client (send + poll)": after.bench - before.bench,
    }
    busy = after.machine_busy - before.machine_busy
    others = max(0.0, busy - sum(groups.values()))
    share = busy / max(after.machine_total - before.machine_total, 1e-9)
    text = ", ".join(f"{label} {cpu / wall:.2f}" for label, cpu in groups.items())
    text += f", anything else {others / wall:.2f} (machine {share:.0%} busy)"
    return text, others / wall


# --- the world: model, rules, API client -------------------------------------------------------------


@dataclass
class World:
    intake_id: int
    escalation_id: int
    rules: int
    key: str
    warmup_key: str
    paced_key: str


ESCALATION_RULES = [
    # name, condition, action, queue slug, priority
    ("overdue-to-tier-2", 'overdue_minutes > 60 and queue in ["general", "hate-harassment"]', "escalate", "tier-2", 30),
    ("repeat-offender-priority", "author.prior_violations >= 5", "raise_priority", "", 10),
    ("mass-reported-priority", "report_count >= 20", "raise_priority", "", 20),
]


def world_create() -> World:
    """The demo world's policies and queues with bench/rules.py's 50-rule intake set, published as policy staff
    would (draft, submit, approval by a second person, activate), an escalation set the same way, API clients."""
    from django.contrib.auth.models import Group
    from rules import world_create as rules_world_create

    from ops_platform.core.models import Role
    from ops_platform.core.services import api_client_create
    from routing.models import RuleAction, RuleSetKind
    from routing.rules.lifecycle import (
        RuleData,
        rule_save,
        ruleset_activate,
        ruleset_approve,
        ruleset_draft_create,
        ruleset_submit,
    )

    world = rules_world_create()  # the 7-rule baseline active, the 50-rule draft written by bench.policy
    staff = Group.objects.get(name=str(Role.POLICY_STAFF))
    author = world.draft.created_by
    author.groups.add(staff)
    approver = type(author).objects.create_user(username="bench.approver")
    approver.groups.add(staff)
    ruleset_submit(actor=author, rule_set=world.draft, change_note="bench/e2e.py: the 50-rule set")
    ruleset_approve(actor=approver, rule_set=world.draft)
    intake = ruleset_activate(actor=author, rule_set=world.draft, reason="bench/e2e.py")

    escalation = ruleset_draft_create(actor=author, kind=RuleSetKind.ESCALATION, title="bench escalation")
    for name, condition, action, queue, priority in ESCALATION_RULES:
        data = RuleData(name, condition, RuleAction(action), queue_id=world.queues[queue].pk if queue else None,
                        priority=priority)  # fmt: skip
        rule_save(actor=author, rule_set=escalation, data=data)
    ruleset_submit(actor=author, rule_set=escalation, change_note="bench escalation")
    ruleset_approve(actor=approver, rule_set=escalation)
    escalation = ruleset_activate(actor=author, rule_set=escalation, reason="bench/e2e.py")

    keys = {}
    for source in (SOURCE, WARMUP_SOURCE, PACED_SOURCE):
        _, keys[source] = api_client_create(
            actor="bench", name=source, source=source, scopes=["items:write"], rate_limit_per_minute=10_000_000
        )
    return World(intake.pk, escalation.pk, intake.rules.count(), keys[SOURCE], keys[WARMUP_SOURCE], keys[PACED_SOURCE])


# --- the load -------------------------------------------------------------------------------------


@dataclass
class Posted:
    status: int
    sent: float  # perf_counter
    answered: float
    body: bytes


@dataclass
class Load:
    posted: list[Posted]
    started: float  # perf_counter of the first send
    elapsed: float


def post_all(
    *, url: str, key: str, bodies: list[bytes], concurrency: int, progress: Progress | None = None,
    sizes: Sequence[int] = (),
) -> Load:  # fmt: skip
    """Post every body, ``concurrency`` at a time, one connection per thread; each 201 adds its body's items
    (``sizes``) to ``progress.accepted``."""
    results: list[Posted | None] = [None] * len(bodies)
    order = itertools.count()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    start = threading.Barrier(concurrency + 1)

    def work() -> None:
        with httpx.Client(headers=headers, timeout=300) as client:
            start.wait()
            while (i := next(order)) < len(bodies):
                t0 = time.perf_counter()
                try:
                    response = client.post(url, content=bodies[i])
                    results[i] = Posted(response.status_code, t0, time.perf_counter(), response.content)
                    if progress is not None and response.status_code == 201:
                        with progress.lock:
                            progress.accepted += sizes[i]
                except httpx.HTTPError as exc:
                    results[i] = Posted(0, t0, time.perf_counter(), repr(exc).encode())

    threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return Load([r for r in results if r is not None], t0, time.perf_counter() - t0)


def post_paced(*, url: str, key: str, bodies: list[bytes], interval: float, threads: int = 4) -> Load:
    """Post body i at i * ``interval`` seconds after the start (a steady arrival rate), from a few connections
    so one slow answer does not hold up the next arrival."""
    results: list[Posted | None] = [None] * len(bodies)
    order = itertools.count()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    start = threading.Barrier(threads + 1)
    t0 = 0.0

    def work() -> None:
        with httpx.Client(headers=headers, timeout=300) as client:
            start.wait()
            while (i := next(order)) < len(bodies):
                time.sleep(max(0.0, t0 + i * interval - time.perf_counter()))
                sent = time.perf_counter()
                try:
                    response = client.post(url, content=bodies[i])
                    results[i] = Posted(response.status_code, sent, time.perf_counter(), response.content)
                except httpx.HTTPError as exc:
                    results[i] = Posted(0, sent, time.perf_counter(), repr(exc).encode())

    pool = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    t0 = time.perf_counter() + 0.2
    start.wait()
    for t in pool:
        t.join()
    return Load([r for r in results if r is not None], t0, time.perf_counter() - t0)


def wait_triaged(
    conn: psycopg.Connection[Any], source: str, expected: int, procs: Sequence[subprocess.Popen[bytes]], *,
    stall: float = 180, poll: float = 0.25,
) -> float:  # fmt: skip
    """Poll until every item of ``source`` is triaged (called once every call was answered 201, so all are stored,
    and once every earlier source's items were triaged); the perf_counter when that was seen.

    Each poll asks only whether any item in the scratch database is still 'received', one row off the
    un-triaged partial index; the backlog is counted every few seconds, to see progress. Counting the whole
    source each poll cost a third of a core at 200,000 items, and counting the un-triaged each 0.1 s an eighth
    (with ``source = …`` in the WHERE, the planner could also take the unique (source, external_id) index
    when its statistics predate the run, and read every item of the source)."""
    last, last_change, counted_at = -1, time.monotonic(), 0.0
    while True:
        now = time.perf_counter()
        if conn.execute(f"SELECT 1 FROM {ITEMS_TABLE} WHERE state = 'received' LIMIT 1").fetchone() is None:
            return now
        if time.monotonic() - counted_at >= 5:
            row = conn.execute(f"SELECT count(*) FROM {ITEMS_TABLE} WHERE state = 'received'").fetchone()
            done, counted_at = expected - (int(row[0]) if row else 0), time.monotonic()
            if done != last:
                last, last_change = done, time.monotonic()
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"a server process exited with {proc.returncode} during the run")
        if time.monotonic() - last_change > stall:
            raise SystemExit(f"no progress for {stall:.0f} s at {last:,} of {expected:,} {source} items triaged")
        time.sleep(poll)


@dataclass
class Progress:
    """The poll's view during the run: (seconds since the first send, items accepted, items triaged)."""

    samples: list[tuple[float, int, int]] = field(default_factory=list)
    accepted: int = 0  # items in calls answered 201 so far (post_all counts them)
    lock: threading.Lock = field(default_factory=threading.Lock)


def progress_watch(
    t0: float, stop_event: threading.Event, progress: Progress, pg: PostgresBackends, conninfo: str
) -> None:
    """Every 2 s: the backends at work, and how many accepted items are triaged. Those not are counted off the
    un-triaged partial index (every item of the database: the warm-up's are all triaged before the flood), and
    the accepted from the client's 201s: counting the source's stored items took 65 ms a poll at 60,000 items.
    While calls are in flight an item stored but not yet answered is counted as waiting and not as accepted,
    so the triaged count may lag by a call or two until the last 201."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        pg.exclude.add(conn.info.backend_pid)
        while not stop_event.is_set():
            pg.sample(conn)
            row = conn.execute(f"SELECT count(*) FROM {ITEMS_TABLE} WHERE state = 'received'").fetchone()
            waiting = int(row[0]) if row else 0
            with progress.lock:
                accepted = progress.accepted
            progress.samples.append((time.perf_counter() - t0, accepted, max(0, accepted - waiting)))
            stop_event.wait(2.0)


# --- after the run: figures and checks ----------------------------------------------------------------


def percentiles_sql(
    conn: psycopg.Connection[Any], expr: str, where: str = "", source: str = SOURCE
) -> tuple[float, float, float, int]:
    row = conn.execute(
        f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {expr}), percentile_cont(0.99) WITHIN GROUP "
        f"(ORDER BY {expr}), max({expr}), count(*) FROM {ITEMS_TABLE} i WHERE i.source = %s {where}",
        [source],
    ).fetchone()
    assert row is not None
    return float(row[0] or 0), float(row[1] or 0), float(row[2] or 0), int(row[3])


def accepted_latencies(
    conn: psycopg.Connection[Any], load: Load, wall_at_t0: datetime, batch: int
) -> tuple[float, float, float]:
    """p50, p99 and max seconds from the moment the client had the item's 201 to the item's triaged_at."""
    rows = conn.execute(f"SELECT external_id, triaged_at FROM {ITEMS_TABLE} WHERE source = %s", [SOURCE]).fetchall()
    answered = [wall_at_t0 + timedelta(seconds=p.answered - load.started) for p in load.posted]
    lags = sorted(
        (triaged - answered[int(external_id.rsplit("-", 1)[1]) // batch]).total_seconds()
        for external_id, triaged in rows
        if triaged is not None
    )
    if not lags:
        return 0.0, 0.0, 0.0
    return lags[len(lags) // 2], lags[min(len(lags) - 1, int(0.99 * len(lags)))], lags[-1]


@dataclass
class Check:
    items: int
    stored: int = 0
    untriaged: int = 0
    states: dict[str, int] = field(default_factory=dict)
    triage_events_wrong: int = 0  # items without exactly one queued/auto_actioned event
    queued_at_mismatch: int = 0  # queued items whose queued_at is not their 'queued' event's time
    live_decisions_wrong: int = 0  # items without exactly one live intake RoutingDecision
    local_scores_wrong: int = 0  # items without exactly one local score
    unscored: int = 0
    dead_letters: int = 0
    sample: int = 0
    sample_differing: int = 0  # sampled items routed otherwise than the program decides in-process
    sample_history_dependent: int = 0  # outcome depends on author history that changed during the run
    sample_score_differing: int = 0  # sampled scores not what in-process predict gives for the same text
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        wrong = (
            self.untriaged, self.triage_events_wrong, self.queued_at_mismatch, self.live_decisions_wrong,
            self.local_scores_wrong, self.unscored, self.dead_letters, self.sample_differing,
            self.sample_score_differing,
        )  # fmt: skip
        return self.stored == self.items and not any(wrong)

    def describe(self) -> str:
        states = ", ".join(f"{s} {n:,}" for s, n in sorted(self.states.items()))
        text = (
            f"{self.stored:,} of {self.items:,} items stored ({states}); {self.untriaged} still received; "
            f"{self.triage_events_wrong} without exactly one queued/auto_actioned event; {self.queued_at_mismatch} "
            f"queued_at differing from the event; {self.live_decisions_wrong} without exactly one live intake "
            f"routing decision; {self.local_scores_wrong} without exactly one local score; {self.unscored} "
            f"unscored; {self.dead_letters} dead letters"
        )
        if self.sample:
            text += (
                f"; sample of {self.sample:,} re-routed in-process: {self.sample_differing} differ "
                f"({self.sample_history_dependent} depend on author history, accepted if any history value seen in "
                f"the run gives the stored result), {self.sample_score_differing} scores differ from in-process predict"
            )
        return ("ok: " if self.ok else "WRONG: ") + text


def one(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] = ()) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def check_database(conn: psycopg.Connection[Any], world: World, items: int, source: str = SOURCE) -> Check:
    """Every item triaged exactly once, with its score and one live routing decision (SQL over all items)."""
    c = Check(items=items)
    c.states = dict(
        conn.execute(f"SELECT state, count(*) FROM {ITEMS_TABLE} WHERE source = %s GROUP BY state", [source]).fetchall()
    )
    c.stored = sum(c.states.values())
    c.untriaged = c.states.get("received", 0)
    c.triage_events_wrong = one(
        conn,
        f"SELECT count(*) FROM {ITEMS_TABLE} i LEFT JOIN (SELECT item_id, count(*) n FROM queues_itemevent "
        "WHERE event IN ('queued', 'auto_actioned') GROUP BY item_id) e ON e.item_id = i.id "
        "WHERE i.source = %s AND coalesce(e.n, 0) <> 1",
        [source],
    )
    c.queued_at_mismatch = one(
        conn,
        f"SELECT count(*) FROM {ITEMS_TABLE} i JOIN queues_itemevent e ON e.item_id = i.id AND e.event = 'queued' "
        "WHERE i.source = %s AND i.queued_at IS DISTINCT FROM e.at",
        [source],
    )
    c.live_decisions_wrong = one(
        conn,
        f"SELECT count(*) FROM {ITEMS_TABLE} i LEFT JOIN (SELECT item_id, count(*) n FROM routing_routingdecision "
        "WHERE NOT shadow AND rule_set_id = %s GROUP BY item_id) d ON d.item_id = i.id "
        "WHERE i.source = %s AND coalesce(d.n, 0) <> 1",
        [world.intake_id, source],
    )
    c.local_scores_wrong = one(
        conn,
        f"SELECT count(*) FROM {ITEMS_TABLE} i LEFT JOIN (SELECT item_id, count(*) n FROM routing_classifierscore "
        "WHERE backend = 'local' GROUP BY item_id) s ON s.item_id = i.id WHERE i.source = %s AND coalesce(s.n, 0) <> 1",
        [source],
    )
    c.unscored = one(
        conn,
        f"SELECT count(*) FROM routing_classifierscore s JOIN {ITEMS_TABLE} i ON i.id = s.item_id "
        "WHERE i.source = %s AND s.backend = 'unscored'",
        [source],
    )
    c.dead_letters = one(conn, "SELECT count(*) FROM routing_deadletter")
    return c


def check_sample(check: Check, world: World, size: int, seed: int) -> None:
    """Route a random sample again in-process, from the stored items and scores, with the active programs, and
    compare with what triage stored: matched rule, destination, priority and tags. Also re-score the sample's
    texts with in-process predict and compare with the stored scores.

    The one input that moved during the run is author history (auto-actions of earlier items count as prior
    violations): an item whose outcome depends on it is accepted if some value between none and today's gives
    what triage stored."""
    from django.db import connections

    from queues.models import ReviewItem
    from routing.models import ClassifierScore, RoutingDecision, RuleSet
    from routing.rules.apply import _escalate, _Queues, place
    from routing.rules.engine import program_for
    from routing.rules.features import item_rows
    from routing.scoring.registry import classifier_load, model_active

    ids = list(ReviewItem.objects.filter(source=SOURCE).values_list("pk", flat=True))
    sample = sorted(random.Random(seed).sample(ids, min(size, len(ids))))
    check.sample = len(sample)
    intake = program_for(RuleSet.objects.get(pk=world.intake_id))
    escalation = program_for(RuleSet.objects.get(pk=world.escalation_id))
    queues = _Queues()
    decisions = {
        d.item_id: d
        for d in RoutingDecision.objects.filter(item_id__in=sample, rule_set_id=world.intake_id, shadow=False)
    }
    for start in range(0, len(sample), 500):
        items = list(ReviewItem.objects.filter(pk__in=sample[start : start + 500]).order_by("pk"))
        rows = item_rows(items)
        for item in items:
            row = rows[item.pk]
            stored = decisions.get(item.pk)
            if stored is None:
                check.sample_differing += 1
                continue
            seen = int(row["author.prior_violations"])
            results: set[tuple[str, str, int, tuple[str, ...]]] = set()
            outcomes = set()
            for violations in range(seen + 1):
                view = {**row, "author.prior_violations": float(violations)}
                p = place(intake.decide(view), intake, queues, item.pk)
                _escalate(p, escalation, view, queues)
                keys = placement_keys(p)
                results |= keys
                outcomes.add(frozenset(keys))
            check.sample_history_dependent += len(outcomes) > 1
            got = stored_key(stored)
            if got not in results:
                check.sample_differing += 1
                if len(check.examples) < 5:
                    check.examples.append(f"item {item.pk}: stored {got}, in-process {sorted(results)}")

    model = classifier_load(model_active())
    scores = dict(ClassifierScore.objects.filter(item_id__in=sample, backend="local").values_list("item_id", "scores"))
    texts = dict(ReviewItem.objects.filter(pk__in=sample).values_list("pk", "text"))
    for start in range(0, len(sample), 500):
        chunk = sample[start : start + 500]
        predicted = model.predict([texts[pk] for pk in chunk])
        for i, pk in enumerate(chunk):
            want = {c: round(float(p[i]), 6) for c, p in predicted.items()}
            have = scores.get(pk, {})
            if set(have) != set(want) or any(abs(have[c] - v) > 2e-6 for c, v in want.items()):
                check.sample_score_differing += 1
    connections.close_all()


def placement_keys(p: Any) -> set[tuple[str, str, int, tuple[str, ...]]]:
    """What a placement may store: the deciding rule, where it goes, at what priority, with which tags. An
    auto-action may also have been held back (its daily cap reached) and gone to people in its fallback queue."""
    tags = tuple(sorted(set(p.tags)))
    if p.auto is not None:
        auto = f"auto:{p.auto.policy_slug}/{p.auto.enforcement_action_slug}"
        return {(p.matched, auto, 0, tags), (p.matched, f"queue:{p.queue.slug}", 0, tags)}
    return {(p.matched, f"queue:{p.queue.slug}", p.priority, tags)}


def stored_key(d: Any) -> tuple[str, str, int, tuple[str, ...]]:
    """The same of a stored live decision, the hold-back's reason taken off the rule name."""
    matched = d.matched
    for prefix in ("cap-reached:", "policy-refuses-auto:"):
        matched = matched.removeprefix(prefix)
    return (matched, d.destination, d.priority, tuple(sorted(d.tags)))


# --- in-process references ------------------------------------------------------------------------


@dataclass
class References:
    copy_seconds: float = 0.0
    predict_seconds: float = 0.0
    predict_texts: int = 0
    decide_seconds: float = 0.0
    decide_rows: int = 0


def predict_reference(texts: Sequence[str], batch: int) -> tuple[float, int]:
    """In-process ``LocalClassifier.predict`` over the run's texts in batches of ``batch``: the model's ceiling."""
    from routing.scoring.registry import classifier_load, model_active

    model = classifier_load(model_active())
    model.predict(list(texts[:200]))
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        model.predict(list(texts[i : i + batch]))
    return time.perf_counter() - t0, len(texts)


def decide_reference(world: World, rows_count: int) -> tuple[float, int]:
    """The compiled intake program's ``decide`` over stored items' rows, in-process: the rules' ceiling."""
    from queues.models import ReviewItem
    from routing.models import RuleSet
    from routing.rules.engine import program_for
    from routing.rules.features import item_rows

    program = program_for(RuleSet.objects.get(pk=world.intake_id))
    items = list(ReviewItem.objects.filter(source=SOURCE).order_by("pk")[:rows_count])
    rows = []
    for i in range(0, len(items), 1000):
        rows += list(item_rows(items[i : i + 1000]).values())
    t0 = time.perf_counter()
    for row in rows:
        program.decide(row)
    return time.perf_counter() - t0, len(rows)


# --- the run --------------------------------------------------------------------------------------


def machine_description(conn: psycopg.Connection[Any]) -> str:
    import platform

    pg = conn.execute("SHOW server_version").fetchone()
    info = redis.Redis.from_url(BROKER_URL).info("server")
    mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    gib = int(mem.split()[1]) / 1024 / 1024
    return (
        f"{len(os.sched_getaffinity(0))} CPUs ({cpu_model()}), {gib:.0f} GiB, PostgreSQL {pg[0] if pg else '?'}, "
        f"Redis {info.get('redis_version', '?')}, Python {platform.python_version()}"
    )


def warm_up(url: str, key: str, conn: psycopg.Connection[Any], procs: Sequence[subprocess.Popen[bytes]],
            concurrency: int, celery_concurrency: int) -> float:  # fmt: skip
    """Small batches until every gunicorn worker has answered and every pool process has loaded the model."""
    prompts = dataset_prompts(DATASET)
    texts = texts_generate(prompts, count=40 * max(celery_concurrency, 1) * 4, seed=99)
    items = items_generate(texts, run=f"w{datetime.now(UTC):%H%M%S}", seed=99)
    bodies = batches(items, 40)
    t0 = time.perf_counter()
    warm = post_all(url=url, key=key, bodies=bodies, concurrency=max(concurrency, celery_concurrency))
    bad = [p for p in warm.posted if p.status != 201]
    if bad:
        raise SystemExit(f"warm-up failed: {bad[0].status} {bad[0].body[:500]!r}")
    wait_triaged(conn, WARMUP_SOURCE, len(items), procs)
    return time.perf_counter() - t0


def report_render(args: argparse.Namespace, r: dict[str, Any]) -> str:
    lines = [
        "## End-to-end load benchmark",
        "",
        f"{args.items:,} items posted over HTTP (batches of {args.batch}, {args.concurrency} connections) to gunicorn "
        f"({args.gunicorn_workers} sync workers); triage (local-model scoring + a {r['rules']}-rule intake set and "
        f"a {len(ESCALATION_RULES)}-rule escalation set) by `celery worker -Q triage --pool {args.pool} "
        f"--concurrency {args.celery_concurrency} --prefetch-multiplier {args.prefetch}` on Redis; PostgreSQL. "
        f"Target {args.target:,.0f} items/s triaged end to end.",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {label} | {value} |" for label, value in r["rows"]]
    return "\n".join(lines) + "\n" + r.get("extra", "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="items per HTTP call (one triage task each)")
    parser.add_argument("--concurrency", type=int, default=2, help="HTTP connections in flight")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--celery-concurrency", type=int, default=2, help="triage worker pool processes")
    parser.add_argument("--prefetch", type=int, default=1, help="celery --prefetch-multiplier")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo"])
    parser.add_argument("--paced-seconds", type=float, default=20, help="then a steady load this long (0: none)")
    parser.add_argument("--paced-share", type=float, default=0.5, help="its rate, as a share of the end-to-end rate")
    parser.add_argument("--paced-batch", type=int, default=100, help="items per call in the steady load")
    parser.add_argument("--sample", type=int, default=5000, help="items re-routed and re-scored in-process to check")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/ops_bench_e2e")
    parser.add_argument("--target", type=float, default=2000, help="items/s triaged end to end to call it a pass")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="sample gunicorn and celery with py-spy (slows them)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs afterwards")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    if args.items < args.batch or args.batch < 1:
        raise SystemExit("--items must be at least one --batch")
    if args.pool == "solo":
        args.celery_concurrency = 1
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.gettempdir())
    gunicorn_log, worker_log = (
        tmp / f"bench-e2e-gunicorn-{os.getpid()}.log",
        tmp / f"bench-e2e-worker-{os.getpid()}.log",
    )
    profiles = {
        "gunicorn": tmp / f"bench-e2e-gunicorn-{os.getpid()}.txt",
        "celery": tmp / f"bench-e2e-celery-{os.getpid()}.txt",
    }

    conninfo, dbname, admin = scratch_database(args.database_url, prefix="ops_bench_e2e")
    env = app_env(
        args.database_url,
        CELERY_BROKER_URL=BROKER_URL,
        CELERY_TASK_ALWAYS_EAGER="false",
        CACHE_URL=CACHE_URL,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SCORING_DEFAULT_CHAIN="local",
        CONN_MAX_AGE="600",
        # The app from this checkout, in every process this bench starts (a venv may point elsewhere).
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )

    print(f"generating {args.items:,} items …", flush=True)
    prompts = dataset_prompts(DATASET)
    texts = texts_generate(prompts, count=args.items, seed=args.seed)
    run = f"e{datetime.now(UTC):%Y%m%d%H%M%S}"
    items = items_generate(texts, run=run, seed=args.seed)
    bodies = batches(items, args.batch)
    print(f"recreating database {dbname}, migrating, training the local model …", flush=True)
    database_recreate(admin, dbname)
    redis_flush(BROKER_URL, CACHE_URL)
    load_before = loadavg()
    try:
        manage(env, "migrate", "--noinput")
        label, train_seconds = model_train(env, DATASET, actor="bench/e2e.py")
        django_setup(env, refuse_eager="triage would run inside gunicorn, not in the workers")
        world = world_create()
        print(
            f"model {label} promoted; rule sets published ({world.rules} intake rules); starting servers …", flush=True
        )
        with ExitStack() as stack, psycopg.connect(conninfo, autocommit=True) as conn:
            base, web = stack.enter_context(gunicorn(env, workers=args.gunicorn_workers, log=gunicorn_log))
            worker = stack.enter_context(
                celery_worker(env, log=worker_log, name="bench-e2e", pool=args.pool,
                              concurrency=args.celery_concurrency, prefetch=args.prefetch, timeout=90)
            )  # fmt: skip
            url = f"{base}/api/v1/items"
            warm = warm_up(url, world.warmup_key, conn, [web, worker], args.concurrency, args.celery_concurrency)
            conn.execute("ANALYZE")  # as autovacuum would have in a live database
            print(f"warm in {warm:.1f} s; posting {len(bodies):,} batches …", flush=True)
            pg = PostgresBackends(dbname, exclude={conn.info.backend_pid})
            if args.profile:
                for pid, profile in ((web.pid, profiles["gunicorn"]), (worker.pid, profiles["celery"])):
                    stack.enter_context(py_spy(pid, profile, "--subprocesses", rate=100, required=False))
            stop_event, progress = threading.Event(), Progress()
            wall_at_t0 = datetime.now(UTC)
            t_ref = time.perf_counter()
            watcher = threading.Thread(
                target=progress_watch, args=(t_ref, stop_event, progress, pg, conninfo), daemon=True
            )
            pg.sample(conn, at_start=True)
            watcher.start()
            before = CpuSnapshot.take(gunicorn=web.pid, celery=worker.pid, postgres=pg,
                                      poll_backend=conn.info.backend_pid)  # fmt: skip
            sizes = [len(items[i : i + args.batch]) for i in range(0, len(items), args.batch)]
            load = post_all(url=url, key=world.key, bodies=bodies, concurrency=args.concurrency, progress=progress,
                            sizes=sizes)  # fmt: skip
            pg.sample(conn)
            posted_cpu = CpuSnapshot.take(gunicorn=web.pid, celery=worker.pid, postgres=pg,
                                          poll_backend=conn.info.backend_pid)  # fmt: skip
            failures = [p for p in load.posted if p.status != 201]
            if failures:
                raise SystemExit(f"{len(failures)} calls failed: {failures[0].status} {failures[0].body[:500]!r}")
            print(f"posted in {load.elapsed:.1f} s; waiting for triage …", flush=True)
            done_at = wait_triaged(conn, SOURCE, args.items, [web, worker], poll=0.1)
            pg.sample(conn)
            after = CpuSnapshot.take(gunicorn=web.pid, celery=worker.pid, postgres=pg,
                                     poll_backend=conn.info.backend_pid)  # fmt: skip
            stop_event.set()
            watcher.join()
            load_during = loadavg()
            # Offset from the bench's clock to the wall clock the app stamps (same machine).
            wall_at_t0 = wall_at_t0 + timedelta(seconds=load.started - t_ref)
            paced = None
            if args.paced_seconds > 0:
                rate = args.paced_share * args.items / (done_at - load.started)
                count = max(args.paced_batch, int(rate * args.paced_seconds) // args.paced_batch * args.paced_batch)
                print(f"paced: {count:,} items at {rate:,.0f} items/s in calls of {args.paced_batch} …", flush=True)
                paced_texts = texts_generate(prompts, count=count, seed=args.seed + 7)
                paced_items = items_generate(paced_texts, run=f"p{datetime.now(UTC):%H%M%S}", seed=args.seed + 7)
                paced_bodies = batches(paced_items, args.paced_batch)
                paced_load = post_paced(url=url, key=world.paced_key, bodies=paced_bodies,
                                        interval=args.paced_batch / rate)  # fmt: skip
                bad = [r for r in paced_load.posted if r.status != 201]
                if bad:
                    raise SystemExit(f"{len(bad)} paced calls failed: {bad[0].status} {bad[0].body[:500]!r}")
                wait_triaged(conn, PACED_SOURCE, count, [web, worker], poll=0.1)
                paced = (rate, count, paced_load.elapsed)
        extra = ""
        if args.profile:
            extra += "\n" + profile_summary(
                profiles["celery"], "Where the triage workers' CPU goes (py-spy)", "trace_task ("
            )
            extra += "\n" + profile_summary(profiles["gunicorn"], "Where the gunicorn workers' CPU goes (py-spy)",
                                            "handle_request (")  # fmt: skip

        print("figures, checks, then the references …", flush=True)
        with psycopg.connect(conninfo) as conn:
            ends = conn.execute(
                f"SELECT min(received_at), max(triaged_at) FROM {ITEMS_TABLE} WHERE source = %s", [SOURCE]
            ).fetchone()
            assert ends is not None
            first, last_triaged = ends
            span = (last_triaged - first).total_seconds()
            lat = percentiles_sql(conn, "extract(epoch FROM i.triaged_at - i.received_at)")
            lat_queued = percentiles_sql(
                conn, "extract(epoch FROM i.queued_at - i.received_at)", "AND i.state = 'queued'"
            )
            lat_accepted = accepted_latencies(conn, load, wall_at_t0, args.batch)
            check = check_database(conn, world, args.items)
            if paced:
                paced_check = check_database(conn, world, paced[1], PACED_SOURCE)
                paced_lat = percentiles_sql(
                    conn, "extract(epoch FROM i.triaged_at - i.received_at)", source=PACED_SOURCE
                )
            machine = machine_description(conn)
            destinations = conn.execute(
                "SELECT d.destination, count(*) FROM routing_routingdecision d "
                "JOIN queues_reviewitem i ON i.id = d.item_id WHERE i.source = %s "
                "AND NOT d.shadow AND d.rule_set_id = %s "
                "GROUP BY 1 ORDER BY 2 DESC",
                [SOURCE, world.intake_id],
            ).fetchall()
            escalated = one(
                conn,
                "SELECT count(*) FROM routing_routingdecision d JOIN queues_reviewitem i ON i.id = d.item_id "
                "WHERE i.source = %s AND d.rule_set_id = %s",
                [SOURCE, world.escalation_id],
            )
            tasks = len(re.findall(r"items_triage_task\[[^\]]+\] succeeded", worker_log.read_text(errors="replace")))
        check_sample(check, world, args.sample, args.seed)
        refs = References()
        print("reference: COPY of the same rows …", flush=True)
        now = datetime.now(UTC)
        refs.copy_seconds = copy_rows(conninfo, [copy_row(item, now) for item in items])
        print("reference: in-process predict on the same texts …", flush=True)
        refs.predict_seconds, refs.predict_texts = predict_reference(texts, args.batch)
        refs.decide_seconds, refs.decide_rows = decide_reference(world, min(args.items, 20_000))

        intake_rate = args.items / load.elapsed
        triaged_rate = args.items / span
        wall_rate = args.items / (done_at - load.started)
        verdict = "met" if triaged_rate >= args.target else "MISSED"
        cpu_all, others = cpu_line(before, after)
        cpu_post, _ = cpu_line(before, posted_cpu)
        cpu_tail, _ = cpu_line(posted_cpu, after)
        gun = after.gunicorn - before.gunicorn
        cel = after.celery - before.celery
        pg = after.postgres - before.postgres
        per_k = 1e6 / args.items
        halfway = next((t for t, _, done in progress.samples if done >= args.items // 2), 0.0)
        dest_text = ", ".join(f"{d} {n:,}" for d, n in destinations[:12])
        if len(destinations) > 12:
            dest_text += f", {len(destinations) - 12} more destinations {sum(n for _, n in destinations[12:]):,}"
        rows = [
            ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
            ("machine", machine),
            ("load average (1/5/15 min) before / at the end", f"{load_before} / {load_during}"),
            ("model", f"`{label}` trained on {DATASET.name} in {train_seconds:.0f} s, promoted"),
            ("**intake items/s (accepted)**", f"**{intake_rate:,.0f}** ({load.elapsed:.1f} s for {args.items:,} items, "
             f"{len(bodies):,} calls, all 201)"),
            ("**triaged items/s end to end**", f"**{triaged_rate:,.0f}** (target {args.target:,.0f}: **{verdict}**): "
             f"first item accepted (its received_at) to the last triaged_at, {span:.1f} s"),
            ("triaged items/s, client's view", f"{wall_rate:,.0f}: first send to the poll seeing no item left "
             f"'received' ({done_at - load.started:.1f} s); half the items triaged after {halfway:.1f} s"),
            ("**latency accepted → queued, p50 / p99 / max**",
             f"**{lat[0]:.2f} / {lat[1]:.2f}** / {lat[2]:.2f} s (received_at → triaged_at, all {lat[3]:,} items, "
             "queued or auto-actioned)"),
            ("latency for queued items only (→ queued_at = the 'queued' event's at)",
             f"{lat_queued[0]:.2f} / {lat_queued[1]:.2f} / {lat_queued[2]:.2f} s over {lat_queued[3]:,} items"),
            ("latency from the client holding the 201 → triaged_at",
             f"{lat_accepted[0]:.2f} / {lat_accepted[1]:.2f} / {lat_accepted[2]:.2f} s"),
            *(
                [(f"**latency at a steady {paced[0]:,.0f} items/s**, p50 / p99 / max",
                  f"**{paced_lat[0]:.2f} / {paced_lat[1]:.2f}** / {paced_lat[2]:.2f} s (received_at → triaged_at): "
                  f"{paced[1]:,} more items after the flood, in calls of {args.paced_batch} at "
                  f"{args.paced_share:.0%} of the end-to-end rate for {paced[2]:.0f} s, no backlog")]
                if paced else []
            ),
            ("what the stamps mean", "received_at: intake's clock when the call began; triaged_at / queued_at: "
             "routing's clock when the batch's routing began (its commit follows within the batch's routing time); "
             "the backlog wait dominates both"),
            ("triage tasks", f"{tasks:,} `items_triage_task` runs (the warm-up's included), "
             f"{args.batch} items each: intake sends one per call after commit (TRIAGE_BATCH_SIZE)"),
            ("outcome", ", ".join(f"{s} {n:,}" for s, n in sorted(check.states.items()))
             + f"; {escalated:,} escalation-set decisions at triage"),
            ("destinations", dest_text),
            ("CPU over the whole run, in cores", cpu_all),
            ("CPU while posting, in cores", cpu_post),
            ("CPU after the last 201 (triage backlog), in cores", cpu_tail),
            ("CPU per 1,000 items", f"gunicorn {gun * per_k:.0f} ms, celery {cel * per_k:.0f} ms, PostgreSQL "
             f"{pg * per_k:.0f} ms: {(gun + cel + pg) * per_k:.0f} ms, so 2 cores allow at most "
             f"{2 / max((gun + cel + pg) / args.items, 1e-9):,.0f} items/s"),
            ("reference: COPY FROM STDIN of the same rows", f"{args.items / refs.copy_seconds:,.0f} rows/s "
             f"({refs.copy_seconds:.2f} s, one COPY into a fresh table LIKE {ITEMS_TABLE} INCLUDING ALL)"),
            ("reference: in-process `LocalClassifier.predict`, same texts",
             f"{refs.predict_texts / refs.predict_seconds:,.0f} texts/s on one core ({refs.predict_seconds:.1f} s, "
             f"{args.batch} a call)"),
            ("reference: in-process compiled intake rules `decide`",
             f"{refs.decide_rows / max(refs.decide_seconds, 1e-9):,.0f} rows/s on one core ({refs.decide_rows:,} "
             "stored items' rows)"),
            ("check", check.describe()),
            *([("check, paced items", paced_check.describe())] if paced else []),
        ]  # fmt: skip
        if others > 0.15:
            rows.append(("**the machine was not quiet**", f"other processes used {others:.2f} cores during the run; "
                         "the figures are pessimistic"))  # fmt: skip
        for example in check.examples:
            rows.append(("differing example", example))
        text = report_render(args, {"rules": world.rules, "rows": rows, "extra": extra})
        print("\n" + text)
        if not args.no_write:
            RESULTS.write_text(text)
            print(f"written to {RESULTS.relative_to(ROOT)}")
        ok = check.ok and (paced_check.ok if paced else True)
        if not ok:
            print("FAILED: " + check.describe() + ("; paced: " + paced_check.describe() if paced else ""))
        return 0 if ok else 1
    finally:
        redis_flush(BROKER_URL, CACHE_URL)
        scratch_release(
            admin, dbname, keep=args.keep, kept=f", logs {gunicorn_log} {worker_log}", files=[gunicorn_log, worker_log]
        )


if __name__ == "__main__":
    sys.exit(main())
