"""Dashboards at scale: every panel read from the rollups over millions of decided items (seeded by COPY, the
reference rate), timed over 28 and 90 days; correctness is tests/analytics/test_panels_against_raw.py's job."""

from __future__ import annotations

import io
import math
import queue
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import benchlib
import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from tests.support import dashboard_world as dw

RESULT = benchlib.RESULTS / "dashboard.md"
DAYS = 90
CHUNK = 250_000  # decided items generated and COPYed per round
TARGET_SECONDS = 1.0
WORK_MEM = "64MB"  # the server default (4MB) makes large sorts spill to disk


def copy_text(frame: pd.DataFrame) -> bytes:
    """The frame as COPY text: tab-separated, \\N for NULL (no field holds a tab, newline or backslash)."""
    out = io.StringIO()
    frame.to_csv(
        out,
        sep="\t",
        header=False,
        index=False,
        na_rep="\\N",
        quoting=3,
        quotechar="\x01",
        date_format="%Y-%m-%d %H:%M:%S.%f+00",
    )
    return out.getvalue().encode()


@dataclass
class Seeded:
    seconds: float = 0.0
    generate_seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)  # by table
    bytes: int = 0
    decisions: int = 0
    index_seconds: float = 0.0
    analyze_seconds: float = 0.0


def seed(conninfo: str, w: dw.World, decisions: int, now: datetime) -> Seeded:
    """COPY everything in (generating the next chunk on a thread), secondary indexes dropped and built after."""
    out = Seeded()
    ids = dw.Ids()
    models = dw.models()
    tables = [benchlib.table(model) for model in models]
    # ("copy", table, COPY statement, text, rows) or ("decided", …, decisions) per chunk; None at the end.
    blocks: queue.Queue[tuple[str, str, Any, bytes, int] | None] = queue.Queue(maxsize=8)
    failure: list[BaseException] = []

    def produce() -> None:
        rng = np.random.default_rng(2025)
        made, items, ratio = 0, 0, 0.99  # open items and appeals: decisions per item generated, learnt as we go
        try:
            while made < decisions:
                t0 = time.perf_counter()
                n = max(1, min(CHUNK, math.ceil((decisions - made) / ratio)))
                chunk = dw.chunk_generate(rng, n, w, ids, now, days=DAYS, shares=dw.SHARES)
                made, items = made + chunk.decisions, items + n
                ratio = made / items
                for model, frame in dw.framed(chunk):
                    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                        sql.Identifier(benchlib.table(model)),
                        sql.SQL(", ").join(map(sql.Identifier, benchlib.columns_of(model, frame.columns))),
                    )
                    blocks.put(("copy", benchlib.table(model), statement, copy_text(frame), len(frame)))
                out.generate_seconds += time.perf_counter() - t0
                blocks.put(("decided", "", None, b"", chunk.decisions))
        except BaseException as e:  # the consumer raises it
            failure.append(e)
        finally:
            blocks.put(None)

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        indexes = conn.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = ANY(%s) AND NOT i.indisprimary "
            "AND NOT i.indisunique",
            [tables],
        ).fetchall()
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        t0 = time.perf_counter()
        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        reported = 0
        while (block := blocks.get()) is not None:
            kind, name, statement, payload, rows = block
            if kind == "decided":
                out.decisions += rows
                if out.decisions - reported >= 1_000_000:
                    reported = out.decisions
                    rate = out.decisions / (time.perf_counter() - t0)
                    print(f"  {out.decisions:,} decided items seeded ({rate:,.0f}/s)", flush=True)
                continue
            with conn.cursor() as cur, cur.copy(statement) as copy:
                copy.write(payload)
            out.rows[name] = out.rows.get(name, 0) + rows
            out.bytes += len(payload)
        thread.join()
        if failure:
            raise failure[0]
        for model, names in models.items():
            if "id" in names:  # the generator gave the ids: move the sequence past the last
                last = conn.execute(
                    sql.SQL("SELECT max(id) FROM {}").format(sql.Identifier(benchlib.table(model)))
                ).fetchone()
                conn.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [benchlib.table(model), max(1, last[0] or 1)]
                )
        out.seconds = time.perf_counter() - t0
        out.index_seconds, _ = benchlib.timed(lambda: [conn.execute(definition) for _, definition in indexes])
        vacuum = [sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(name)) for name in tables]
        out.analyze_seconds, _ = benchlib.timed(lambda: [conn.execute(v) for v in [*vacuum, "CHECKPOINT"]])
    return out


