"""Claim latency: ``item_claim_next`` for 50 concurrent reviewers on PostgreSQL, with 1,000 and 1,000,000 items waiting.

Self-contained: creates its own database, migrates it, makes the reviewers, COPYs the items in, measures the
service at both queue sizes and a raw-SQL reference at the large one, checks no item was given twice, cleans up.

Each reviewer is a thread with its own database connection. The threads live in ``--processes`` reviewer
processes forked from this one after setup (as a pre-fork server forks its workers). With one process (the
default) all 50 share one interpreter lock, so a claim whose reply has arrived may wait for another thread's
Python: the figure then includes the harness's lock, which a server spreads over its worker processes;
``--processes 50`` gives each reviewer a process of its own (50 sync workers), so only the 2 cores are
shared. The raw reference runs the same way as the service, on the same connections, taking turns with it.

    .venv/bin/python bench/claim.py [--reviewers 50] [--processes 1] [--rounds 4] [--claims 10] [--think-ms 1000]
"""

from __future__ import annotations

import argparse
import functools
import gc
import multiprocessing
import os
import random
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

import psycopg
from benchlib import (
    ITEMS_TABLE,
    ROOT,
    app_env,
    database_recreate,
    django_setup,
    machine_busy,
    machine_description,
    manage,
    percentile,
    postgres_pids,
    process_cpu,
    scratch_database,
    scratch_release,
)
from psycopg import sql

RESULTS = ROOT / "bench" / "results" / "claim.md"
SOURCE = "bench-claim"
LEASE = timedelta(minutes=15)
# Every NOT NULL column of the items table without a database default, and the queue fields, in COPY order.
COPY_COLUMNS = [
    "source", "external_id", "kind", "text", "media_urls", "author_ref", "surface", "language", "metadata",
    "report_reasons", "report_count", "is_golden", "state", "queue_id", "priority", "tags", "required_reviews",
    "received_at", "triaged_at", "queued_at", "due_at",
]  # fmt: skip
# Most items wait at the default priority; rules raise some (reports, high-risk scores) and a few urgent ones.
PRIORITIES = [0] * 80 + [10] * 15 + [50] * 4 + [100]
SLA = timedelta(hours=24)
PASSWORD = "bench-only-password"  # noqa: S105 - nobody signs in

# Close the claimed item as a decision would, and put a new one in its place so the queue keeps its size.
FINISH = f"""
UPDATE {ITEMS_TABLE} SET state = 'decided', decided_at = now(), assignee_id = NULL, lease_expires_at = NULL
WHERE id = %s AND state = 'claimed' AND assignee_id = %s
"""
REFILL = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
    sql.Identifier(ITEMS_TABLE),
    sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS)),
    sql.SQL(", ").join(sql.Placeholder() * len(COPY_COLUMNS)),
)
# The reference: the least a claim can be, straight from psycopg.
RAW_SELECT = f"""
SELECT id FROM {ITEMS_TABLE} WHERE queue_id = %s AND state = 'queued'
ORDER BY priority DESC, due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
"""
RAW_UPDATE = f"""
UPDATE {ITEMS_TABLE} SET state = 'claimed', assignee_id = %s, claimed_at = now(), lease_expires_at = now() + %s
WHERE id = %s
"""


def item_row(rng: random.Random, queue_id: int, external_id: str, now: datetime) -> tuple[Any, ...]:
    """A queued item received within the last SLA period, due one SLA after receipt."""
    received = now - timedelta(seconds=rng.uniform(0, SLA.total_seconds()))
    return (
        SOURCE, external_id, "content", "a post someone reported", "[]", "", "post", "en", "{}", "[]", 0, False,
        "queued", queue_id, rng.choice(PRIORITIES), "[]", 1, received, received, received, received + SLA,
    )  # fmt: skip


def items_copy(conninfo: str, queue_id: int, count: int, label: str) -> float:
    """COPY ``count`` queued items into the queue; seconds taken."""
    rng = random.Random(queue_id)
    now = datetime.now(UTC)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(ITEMS_TABLE), sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
    )
    t0 = time.perf_counter()
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur, cur.copy(statement) as copy:
        for n in range(count):
            copy.write_row(item_row(rng, queue_id, f"{label}-{n:08d}", now))
    return time.perf_counter() - t0


