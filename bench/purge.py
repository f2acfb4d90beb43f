"""The retention purge at scale: N decided items past retention emptied by the periodic job's service (a manage.py
subprocess, committed batches), while intake posts over HTTP; intake's throughput without the purge is the reference.

.venv/bin/python bench/purge.py [--items 1000000] [--batch 500] [--concurrency 2] [--keep]
"""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import benchlib
import psycopg
from intake import item_text, items_generate
from psycopg import sql

from tests.support.processes import Gunicorn, manage, running

RESULT = benchlib.RESULTS / "purge.md"
Call = tuple[float, int]
REDIS = "redis://127.0.0.1:6379/10"  # broker and cache: triage tasks are published, no worker runs
PURGE = (
    "import json, time; from queues.retention.services import items_content_purge; t = time.time(); "
    "r = items_content_purge(); print(json.dumps({'items': r.items, 'batches': r.batches, 'start': t, "
    "'end': time.time()}))"
)


def intake_until(url: str, key: str, stop: threading.Event, calls: list[Call], *, batch: int, conns: int) -> None:
    """Post rounds of 20 batches until ``stop``; each call's answer time (wall clock) and items created."""
    offset, n = time.time() - time.perf_counter(), 0
    while not stop.is_set():
        items = items_generate(count=20 * batch, run=f"r{n}", seed=n, created_at=datetime.now(UTC))
        load = benchlib.post_all(url, key, benchlib.batches(items, batch), concurrency=conns).check("intake")
        calls += [(p.answered + offset, json.loads(p.body)["created"]) for p in load.posted]
        n += 1


def rate(calls: list[Call], start: float, end: float) -> str:
    created = sum(c for at, c in calls if start <= at < end)
    return f"{created / (end - start):,.0f} items/s ({created:,} items answered in {end - start:.1f} s)"


def main() -> int:
    p = benchlib.parser(__doc__, "ops_bench_purge")
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=500, help="items per intake call")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--reference-seconds", type=float, default=30.0)
    p.add_argument("--target", type=float, default=10_000.0, help="items purged per second")
    args = p.parse_args()
    with benchlib.scratch(args, celery=(REDIS, REDIS), ALLOWED_HOSTS="127.0.0.1", CONN_MAX_AGE="600") as db:
        from django.db import connections

        from queues.models import Queue, ReviewItem

        queue = Queue.objects.create(slug="bench", name="Bench", is_default_intake=True)
        rng, now, t0 = random.Random(7), datetime.now(UTC), time.perf_counter()
        texts = [item_text(rng, "en") for _ in range(1000)]
        decided_at = now - timedelta(days=400)
        with psycopg.connect(db.conninfo) as conn:
            meta = json.dumps({"country": "US", "followers": 12})
            rows = (
                ("old", f"o-{n:09d}", "content", f"{texts[n % 1000]} {n}", "[]", f"u{n % 50_000}", "post", "en", meta,
                 "[]", 0, False, "decided", queue.pk, 0, "[]", 1, decided_at, decided_at, decided_at, decided_at,
                 decided_at)
                for n in range(args.items)
            )  # fmt: skip
            benchlib.copy_rows(conn, ReviewItem, [*benchlib.QUEUED_FIELDS, "decided_at"], rows)
        copied = time.perf_counter() - t0
        with psycopg.connect(db.conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(benchlib.table(ReviewItem))))
        key = benchlib.api_keys("bench-intake")["bench-intake"]
        connections.close_all()
        (log := benchlib.RESULTS / "logs" / "purge-gunicorn.log").parent.mkdir(parents=True, exist_ok=True)
        web = Gunicorn(db.env, log, workers=2)
        with running(web):
            url = f"{web.base}/api/v1/items"
            calls: list[Call] = []
            stop = threading.Event()
            posting = threading.Thread(
                target=intake_until,
                args=(url, key, stop, calls),
                kwargs={"batch": args.batch, "conns": args.concurrency},
            )
            posting.start()
            time.sleep(args.reference_seconds + 5)  # 5 s of warm-up, then the reference window
            purged = json.loads(manage(db.env, "shell", "-c", PURGE).strip().splitlines()[-1])
            time.sleep(5)
            stop.set()
            posting.join()
        left = ReviewItem.objects.filter(source="old").exclude(text="").count()
        seconds = purged["end"] - purged["start"]
        purge_rate = purged["items"] / seconds
        r = benchlib.Report(f"Retention purge of {args.items:,} decided items, intake running")
        r.stamp(db.conninfo, f"load average {benchlib.loadavg()} at the end (machine shared with other sessions)")
        copy_rate = f"{args.items / copied:,.0f} items/s ({args.items:,} in {copied:.0f} s)"
        r.add("reference: COPY of the same rows", copy_rate)
        r.add(
            "**purge**",
            f"{purged['items']:,.0f} items in {seconds:.1f} s = **{purge_rate:,.0f} items/s** "
            f"({purged['batches']:.0f} committed batches); content left: {left}",
        )
        r.add("target", f"≥ {args.target:,.0f} items/s: {'met' if purge_rate >= args.target else 'MISSED'}")
        start = purged["start"] - args.reference_seconds
        r.add(
            "reference: intake alone, just before", rate(calls, start, purged["start"]) + f", {args.concurrency} conns"
        )
        r.add("**intake during the purge**", rate(calls, purged["start"], purged["end"]))
        return r.finish(RESULT, write=not args.no_write, ok=left == 0, failure="content left after the purge")


if __name__ == "__main__":
    raise SystemExit(main())
