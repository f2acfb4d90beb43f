"""Claim latency: ``item_claim_next`` for 50 concurrent reviewers (threads) with 1,000 and 1,000,000 items waiting,
and a raw-SQL reference taking turns on the same connections (bench/README.md, docs/performance.md)."""

from __future__ import annotations

import argparse
import functools
import gc
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import benchlib
import psycopg
from psycopg import sql

RESULT = benchlib.RESULTS / "claim.md"
SOURCE = "bench-claim"
LEASE = timedelta(minutes=15)
# Most items wait at the default priority; rules raise some (reports, high-risk scores) and a few urgent ones.
PRIORITIES = [0] * 80 + [10] * 15 + [50] * 4 + [100]
SLA = timedelta(hours=24)
PASSWORD = "bench-only-password"  # noqa: S105 - nobody signs in


@dataclass(frozen=True)
class Statements:
    """The SQL around a claim, on the items table the model names."""

    finish: str  # close the claimed item as a decision would
    refill: sql.Composed  # and put a new one in its place, so the queue keeps its size
    raw_select: str  # the reference: the least a claim can be, straight from psycopg
    raw_update: str

    @classmethod
    def of(cls, items: str) -> Statements:
        return cls(
            f"UPDATE {items} SET state = 'decided', decided_at = now(), assignee_id = NULL, lease_expires_at = NULL "
            "WHERE id = %s AND state = 'claimed' AND assignee_id = %s",
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(items),
                sql.SQL(", ").join(map(sql.Identifier, benchlib.QUEUED_FIELDS)),
                sql.SQL(", ").join(sql.Placeholder() * len(benchlib.QUEUED_FIELDS)),
            ),
            f"SELECT id FROM {items} WHERE queue_id = %s AND state = 'queued' "
            "ORDER BY priority DESC, due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            f"UPDATE {items} SET state = 'claimed', assignee_id = %s, claimed_at = now(), "
            "lease_expires_at = now() + %s WHERE id = %s",
        )


def item_row(rng: random.Random, queue_id: int, external_id: str, now: datetime) -> tuple[Any, ...]:
    """A queued item received within the last SLA period, due one SLA after receipt."""
    received = now - timedelta(seconds=rng.uniform(0, SLA.total_seconds()))
    fixed = (SOURCE, external_id, "content", "a post someone reported", "[]", "", "post", "en", "{}", "[]", 0, False)
    return (*fixed, "queued", queue_id, rng.choice(PRIORITIES), "[]", 1, received, received, received, received + SLA)


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)  # seconds per claim
    empty: int = 0  # claims that found nothing although items were waiting
    elapsed: float = 0.0

    def add(self, other: Run) -> None:
        self.latencies += other.latencies
        self.empty += other.empty
        self.elapsed += other.elapsed

    def line(self) -> str:
        ms = [s * 1000 for s in self.latencies]
        return (
            f"{benchlib.quantiles(ms, (0.5, 0.95, 0.99), unit=' ms')}, "
            f"max {max(ms):.1f} ms; {len(ms) / self.elapsed:,.0f} claims/s ({len(ms):,} claims in {self.elapsed:.1f} s)"
        )

    def p99(self) -> float:
        return benchlib.percentile(self.latencies, 0.99) * 1000


ClaimOnce = Callable[[int, random.Random], float | None]


def threads_run(pool: ThreadPoolExecutor, reviewers: list[int], claims: int, think: float, once: ClaimOnce) -> Run:
    """Each reviewer calls ``once`` (seconds, or None) ``claims`` times, all starting together, ``think`` s apart."""
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
            seconds = once(n, rng)
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


def service_claimer(queue: Any, people: list[Any], sqls: Statements, label: str, claimed: list[int]) -> ClaimOnce:
    """``item_claim_next`` (timed), then the item closed and the queue refilled (not timed)."""
    from django.db import connection

    from queues.services import item_claim_next

    now, counters = datetime.now(UTC), [0] * len(people)

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
            cur.execute(sqls.finish, [item.pk, actor.pk])
            if cur.rowcount != 1:
                raise SystemExit(f"item {item.pk} was not {actor.username}'s to close")
            cur.execute(sqls.refill, item_row(rng, queue.pk, f"{label}-{n}-{counters[n]}", now))
        return seconds

    return claim_once


