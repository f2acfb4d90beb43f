"""/metrics at scale: scrapes over HTTP (gunicorn, 2 workers) with N waiting items, next to the same figures
computed by direct SQL on each scrape (what an exporter without the periodic job would run), in the same run."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import benchlib
import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from tests.support.processes import Gunicorn, running

RESULT = benchlib.RESULTS / "metrics.md"
TOKEN = "bench-metrics-token"  # noqa: S105 - a scratch server on the loopback
# The figures the periodic job keeps, as one exporter would compute them on every scrape.
DIRECT = [
    "SELECT queue_id, state, count(*), min(received_at) FROM {t} WHERE state IN ('queued', 'claimed') GROUP BY 1, 2",
    "SELECT count(*), min(received_at) FROM {t} WHERE state = 'received'",
    "SELECT source, count(*) FROM {t} GROUP BY source",
]


def main() -> int:
    p = benchlib.parser(__doc__, "ops_bench_metrics")
    p.add_argument("--waiting", type=int, default=1_000_000)
    p.add_argument("--queues", type=int, default=8)
    p.add_argument("--scrapes", type=int, default=200)
    p.add_argument("--direct-runs", type=int, default=20)
    p.add_argument("--target-p95-ms", type=float, default=50.0)
    args = p.parse_args()
    env = {"ALLOWED_HOSTS": "127.0.0.1", "CONN_MAX_AGE": "600", "PERIODIC_IN_PROCESS": "false", "LOG_LEVEL": "WARNING"}
    with benchlib.scratch(args, METRICS_TOKEN=TOKEN, **env) as db:
        from analytics.exporter.refresh import metrics_snapshot_refresh
        from queues.models import Queue, ReviewItem

        items = benchlib.table(ReviewItem)
        queues = [Queue.objects.create(slug=f"bench-{n}", name=f"Bench {n}") for n in range(args.queues)]
        rng, now, t0 = random.Random(7), datetime.now(UTC), time.perf_counter()
        with psycopg.connect(db.conninfo) as conn:
            fixed = ("content", "a post", "[]", "", "post", "en", "{}", "[]", 0, False)
            rows = []
            for n in range(args.waiting):  # 1% still un-triaged, the rest queued and due a day after receipt
                at = now - timedelta(seconds=rng.uniform(60, 2 * 86400))
                state, queue, t = ("received", None, None) if n % 100 == 0 else ("queued", rng.choice(queues).pk, at)
                due = at + timedelta(hours=24) if queue else None
                rows.append((f"src-{n % 5}", f"w-{n:08d}", *fixed, state, queue, 0, "[]", 1, at, t, t, due))
            benchlib.copy_rows(conn, ReviewItem, benchlib.QUEUED_FIELDS, rows)
        seeded = time.perf_counter() - t0
        with psycopg.connect(db.conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(items)))
            conn.execute("CHECKPOINT")
        runs = [benchlib.timed(metrics_snapshot_refresh)[0] * 1000 for _ in range(6)]  # the first counts all history
        first, steady = runs[0] / 1000, runs[1:]
        queries = [sql.SQL(statement).format(t=sql.Identifier(items)) for statement in DIRECT]
        with psycopg.connect(db.conninfo) as conn:
            direct = [
                benchlib.timed(lambda: [conn.execute(q).fetchall() for q in queries])[0]
                for _ in range(args.direct_runs)
            ]

        (log := benchlib.RESULTS / "logs" / "metrics-gunicorn.log").parent.mkdir(parents=True, exist_ok=True)
        web = Gunicorn(db.env, log, workers=2)
        scrapes: list[float] = []
        health: list[float] = []
        with running(web), httpx.Client(base_url=web.base, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            for n in range(args.scrapes + 10):  # the first ten warm each worker's connection
                for path, times in (("/healthz", health), ("/metrics", scrapes)):  # /metrics last: `response`
                    t0 = time.perf_counter()
                    response = http.get(path)
                    (times if n >= 10 else []).append((time.perf_counter() - t0) * 1000)
                    if response.status_code != 200:
                        raise SystemExit(f"{path} answered {response.status_code}")
        depth = sum(
            s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
            if s.name == "ops_queue_depth" and s.labels["state"] == "queued"
        )
        queued = ReviewItem.objects.filter(state="queued").count()
        p95 = benchlib.percentile(scrapes, 0.95)
        r = benchlib.Report(f"/metrics with {args.waiting:,} items waiting")
        r.stamp(db.conninfo, f"load average {benchlib.loadavg()} at the end")
        r.add("seeding (COPY)", f"{args.waiting:,} items in {seeded:.0f} s, {args.queues} queues, 1% un-triaged")
        r.add(
            "**GET /metrics over HTTP**",
            benchlib.quantiles(scrapes, (0.5, 0.95, 0.99), unit=" ms")
            + f" ({len(scrapes)} scrapes, {len(response.content):,} bytes)",
        )
        r.add("reference: GET /healthz, same stack", benchlib.quantiles(health, (0.5, 0.95, 0.99), unit=" ms"))
        r.add("target", f"p95 ≤ {args.target_p95_ms:g} ms: {'met' if p95 <= args.target_p95_ms else 'MISSED'}")
        direct_q = benchlib.quantiles([d * 1000 for d in direct], (0.5, 0.95), unit=" ms")
        r.add("reference: the figures by direct SQL", f"{direct_q} ({args.direct_runs} runs of {len(DIRECT)} queries)")
        later = benchlib.quantiles(steady, [0.5, 1.0], ".0f", " ms")
        r.add("the periodic job (refresh)", f"first run {first * 1000:.0f} ms (counts all history once), then {later}")
        r.add("queued items scraped / in the table", f"{depth:,.0f} / {queued:,}")
        return r.finish(RESULT, write=not args.no_write, ok=depth == queued, failure="scraped depth is not the table's")


if __name__ == "__main__":
    raise SystemExit(main())
