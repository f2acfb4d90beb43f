"""Scale-out: the multi-process shape of docs/deploy.md, exercised. Two web processes behind one address, two
triage workers with different hostnames, one worker for the other queues and one beat; no item triaged twice.

Two gunicorn instances (one sync worker each, on two ports) sit behind a round-robin TCP proxy
(tests/support/proxy.py), the one address the items are posted to over HTTP by several clients at once. Two
``celery worker -Q triage`` processes with distinct ``-n`` names consume the triage queue of one private Redis;
a third consumes ``default,webhooks,analytics``; ``celery beat`` sends the periodic jobs. The un-triaged sweeper
runs every few seconds and re-sends items still waiting after a few seconds, so the same item may sit in two
messages at once and be picked by both workers: the triage task must make that harmless. The run then reads the
database (one live routing decision and one 'queued'/'auto_actioned' event per item, no duplicate scores, no dead
letters), the logs (both web processes answered intake calls, both triage workers ran triage tasks, beat's jobs
ran) and ``/metrics`` through the one address (the figures beat's job keeps count every item once).

    .venv/bin/python -m tests.drills.scale_out              # 4,000 items in calls of 50, 4 clients
    .venv/bin/python -m tests.drills.scale_out --items 20000
"""

from __future__ import annotations

import concurrent.futures
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from tests.drills.harness import (
    RESULTS,
    SOURCE,
    Drill,
    DrillResult,
    Post,
    cli,
    drill_world,
    item_bodies,
    post_items,
    triage_read,
    triage_report,
    untriaged_count,
)
from tests.support.processes import Beat, Gunicorn, Process, Worker
from tests.support.proxy import RoundRobinProxy
from tests.support.servers import poll_until

NAME = "scale_out"
TITLE = "two web processes behind one address, two triage workers, one beat"
METRICS_TOKEN = "scale-out-scrape-token"
TRIAGE_DONE = re.compile(rb"Task routing\.tasks\.items_triage_task\[[^\]]+\] succeeded")
SWEEP_RECEIVED = re.compile(rb"Task routing\.tasks\.items_sweep_untriaged_task\[[^\]]+\] received")
METRICS_DONE = re.compile(rb"Task analytics\.tasks\.metrics_refresh_task\[[^\]]+\] succeeded")
INTAKE_ANSWERED = re.compile(rb'"POST /api/v1/items HTTP/1\.1" 201 ')


def log_count(log: Path, pattern: re.Pattern[bytes]) -> int:
    return len(pattern.findall(log.read_bytes())) if log.exists() else 0


def start_together(processes: list[Process]) -> None:
    """Start the processes at once (each boots Django: one after the other would take four times as long);
    the first failure is raised once all have tried."""
    with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
        for future in [pool.submit(p.start) for p in processes]:
            future.result()