# --- CPU accounting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cpu:
    """CPU seconds: the bench's processes (every reviewer), their PostgreSQL backends, the machine busy and in all."""

    bench: float = 0.0
    postgres: float = 0.0
    busy: float = 0.0
    total: float = 0.0

    @classmethod
    def take(cls, bench_pids: list[int], pg_pids: list[int]) -> Cpu:
        busy, total = machine_busy()
        return cls(sum(map(process_cpu, bench_pids)), sum(map(process_cpu, pg_pids)), busy, total)

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def line(self, elapsed: float, claims: int) -> str:
        """Cores used over ``elapsed`` seconds (this being a difference of two snapshots), and CPU per claim."""
        others = max(0.0, self.busy - self.bench - self.postgres)
        return (
            f"bench processes {self.bench / elapsed:.2f}, their PostgreSQL {self.postgres / elapsed:.2f}, "
            f"other processes {others / elapsed:.2f} (machine {self.busy / self.total:.0%} busy); per claim, "
            f"with its close and refill: {self.bench / claims * 1000:.1f} ms bench CPU, "
            f"{self.postgres / claims * 1000:.1f} ms PostgreSQL CPU"
        )


# --- reviewers: threads in reviewer processes, each thread with its own connection -------------------


def people_and_queues_create(reviewers: int) -> tuple[list[Any], dict[str, Any]]:
    from ops_platform.core.models import Role, Team
    from ops_platform.core.services import user_create
    from queues.models import Queue

    team = Team.objects.create(slug="in-house", name="In-house")
    people = [
        user_create(actor="bench", username=f"reviewer{n:02d}", password=PASSWORD, roles=[Role.REVIEWER], team=team)
        for n in range(reviewers)
    ]
    queues = {size: Queue.objects.create(slug=f"bench-{size}", name=f"Bench {size}") for size in ("small", "large")}
    return people, queues


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)  # seconds per claim
    empty: int = 0  # claims that found nothing although items were waiting
    elapsed: float = 0.0
    cpu: Cpu = field(default_factory=Cpu)

    def add(self, other: Run) -> None:
        self.latencies += other.latencies
        self.empty += other.empty
        self.elapsed += other.elapsed
        self.cpu += other.cpu

    def line(self) -> str:
        ms = [s * 1000 for s in self.latencies]
        return (
            f"p50 {percentile(ms, 0.5):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, "
            f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms; "
            f"{len(ms) / self.elapsed:,.0f} claims/s ({len(ms):,} claims in {self.elapsed:.1f} s)"
        )

    def p99(self) -> float:
        return percentile(self.latencies, 0.99) * 1000


ClaimOnce = Callable[[int, random.Random], float | None]


def threads_run(
    pool: ThreadPoolExecutor, reviewers: list[int], claims: int, think: float, claim_once: ClaimOnce
) -> Run:
    """Each of ``reviewers`` calls ``claim_once`` ``claims`` times on a thread of its own, all starting together.

    ``claim_once`` returns the seconds the claim took, or None if it found nothing. With ``think``, a
    reviewer pauses a random 0 to 2 x ``think`` seconds before each claim (reading the item it has), so
    the 50 do not move in lockstep; without, they claim flat out.
    """
    run = Run()
    lock = threading.Lock()
    start = threading.Barrier(len(reviewers) + 1)

    def work(n: int) -> None:
        rng = random.Random(n)
        mine: list[float] = []
        empty = 0
        start.wait()
        for _ in range(claims):
            if think:
                time.sleep(rng.uniform(0, 2 * think))
            seconds = claim_once(n, rng)
            if seconds is None:
                empty += 1
            else:
                mine.append(seconds)
        with lock:
            run.latencies += mine
            run.empty += empty

    futures = [pool.submit(work, n) for n in reviewers]
    start.wait()
    t0 = time.perf_counter()
    for future in futures:
        future.result()
    run.elapsed = time.perf_counter() - t0
    return run


def service_claimer(queue: Any, people: list[Any], label: str, claimed: list[int]) -> ClaimOnce:
    """``item_claim_next`` (timed), then the item closed and the queue refilled (not timed)."""
    from django.db import connection

    from queues.services import item_claim_next

    now = datetime.now(UTC)
    counters = [0] * len(people)

    def claim_once(n: int, rng: random.Random) -> float | None:
        actor = people[n]
        t0 = time.perf_counter()
        item = item_claim_next(queue=queue, actor=actor, lease=LEASE)
        seconds = time.perf_counter() - t0
        if item is None:
            return None
        claimed.append(item.pk)
        counters[n] += 1
        with connection.cursor() as cur:
            cur.execute(FINISH, [item.pk, actor.pk])
            if cur.rowcount != 1:
                raise SystemExit(f"item {item.pk} was not {actor.username}'s to close")
            cur.execute(REFILL, item_row(rng, queue.pk, f"{label}-{n}-{counters[n]}", now))
        return seconds

    return claim_once