def raw_claimer(queue_id: int, people: list[Any], sqls: Statements, label: str, claimed: list[int]) -> ClaimOnce:
    """The SKIP LOCKED select + update in one transaction, then the same close, by psycopg on Django's connection."""
    from django.db import connection

    now, counters = datetime.now(UTC), [0] * len(people)

    def claim_once(n: int, rng: random.Random) -> float | None:
        connection.ensure_connection()
        conn, actor_id = connection.connection, people[n].pk
        cur = psycopg.Cursor(conn)
        t0 = time.perf_counter()
        with conn.transaction():
            row = cur.execute(sqls.raw_select, [queue_id]).fetchone()
            if row is not None:
                cur.execute(sqls.raw_update, [actor_id, LEASE, row[0]])
        seconds = time.perf_counter() - t0
        if row is None:
            return None
        claimed.append(row[0])
        counters[n] += 1
        if cur.execute(sqls.finish, [row[0], actor_id]).rowcount != 1:
            raise SystemExit(f"item {row[0]} was not reviewer {actor_id}'s to close")
        cur.execute(sqls.refill, item_row(rng, queue_id, f"{label}-{n}-{counters[n]}", now))
        return seconds

    return claim_once


Maker = Callable[[str, list[int]], ClaimOnce]


def claim_plan(queue: Any, actor: Any) -> str:
    """EXPLAIN ANALYZE of the claim statement the service sent, captured in a savepoint; all rolled back."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from queues.services import item_claim_next

    with transaction.atomic():
        with CaptureQueriesContext(connection) as sent, transaction.atomic():
            item_claim_next(queue=queue, actor=actor, lease=LEASE)
            transaction.set_rollback(True)
        statement = next(q["sql"] for q in sent.captured_queries if "SKIP LOCKED" in q["sql"])
        with connection.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement)
            plan = "\n".join(row[0] for row in cur.fetchall())
        transaction.set_rollback(True)
    return plan


def duplicates(claimed: list[int]) -> int:
    return sum(n - 1 for n in Counter(claimed).values() if n > 1)


def measure(args: argparse.Namespace, makers: dict[str, Maker]) -> Any:
    """Warm up; paced rounds, the labels taking turns (a burst falls on each alike); flat out; one reviewer alone."""
    from django.db import connection

    labels = ["service-small", "service-large", "raw-large"]
    runs: dict[str, Run] = {}
    claimed: dict[str, list[int]] = {}
    pool = ThreadPoolExecutor(args.reviewers, thread_name_prefix="reviewer")

    def run(label: str, mode: str, *, claims: int, think: float, tag: str, active: int = 0) -> None:
        once = makers[label](f"{label}-{tag}", claimed.setdefault(label, []))
        done = threads_run(pool, list(range(active or args.reviewers)), claims, think, once)
        if mode:
            runs.setdefault(f"{label}, {mode}", Run()).add(done)
            print(f"{label}, {mode} ({tag}): {done.line()}", flush=True)

    try:
        for label in labels:
            run(label, "", claims=args.warmup, think=0, tag="w")
        for r in range(args.rounds):
            for label in labels:
                run(label, "paced", claims=args.claims, think=args.think_ms / 1000, tag=f"p{r}")
        for label in labels:
            run(label, "flat out", claims=args.claims, think=0, tag="f")
        for label in labels:
            run(label, "one reviewer alone", claims=args.alone, think=0, tag="a", active=1)
    finally:
        # Each thread closes its own Django connection (they are per thread); the barrier puts one task on each.
        everyone = threading.Barrier(args.reviewers)

        def close() -> None:
            everyone.wait(timeout=60)
            connection.close()

        for future in [pool.submit(close) for _ in range(args.reviewers)]:
            future.result()
        pool.shutdown()
    return runs, claimed


def main() -> int:
    parser = benchlib.parser(__doc__, "ops_bench_claim")
    parser.add_argument("--reviewers", type=int, default=50, help="threads, each its own reviewer and connection")
    parser.add_argument("--claims", type=int, default=10, help="timed claims per reviewer per run")
    parser.add_argument("--alone", type=int, default=200, help="claims by one reviewer with nobody else working")
    parser.add_argument("--rounds", type=int, default=4, help="paced runs per size, the sizes taking turns")
    parser.add_argument("--warmup", type=int, default=3, help="untimed claims per reviewer before each size")
    parser.add_argument("--think-ms", type=float, default=1000.0, help="mean pause before a claim in the paced runs")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--target-p99-ms", type=float, default=25.0)
    parser.add_argument("--target-ratio", type=float, default=2.0)
    args = parser.parse_args()
    # Each reviewer thread keeps its one connection for the whole run, as a gunicorn worker would.
    with benchlib.scratch(args, CONN_MAX_AGE="3600", LOG_LEVEL="WARNING") as db:
        conninfo = db.conninfo
        from django.db.models import Count

        from ops_platform.core.models import Role, Team
        from ops_platform.core.services import user_create
        from queues.models import Queue, ReviewItem

        items, sqls = benchlib.table(ReviewItem), Statements.of(benchlib.table(ReviewItem))
        team = Team.objects.create(slug="in-house", name="In-house")
        people = [
            user_create(actor="bench", username=f"reviewer{n:02d}", password=PASSWORD, roles=[Role.REVIEWER], team=team)
            for n in range(args.reviewers)
        ]
        queues = {size: Queue.objects.create(slug=f"bench-{size}", name=f"Bench {size}") for size in ("small", "large")}
        for name, count in (("small", args.small), ("large", args.large)):
            rng, now, t0 = random.Random(queues[name].pk), datetime.now(UTC), time.perf_counter()
            with psycopg.connect(conninfo) as conn:
                rows = (item_row(rng, queues[name].pk, f"{name}-{n:08d}", now) for n in range(count))
                benchlib.copy_rows(conn, ReviewItem, benchlib.QUEUED_FIELDS, rows)
            print(f"COPY {count:,} items into {queues[name].slug}: {time.perf_counter() - t0:.1f} s", flush=True)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            # As autovacuum would have by now; the checkpoint writes the load's WAL before, not during, the runs.
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(items)))
            conn.execute("CHECKPOINT")
        makers: dict[str, Maker] = {
            f"service-{name}": functools.partial(service_claimer, queues[name], people, sqls) for name in queues
        }
        makers["raw-large"] = functools.partial(raw_claimer, queues["large"].pk, people, sqls)
        gc.collect()  # then freeze, as a pre-fork server does after loading the app (docs/performance.md, claim)
        gc.freeze()
        # The reviewers' connections are closed after it, so the checks below find one free on a busy server.
        runs, claimed = measure(args, makers)
        plan = claim_plan(queues["large"], people[0])
        waiting = dict(
            ReviewItem.objects.filter(state="queued").values_list("queue_id").annotate(n=Count("pk")).order_by()
        )

        small, large = runs["service-small, paced"], runs["service-large, paced"]
        ratio, target = large.p99() / small.p99(), args.target_p99_ms
        met = small.p99() <= target and large.p99() <= target and ratio <= args.target_ratio
        r = benchlib.Report("Claim benchmark")
        r.stamp(conninfo)
        r.add(
            "method",
            f"{args.reviewers} reviewers, threads with a connection each (one process, one interpreter lock); only "
            "the claim is timed, then the item is closed and a new one queued; paced: a random 0 to "
            f"{2 * args.think_ms:,.0f} ms pause before each claim, {args.rounds} rounds x {args.claims} claims each, "
            f"the sizes and the raw reference taking turns; flat out: no pause (latency is then mostly queueing); "
            f"alone: {args.alone} claims by one reviewer; all after {args.warmup} untimed each",
        )
        r.add(
            "items",
            f"COPY, then VACUUM ANALYZE; {args.small:,} and {args.large:,} queued in two queues of one table; "
            "priorities 0/10/50/100 (80/15/4/1 %), due over the next 24 h",
        )
        for label, run in runs.items():
            name = label.replace("service-small", f"**item_claim_next, {args.small:,} waiting**")
            name = name.replace("service-large", f"**item_claim_next, {args.large:,} waiting**")
            r.add(name.replace("raw-large", f"raw SKIP LOCKED SELECT + UPDATE, {args.large:,} waiting"), run.line())
        r.add("**p99 ratio, paced: large / small**", f"{ratio:.2f}")
        r.add("items given twice", ", ".join(f"{k}: {duplicates(v)}" for k, v in claimed.items()))
        r.add("claims that found nothing", f"{sum(run.empty for run in runs.values())} (items were always waiting)")
        r.add("still waiting after the runs", ", ".join(f"{q.slug}: {waiting.get(q.pk, 0):,}" for q in queues.values()))
        r.add(
            "target",
            f"paced p99 <= {target:.0f} ms at both sizes and ratio <= {args.target_ratio:.0f}: "
            + ("met" if met else "MISSED"),
        )
        r.after.append(
            f"### The service's claim query at {args.large:,} waiting (EXPLAIN ANALYZE)\n\n```\n{plan}\n```\n"
        )
        ok = not any(map(duplicates, claimed.values())) and not any(run.empty for run in runs.values())
        failure = "an item was given twice, or a claim found nothing while items were waiting"
        return r.finish(RESULT, write=not args.no_write, ok=ok, failure=failure)


if __name__ == "__main__":
    sys.exit(main())