def rollups_build(now: datetime) -> dict[str, tuple[float, int]]:
    """Build every rollup once, as a backfill would; seconds and rows written per kind."""
    from analytics import models as m
    from analytics.rollups import backlog_snapshot_take, classifier_rollups_rebuild, rollups_rebuild

    start, end = (now - timedelta(days=DAYS + 1)).date(), now.date()
    seconds, days = benchlib.timed(lambda: rollups_rebuild(start, end))
    daily = (m.OpsDecisionDaily, m.OpsIntakeDaily, m.OpsQueueDaily, m.OpsReviewerDaily, m.OpsAppealDaily)
    rows = sum(model.objects.count() for model in (*daily, m.QaSampleDaily, m.GoldenDaily))
    out = {f"operations ({days} days)": (seconds, rows)}
    print(f"  operations rollups: {seconds:,.1f} s, {rows:,} rows", flush=True)
    seconds, weeks = benchlib.timed(lambda: classifier_rollups_rebuild(start, end))
    out[f"classifier ({len(weeks)} weeks)"] = (seconds, m.ClassifierRollup.objects.count())
    print(f"  classifier rollups: {seconds:,.1f} s", flush=True)
    out["backlog snapshot"] = benchlib.timed(lambda: backlog_snapshot_take(now=now))
    return out | capacity_warm()


def capacity_warm() -> dict[str, tuple[float, int]]:
    """What the 30-minute task does: fit every preset period's capacity forecasts into the cache."""
    from analytics.selectors.capacity import capacity_forecasts_warm

    seconds, plans = benchlib.timed(capacity_forecasts_warm)
    print(f"  capacity forecasts: {seconds:,.1f} s for {plans} queue plans", flush=True)
    return {"capacity forecasts (the warm task)": (seconds, plans)}


def reused() -> tuple[Seeded, datetime]:
    """What an earlier run seeded, counted from the database, and the time it seeded at (its backlog snapshot)."""
    from analytics.models import OpsBacklogSnapshot
    from queues.models import ReviewItem

    seeded = Seeded(rows={benchlib.table(model): model.objects.count() for model in dw.models()})
    seeded.decisions = ReviewItem.objects.filter(state="decided", appeal_of__isnull=True).count()
    taken = OpsBacklogSnapshot.objects.order_by("-taken_at").values_list("taken_at", flat=True).first()
    assert taken is not None, "the reused database has no rollups: run without --reuse"
    return seeded, taken