def raw_claimer(queue_id: int, people: list[Any], label: str, claimed: list[int]) -> ClaimOnce:
    """The least a claim can be (SKIP LOCKED select + update, one transaction) straight from psycopg, then the
    same close. It uses the reviewer's own connection (the one Django opened for it, so the reference can take
    turns with the service without 50 more connections) with psycopg's own cursor: server-side parameters,
    statements prepared after their fifth run."""
    from django.db import connection

    now = datetime.now(UTC)
    counters = [0] * len(people)

    def claim_once(n: int, rng: random.Random) -> float | None:
        connection.ensure_connection()
        conn, actor_id = connection.connection, people[n].pk
        cur = psycopg.Cursor(conn)
        t0 = time.perf_counter()
        with conn.transaction():
            row = cur.execute(RAW_SELECT, [queue_id]).fetchone()
            if row is not None:
                cur.execute(RAW_UPDATE, [actor_id, LEASE, row[0]])
        seconds = time.perf_counter() - t0
        if row is None:
            return None
        claimed.append(row[0])
        counters[n] += 1
        if cur.execute(FINISH, [row[0], actor_id]).rowcount != 1:
            raise SystemExit(f"item {row[0]} was not reviewer {actor_id}'s to close")
        cur.execute(REFILL, item_row(rng, queue_id, f"{label}-{n}-{counters[n]}", now))
        return seconds

    return claim_once


def django_connections_close(pool: ThreadPoolExecutor, threads: int) -> None:
    """Each pool thread closes its own Django connection (they are per thread); the barrier puts one task on each."""
    from django.db import connection

    everyone = threading.Barrier(threads)

    def close() -> None:
        everyone.wait(timeout=60)
        connection.close()

    for future in [pool.submit(close) for _ in range(threads)]:
        future.result()


Maker = Callable[[str, list[int]], ClaimOnce]


def reviewer_process(pipe: Connection, start: Any, mine: list[int], makers: dict[str, Maker]) -> None:
    """A reviewer process: its reviewers as threads, doing what the parent sends until it says stop.

    ("run", label, tag, claims, think, active): the reviewers below ``active`` claim; the reply is
    (latencies, empty claims, items claimed, GC pauses) or ("error", traceback).
    """
    pool = ThreadPoolExecutor(len(mine), thread_name_prefix="reviewer")
    pauses = GcPauses()
    gc.callbacks[:] = [pauses.record]
    try:
        while (command := pipe.recv())[0] != "stop":
            _, label, tag, claims, think, active = command
            claimed: list[int] = []
            claim_once = makers[label](f"{label}-{tag}", claimed)
            start.wait(timeout=300)
            run = threads_run(pool, [n for n in mine if n < active], claims, think, claim_once)
            pipe.send((run.latencies, run.empty, claimed, pauses))
            pauses = GcPauses()
            gc.callbacks[:] = [pauses.record]
    except BaseException:  # whatever it is, the parent reports it and stops
        pipe.send(("error", traceback.format_exc()))
    finally:
        django_connections_close(pool, len(mine))
        pool.shutdown()


@dataclass
class ReviewerProcesses:
    """The reviewers, spread round-robin over processes forked from this one, started together each run."""

    pipes: list[Connection]
    procs: list[Any]
    start: Any
    pauses: GcPauses

    @classmethod
    def fork(cls, processes: int, reviewers: int, makers: dict[str, Maker], pauses: GcPauses) -> ReviewerProcesses:
        from django.db import connections

        connections.close_all()  # a child must never share its parent's database connection
        ctx = multiprocessing.get_context("fork")
        start = ctx.Barrier(processes + 1)
        pipes, procs = [], []
        for k in range(processes):
            parent_end, child_end = ctx.Pipe()
            mine = list(range(k, reviewers, processes))
            proc = ctx.Process(target=reviewer_process, args=(child_end, start, mine, makers), daemon=True)
            proc.start()
            pipes.append(parent_end)
            procs.append(proc)
        return cls(pipes, procs, start, pauses)

    @property
    def pids(self) -> list[int]:
        return [os.getpid(), *(p.pid for p in self.procs)]

    def run(self, label: str, tag: str, *, claims: int, think: float, active: int) -> tuple[Run, list[int]]:
        for pipe in self.pipes:
            pipe.send(("run", label, tag, claims, think, active))
        self.start.wait(timeout=300)
        t0 = time.perf_counter()
        run, claimed = Run(), []
        for pipe in self.pipes:
            reply = pipe.recv()
            if reply[0] == "error":
                raise SystemExit(f"a reviewer process failed:\n{reply[1]}")
            latencies, empty, items, pauses = reply
            run.latencies += latencies
            run.empty += empty
            claimed += items
            self.pauses.full += pauses.full
            self.pauses.young += pauses.young
        run.elapsed = time.perf_counter() - t0
        return run, claimed

    def stop(self) -> None:
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            if proc.is_alive():
                pipe.send(("stop",))
            proc.join(timeout=60)
        self.pipes, self.procs = [], []