def post_all(base: str, key: str, *, items: int, batch: int, clients: int) -> list[Post]:
    """``items`` new items in calls of ``batch``, from ``clients`` threads at once, each its own HTTP client."""
    starts = list(range(0, items, batch))
    posts: list[Post] = []
    lock = threading.Lock()

    def client(share: list[int]) -> None:
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {key}"}) as http:
            for start in share:
                post = post_items(http, base, item_bodies(start, min(batch, items - start), run="so"))
                with lock:
                    posts.append(post)

    threads = [threading.Thread(target=client, args=(starts[i::clients],)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return posts


def metrics_scrape(base: str) -> dict[str, float]:
    """``/metrics`` through the one address: the samples of the drill's source, summed over their other labels."""
    response = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30)
    response.raise_for_status()
    totals: Counter[str] = Counter()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.labels.get("source") == SOURCE and sample.name.endswith("_total"):
                totals[sample.name] += sample.value
    return dict(totals)


HOT_TABLES = ("queues_reviewitem", "queues_itemevent", "routing_classifierscore", "routing_routingdecision")


def disk_per_item(conninfo: str) -> dict[str, int]:
    """What the triage of one item costs on disk, table by table (``docs/deploy.md`` sizes PostgreSQL from it):
    each table's total size over the items stored, compacted first (``VACUUM FULL``: the scratch database is
    dropped after) so the dead row versions triage's UPDATE leaves, which a running system reuses, do not count."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM queues_reviewitem").fetchone()
        items = int(row[0]) if row else 0
        sizes: dict[str, int] = {}
        for table in HOT_TABLES:
            conn.execute(sql.SQL("VACUUM FULL {}").format(sql.Identifier(table)))
            size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()
            sizes[table] = round(int(size[0]) / items) if size and items else 0
        sizes["all four"] = sum(sizes.values())
        return sizes


def run(
    *,
    items: int = 4000,
    batch: int = 50,
    clients: int = 4,
    sweep_after: int = 5,
    sweep_every: int = 3,
    metrics_every: int = 3,
    quick: bool = False,
    keep: bool = False,
    write: bool = True,
) -> DrillResult:
    del quick  # one size: a few thousand items is already the CI size
    drill = Drill(NAME, TITLE)
    settings = {
        "TRIAGE_SWEEP_AFTER_SECONDS": str(sweep_after),
        "TRIAGE_SWEEP_EVERY_SECONDS": str(sweep_every),
        "METRICS_REFRESH_EVERY_SECONDS": str(metrics_every),
        "METRICS_SETTLE_SECONDS": "600",
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    with drill_world(drill, settings, keep=keep) as (env, conninfo, _broker, world):
        webs = [Gunicorn(env, RESULTS / f"drill-{NAME}-web-{i}.log", workers=1) for i in range(2)]
        for web in webs:  # the access log is how each web process shows what it answered
            web.argv += ["--access-logfile", "-"]
        triage = [
            Worker(env, RESULTS / f"drill-{NAME}-triage-{n}.log", queues="triage", name=f"triage-{n}") for n in "ab"
        ]
        misc = Worker(env, RESULTS / f"drill-{NAME}-misc.log", queues="default,webhooks,analytics", name="misc")
        beat = Beat(env, RESULTS / f"drill-{NAME}-beat.log")
        processes: list[Process] = [*webs, *triage, misc, beat]
        hostnames = [w.argv[w.argv.index("-n") + 1].replace("%h", socket.gethostname()) for w in triage]
        proxy = RoundRobinProxy([("127.0.0.1", w.port) for w in webs])
        try:
            drill.log("starting 2 gunicorn, 3 celery workers and beat …")
            start_together(processes)
            proxy.start()
            t0 = time.monotonic()
            drill.log(f"posting {items} items in calls of {batch} from {clients} clients to {proxy.base} …")
            posts = post_all(proxy.base, world.key, items=items, batch=batch, clients=clients)
            posted_in = time.monotonic() - t0
            accepted = sum(p.items for p in posts if p.status == 201)
            drill.log(f"{accepted} accepted in {posted_in:.1f} s; waiting for triage …")
            triaged = poll_until(lambda: untriaged_count(conninfo) == 0, timeout=240)
            triaged_in = time.monotonic() - t0
            # The metrics job runs every few seconds: wait for a run that saw every item triaged.
            scraped: dict[str, float] = {}

            def counted() -> bool:
                scraped.update(metrics_scrape(proxy.base))
                return scraped.get("ops_items_triaged_total") == accepted

            metrics_caught_up = triaged and poll_until(counted, timeout=60, interval=1)
            alive = all(p.proc is not None and p.proc.poll() is None for p in processes)
        finally:
            proxy.stop()
            for process in reversed(processes):
                process.stop()
        outcome = triage_read(conninfo)
        sizes = disk_per_item(conninfo)

        statuses = Counter(p.status for p in posts)
        answered = [log_count(w.log, INTAKE_ANSWERED) for w in webs]
        triage_tasks = [log_count(w.log, TRIAGE_DONE) for w in triage]
        sweeps = sum(log_count(w.log, SWEEP_RECEIVED) for w in triage)
        metrics_runs = log_count(misc.log, METRICS_DONE)
        drill.figure("processes", "2 gunicorn (1 sync worker each) behind a round-robin proxy, 3 workers, 1 beat")
        drill.figure(f"items posted (HTTP, calls of {batch}, {clients} clients at once)", sum(p.items for p in posts))
        drill.figure("intake answers", {str(k): v for k, v in sorted(statuses.items())})
        drill.figure("intake calls answered 201, by web process (access logs)", answered)
        drill.figure("connections answered, by web process (proxy)", proxy.answered)
        drill.figure("triage workers", hostnames)
        drill.figure("triage tasks succeeded, by worker", triage_tasks)
        drill.figure("un-triaged sweeps run (sent by beat)", sweeps)
        drill.figure("metrics refreshes run (sent by beat)", metrics_runs)
        drill.figure("/metrics through the one address", scraped)
        drill.figure("on-disk bytes per item stored (table + indexes + TOAST, compacted by VACUUM FULL)", sizes)
        drill.figure("posted in", f"{posted_in:.1f} s")
        drill.figure("first post to every item triaged", f"{triaged_in:.1f} s" if triaged else "not within the wait")

        drill.check("every intake call answered 201", set(statuses) == {201})
        drill.check(
            "both web processes answered intake calls, and between them all of them",
            min(answered) > 0 and sum(answered) == len(posts),
        )
        drill.check("the two triage workers have different hostnames", len(set(hostnames)) == 2)
        drill.check("both triage workers ran triage tasks", min(triage_tasks) > 0)
        drill.check("beat sent the un-triaged sweeper to the triage workers", sweeps > 0)
        drill.check("beat sent the metrics job and the other worker ran it", metrics_runs > 0)
        drill.check(
            "/metrics through the one address counts every item received and triaged once",
            bool(metrics_caught_up)
            and scraped.get("ops_items_received_total") == accepted
            and scraped.get("ops_items_triaged_total") == accepted,
        )
        drill.check("every process stayed up", alive)
        triage_report(drill, outcome, accepted=accepted)
    return drill.finish(write=write)


def arguments(parser: Any) -> None:
    parser.add_argument("--items", type=int, help="items posted (default 4,000)")
    parser.add_argument("--batch", type=int, help="items per intake call")
    parser.add_argument("--clients", type=int, help="HTTP clients posting at once")
    # The drill list (tests/drills/all.py, bench/report.py) runs every drill with --quick: one size here.
    parser.add_argument("--quick", action="store_true", default=None, help="accepted; the drill has one size")
    parser.add_argument("--keep", action="store_true", default=None, help="keep the scratch database")


if __name__ == "__main__":
    raise SystemExit(cli(run, __doc__ or NAME, arguments))