def main() -> int:
    parser = benchlib.parser(__doc__, "bench_dashboard")
    parser.add_argument("--decisions", type=int, default=10_000_000, help="decided items to seed")
    parser.add_argument("--repeat", type=int, default=5, help="warm runs per panel and period")
    parser.add_argument("--reuse", action="store_true", help="time a database an earlier run kept: no seeding")
    args = parser.parse_args()
    with benchlib.scratch(args, reuse=args.reuse, CELERY_BROKER_URL="", LOG_LEVEL="WARNING") as db:
        conninfo, dbname = db.conninfo, db.dbname
        from django.db import connection

        from analytics.filters import MetricFilter
        from queues.models import Decision

        if args.reuse:
            seeded, now = reused()
            print(f"reusing {dbname}: {seeded.decisions:,} decided items seeded at {now:%Y-%m-%d %H:%M}", flush=True)
            built = capacity_warm()
        else:
            world = dw.world_create()
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            print(f"seeding {args.decisions:,} decided items by COPY …", flush=True)
            seeded = seed(conninfo, world, args.decisions, now)
            print(f"seeded in {seeded.seconds:,.1f} s; indexes {seeded.index_seconds:,.1f} s", flush=True)
            print("building the rollups …", flush=True)
            built = rollups_build(now)
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute("VACUUM (ANALYZE)")  # the rollup tables, as autovacuum would
        with connection.cursor() as cur:
            cur.execute(f"SET work_mem = '{WORK_MEM}'")
        raw_decisions = Decision.objects.count()
        print("timing the panels …", flush=True)
        timings: dict[str, dict[int, tuple[float, float]]] = {}  # panel -> days -> (cold, median warm) seconds
        for panel in dw.panels():
            for days in panel.periods:
                read = partial(panel.read, MetricFilter.last_days(days, today=now.date()))
                runs = [benchlib.timed(read)[0] for _ in range(args.repeat + 1)]
                cold, warm = runs[0], statistics.median(runs[1:]) if runs[1:] else runs[0]
                timings.setdefault(panel.name, {})[days] = cold, warm
                print(f"{panel.name}, {days} d: {warm * 1000:,.1f} ms (cold {cold * 1000:,.1f})", flush=True)

        rows, all_rows = seeded.rows, sum(seeded.rows.values())
        tables = {kind: benchlib.table(model) for kind, model in zip(dw.KINDS, dw.models(), strict=True)}
        r = benchlib.Report("Dashboard benchmark: every panel from the rollups")
        r.stamp(conninfo, f"work_mem {WORK_MEM} for this bench's sessions")
        r.add(
            "data",
            f"{seeded.decisions:,} decided items over {DAYS} days ({raw_decisions:,} decision rows, appeals included); "
            f"{rows[tables['item']]:,} items (auto-actioned, open and appeal ones too), "
            f"{rows[tables['event']]:,} item events, {rows[tables['score']]:,} scores, {rows[tables['sample']]:,} QA "
            f"samples with re-review and ground truth; 6 queues, 7 policies, 2 vendors + in-house, "
            f"{3 * dw.REVIEWERS_PER_TEAM} reviewers",
        )
        if args.reuse:
            r.add("**seeding (the reference rate)**", "reused a database an earlier run seeded (see that run's log)")
        else:
            r.add(
                "**seeding (the reference rate)**",
                f"COPY {all_rows:,} rows ({seeded.bytes / 1e9:,.2f} GB of COPY text) in {seeded.seconds:,.1f} s: "
                f"**{all_rows / seeded.seconds:,.0f} rows/s**, {seeded.decisions / seeded.seconds:,.0f} decided "
                f"items/s (row generation on a thread alongside: {seeded.generate_seconds:,.1f} s); then secondary "
                f"indexes {seeded.index_seconds:,.1f} s, VACUUM ANALYZE {seeded.analyze_seconds:,.1f} s",
            )
        for kind, (seconds, n) in built.items():
            if kind.startswith("backlog"):
                r.add(f"rollup build: {kind}", f"{seconds * 1000:,.0f} ms, {n} rows")
            elif kind.startswith("capacity"):
                r.add(f"rollup build: {kind}", f"{seconds:,.1f} s, {n} queue plans fitted and cached")
            else:
                rate = seeded.decisions / seconds
                r.add(f"rollup build: {kind}", f"{seconds:,.1f} s, {n:,} rollup rows; {rate:,.0f} decided items/s")
        r.add("timing", f"median of {args.repeat} warm runs (the first, cold, run in brackets)")
        met = True
        for name, periods in timings.items():
            parts = [
                f"{days} d: **{warm * 1000:,.1f} ms** ({cold * 1000:,.0f})" for days, (cold, warm) in periods.items()
            ]
            hit = max(warm for _, warm in periods.values()) < TARGET_SECONDS
            met &= hit
            r.add(name, "; ".join(parts) + f"; {'met' if hit else 'MISSED'}")
        r.add("target", f"every panel under {TARGET_SECONDS:g} s from rollups: " + ("met" if met else "MISSED"))
        return r.finish(RESULT, write=not args.no_write, ok=bool(timings), failure="no panel was timed")


if __name__ == "__main__":
    sys.exit(main())