def claim_plan(queue: Any, actor: Any) -> str:
    """EXPLAIN ANALYZE of the service's claim statement as it sends it (rolled back: it claims an item)."""
    from django.db import connection, transaction

    from ops_platform.core.services import actor_label
    from queues.models import QueueOrdering
    from queues.services import _CLAIM_SQL_BY_ORDERING

    now = datetime.now(UTC)
    params = {
        "queue": queue.pk,
        "actor": actor.pk,
        "now": now,
        "expires": now + LEASE,
        "actor_label": actor_label(actor),
    }
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + _CLAIM_SQL_BY_ORDERING[QueueOrdering(queue.ordering)], params
            )
            plan = "\n".join(row[0] for row in cur.fetchall())
        transaction.set_rollback(True)
    return plan


def duplicates(claimed: list[int]) -> int:
    return sum(n - 1 for n in Counter(claimed).values() if n > 1)


# --- the run --------------------------------------------------------------------------------------


@dataclass
class GcPauses:
    """Garbage-collector pauses in this process while measuring: they stop every reviewer thread at once."""

    full: list[float] = field(default_factory=list)  # ms per generation-2 collection
    young: list[float] = field(default_factory=list)  # ms per generation-0/1 collection
    _started: float = 0.0

    def record(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            (self.full if info["generation"] == 2 else self.young).append((time.perf_counter() - self._started) * 1000)

    def line(self) -> str:
        full = f"{len(self.full)} full collection(s)" + (f", longest {max(self.full):.0f} ms" if self.full else "")
        young = f"{len(self.young)} young ones" + (f", longest {max(self.young):.0f} ms" if self.young else "")
        return f"{full}; {young}"


@dataclass
class Bench:
    args: argparse.Namespace
    conninfo: str
    dbname: str
    reviewers: ReviewerProcesses
    runs: dict[str, Run] = field(default_factory=dict)
    claimed: dict[str, list[int]] = field(default_factory=dict)

    def run(self, label: str, mode: str, *, claims: int, think: float, pg_pids: list[int], tag: str,
            reviewers: int = 0) -> Run:  # fmt: skip
        before = Cpu.take(self.reviewers.pids, pg_pids)
        run, claimed = self.reviewers.run(
            label, tag, claims=claims, think=think, active=reviewers or self.args.reviewers
        )
        run.cpu = Cpu.take(self.reviewers.pids, pg_pids) - before
        self.claimed.setdefault(label, []).extend(claimed)
        if mode:
            self.runs.setdefault(f"{label}, {mode}", Run()).add(run)
        return run

    def measure(self, labels: list[str]) -> None:
        """Warm up, then paced rounds taking turns between ``labels`` (so a checkpoint, an autovacuum or
        another program's burst falls on each alike), then one flat-out run each, then one reviewer alone."""
        args = self.args
        for label in labels:
            self.run(label, "", claims=args.warmup, think=0, pg_pids=[], tag="w")
        pg_pids = postgres_pids(self.conninfo, self.dbname)
        for r in range(args.rounds):
            for label in labels:
                run = self.run(label, "paced", claims=args.claims, think=args.think_ms / 1000, pg_pids=pg_pids,
                               tag=f"p{r}")  # fmt: skip
                print(f"{label}, paced, round {r + 1} of {args.rounds}: {run.line()}", flush=True)
        for label in labels:
            run = self.run(label, "flat out", claims=args.claims, think=0, pg_pids=pg_pids, tag="f")
            print(f"{label}, flat out: {run.line()}", flush=True)
        for label in labels:
            run = self.run(label, "one reviewer alone", claims=args.alone, think=0, pg_pids=pg_pids, tag="a",
                           reviewers=1)  # fmt: skip
            print(f"{label}, one reviewer alone: {run.line()}", flush=True)


def housekeeping(conninfo: str) -> tuple[int, int, int]:
    """(autovacuums, autoanalyzes) of the items table so far, and the server's checkpoints."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT autovacuum_count, autoanalyze_count, "
            "(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) "
            "FROM pg_stat_user_tables WHERE relname = %s",
            [ITEMS_TABLE],
        ).fetchone()
    return (row[0], row[1], row[2]) if row else (0, 0, 0)


def reviewers_description(args: argparse.Namespace) -> str:
    per = args.reviewers / args.processes
    where = (
        "threads in one process forked after setup, sharing its interpreter lock (a server would spread them "
        "over worker processes, so this is the harsher measure)"
        if args.processes == 1
        else f"threads in {args.processes} processes forked after setup ({per:g} each"
        + (", like sync gunicorn workers each serving one reviewer" if args.processes == args.reviewers else "")
        + "), each process with its own interpreter lock"
    )
    return (
        f"{args.reviewers} {where}; each reviewer has its own connection (Django's, kept for the whole run, "
        "which the raw reference also uses, through psycopg's own cursor)"
    )


def report(
    b: Bench,
    plan: str,
    waiting: dict[int, int],
    queues: dict[str, Any],
    background: list[tuple[int, int, int]],
    pauses: GcPauses,
) -> tuple[str, bool]:
    args = b.args
    small, large = b.runs["service-small, paced"], b.runs["service-large, paced"]
    ratio = large.p99() / small.p99()
    target = args.target_p99_ms
    met = small.p99() <= target and large.p99() <= target and ratio <= args.target_ratio
    rows = [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", machine_description(b.conninfo)),
        ("reviewers", reviewers_description(args)),
        ("each claim", "timed: the claim alone; then, not timed: the item closed with a direct UPDATE and a new "
                       "queued item inserted, so the queue keeps its size"),
        ("paced", f"before each claim a random 0 to {2 * args.think_ms:,.0f} ms pause (mean {args.think_ms:,.0f} ms; "
                  "a person takes 10 to 60 s an item, so this is 10 to 60 times a real team's claim rate)"),
        ("flat out", f"no pause: {args.reviewers} reviewers claiming back to back; latency is then mostly queueing "
                     "for the 2 cores" + (" and the one interpreter lock" if args.processes == 1 else "")
                     + f" (Little's law: {args.reviewers} / claims per second), not the claim's own cost"),
        ("claims", f"paced: {args.rounds} rounds x {args.claims} per reviewer, the two sizes and the raw "
                   f"reference taking turns each round; flat out: {args.claims} per reviewer; alone: {args.alone} "
                   f"by one reviewer while the other {args.reviewers - 1} wait; all after {args.warmup} untimed each"),
        ("items", f"COPY, then VACUUM ANALYZE; {args.small:,} and {args.large:,} queued in two queues of one table; "
                  "priorities 0/10/50/100 (80/15/4/1 %), due over the next 24 h"),
    ]  # fmt: skip
    for label, run in b.runs.items():
        name = label.replace("service-small", f"**item_claim_next, {args.small:,} waiting**")
        name = name.replace("service-large", f"**item_claim_next, {args.large:,} waiting**")
        name = name.replace("raw-large", f"raw SKIP LOCKED SELECT + UPDATE, {args.large:,} waiting")
        rows.append((name, run.line()))
        rows.append(("  cores used", run.cpu.line(run.elapsed, len(run.latencies))))
    rows += [
        ("**p99 ratio, paced: large / small**", f"{ratio:.2f}"),
        ("during the runs", "{} autovacuum(s) and {} autoanalyze(s) of the items table, {} checkpoint(s)".format(
            *(after - before for before, after in zip(background[0], background[1], strict=True)))),
        ("GC pauses in the reviewer processes", pauses.line() + (" (gc.freeze() after setup)"
                                                                  if not args.no_gc_freeze else " (no gc.freeze())")),
        ("items given twice", ", ".join(f"{k}: {duplicates(v)}" for k, v in b.claimed.items())),
        ("claims that found nothing", f"{sum(r.empty for r in b.runs.values())} (items were always waiting)"),
        ("still waiting after the runs", ", ".join(f"{q.slug}: {waiting.get(q.pk, 0):,}" for q in queues.values())),
        ("target", f"paced p99 <= {target:.0f} ms at both sizes and ratio <= {args.target_ratio:.0f}: "
                   + ("met" if met else "MISSED")),
    ]  # fmt: skip
    width = max(len(label) for label, _ in rows)
    lines = ["## Claim benchmark", "", f"| {'':<{width}} | |", f"|{'-' * (width + 2)}|---|"]
    lines += [f"| {label:<{width}} | {value} |" for label, value in rows]
    text = "\n".join(lines) + "\n"
    text += f"\n### The service's claim query at {args.large:,} waiting (EXPLAIN ANALYZE, after the runs)\n\n"
    text += "```\n" + plan + "\n```\n"
    return text, met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviewers", type=int, default=50, help="threads, each its own reviewer and connection")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="reviewer processes the threads are spread over (1: all share one interpreter lock)",
    )
    parser.add_argument("--claims", type=int, default=10, help="timed claims per reviewer per run")
    parser.add_argument("--alone", type=int, default=200, help="claims by one reviewer with nobody else working")
    parser.add_argument("--rounds", type=int, default=4, help="paced runs per size, the sizes taking turns")
    parser.add_argument("--warmup", type=int, default=3, help="untimed claims per reviewer before each size")
    parser.add_argument("--think-ms", type=float, default=1000.0, help="mean pause before a claim in the paced runs")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--target-p99-ms", type=float, default=25.0)
    parser.add_argument("--target-ratio", type=float, default=2.0)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/ops_bench_claim")
    parser.add_argument("--no-gc-freeze", action="store_true", help="leave the setup's objects to the collector")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()  # fmt: skip
    if not 1 <= args.processes <= args.reviewers:
        raise SystemExit("--processes must be between 1 and --reviewers")
    conninfo, dbname, admin = scratch_database(args.database_url)
    print(f"recreating database {dbname} and migrating …", flush=True)
    database_recreate(admin, dbname)
    pauses = GcPauses()
    reviewers: ReviewerProcesses | None = None
    try:
        # Each reviewer thread keeps its one connection for the whole run, as a gunicorn worker would.
        env = app_env(args.database_url, drop=(), CONN_MAX_AGE="3600", LOG_LEVEL="WARNING")
        manage(env, "migrate", "--noinput")
        django_setup(env)
        people, queues = people_and_queues_create(args.reviewers)
        for name, count in (("small", args.small), ("large", args.large)):
            seconds = items_copy(conninfo, queues[name].pk, count, name)
            print(f"COPY {count:,} items into {queues[name].slug}: {seconds:.1f} s", flush=True)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            # As autovacuum would have by now; the checkpoint writes the load's WAL before, not during, the runs.
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(ITEMS_TABLE)))
            conn.execute("CHECKPOINT")
        background = [housekeeping(conninfo)]

        makers: dict[str, Maker] = {
            f"service-{name}": functools.partial(service_claimer, queues[name], people) for name in ("small", "large")
        }
        makers["raw-large"] = functools.partial(raw_claimer, queues["large"].pk, people)
        if not args.no_gc_freeze:
            # What a pre-fork server does after loading the app: the ~200k objects Django and the apps keep for
            # the process's life leave the collector's view, so a full collection no longer stops every reviewer
            # thread of a process for ~100+ ms (in a server that pause would hold up one request).
            gc.collect()
            gc.freeze()
        reviewers = ReviewerProcesses.fork(args.processes, args.reviewers, makers, pauses)
        b = Bench(args, conninfo, dbname, reviewers)
        b.measure(["service-small", "service-large", "raw-large"])
        reviewers.stop()  # their 50 connections close, so the checks below find one free on a busy server
        background.append(housekeeping(conninfo))
        plan = claim_plan(queues["large"], people[0])
        with psycopg.connect(conninfo) as conn:
            waiting: dict[int, int] = dict(
                conn.execute(
                    f"SELECT queue_id, count(*) FROM {ITEMS_TABLE} WHERE state = 'queued' GROUP BY queue_id"
                ).fetchall()
            )

        text, _ = report(b, plan, waiting, queues, background, pauses)
        print("\n" + text)
        if not args.no_write:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(text)
            print(f"written to {RESULTS.relative_to(ROOT)}")
        ok = not any(map(duplicates, b.claimed.values())) and not any(r.empty for r in b.runs.values())
        if not ok:
            print("FAILED: an item was given twice, or a claim found nothing while items were waiting")
        return 0 if ok else 1
    finally:
        if reviewers is not None:
            reviewers.stop()
        scratch_release(admin, dbname, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
