"""Drill redis_outage: stop Redis for 30 s mid-run; intake keeps answering 201, everything is triaged afterwards.

A private ``redis-server`` is the broker (db 0) and the cache (db 1, where the per-client rate limit lives, as
the README recommends for more than one web process). gunicorn, one ``celery worker`` and ``celery beat`` run
on it while items are posted at a steady pace. Mid-run the drill stops Redis for 30 s and starts it again
empty (no persistence: every message that was waiting in it is gone). Intake must keep storing items and
answering 201 (the triage hand-off gives up quickly and leaves the items for the sweeper); after Redis
returns, the worker and beat reconnect by themselves and the un-triaged sweeper re-sends every item still
'received', so each item is triaged exactly once.

    .venv/bin/python -m tests.drills.redis_outage            # a 30 s outage between 15 s and 15 s of normal load
    .venv/bin/python -m tests.drills.redis_outage --quick    # the CI size: same outage, lighter load
"""

from __future__ import annotations

import time
from typing import Any

from tests.drills.harness import (
    RESULTS,
    Drill,
    DrillResult,
    Post,
    Poster,
    cli,
    drill_world,
    percentile,
    triage_read,
    triage_report,
    untriaged_count,
)
from tests.support.processes import Beat, Gunicorn, Worker, running
from tests.support.servers import poll_until

NAME = "redis_outage"
TITLE = "Redis down for 30 s mid-run"


def latency(posts: list[Post]) -> str:
    seconds = [p.seconds * 1000 for p in posts]
    return f"p50 {percentile(seconds, 0.5):.0f} ms, p99 {percentile(seconds, 0.99):.0f} ms" if seconds else "none"


def run(
    *,
    outage: float = 30.0,
    before: float = 15.0,
    after: float = 15.0,
    rate: float = 40.0,
    batch: int = 10,
    sweep_after: int = 10,
    sweep_every: int = 5,
    quick: bool = False,
    keep: bool = False,
    write: bool = True,
) -> DrillResult:
    if quick:
        before, after, rate = min(before, 10.0), min(after, 10.0), min(rate, 20.0)
    drill = Drill(NAME, TITLE)
    sweeper = {"TRIAGE_SWEEP_AFTER_SECONDS": str(sweep_after), "TRIAGE_SWEEP_EVERY_SECONDS": str(sweep_every)}
    with drill_world(drill, sweeper, keep=keep) as (env, conninfo, broker, world):
        web = Gunicorn(env, RESULTS / f"drill-{NAME}-gunicorn.log", workers=2)
        beat = Beat(env, RESULTS / f"drill-{NAME}-beat.log")
        worker = Worker(env, RESULTS / f"drill-{NAME}-worker.log", name="drill-redis")
        with running(web, beat, worker):
            pids = (web.pid, beat.pid, worker.pid)
            t0 = time.monotonic()
            poster = Poster(web.base, world.key, batch=batch, per_second=rate, run="ro").start()
            time.sleep(before)
            drill.log(f"stopping Redis for {outage:.0f} s …")
            down_at = time.monotonic()
            broker.stop()
            time.sleep(outage)
            broker.start()
            up_at = time.monotonic()
            drill.log("Redis is back (empty); posting on …")
            time.sleep(after)
            poster.stop()
            accepted = sum(p.items for p in poster.posts if p.status == 201)
            finished = poll_until(lambda: untriaged_count(conninfo) == 0, timeout=sweep_after + 10 * sweep_every + 180)
            recovery = time.monotonic() - up_at
            alive = all(p.proc is not None and p.proc.poll() is None for p in (web, beat, worker))
            same = pids == (web.pid, beat.pid, worker.pid)
        triage = triage_read(conninfo)

        phases = {
            "before": [p for p in poster.posts if p.at < down_at],
            "during": [p for p in poster.posts if down_at <= p.at < up_at],
            "after": [p for p in poster.posts if p.at >= up_at],
        }
        drill.figure("outage", f"{up_at - down_at:.1f} s (Redis stopped, then started empty)")
        for phase, posts in phases.items():
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(_count(posts).items())) or "none"
            drill.figure(f"intake calls {phase} the outage", f"{len(posts)} ({statuses}), {latency(posts)}")
        drill.figure("items accepted during the outage", sum(p.items for p in phases["during"] if p.status == 201))
        drill.figure("items posted in all", sum(p.items for p in poster.posts))
        drill.figure("Redis back to every item triaged", f"{recovery:.1f} s" if finished else "not within the wait")
        kept = "same processes throughout" if same and alive else "restarted or died"
        drill.figure("worker, beat and gunicorn", kept)
        drill.figure("run length", f"{time.monotonic() - t0:.0f} s")

        drill.check("every intake call answered 201, during the outage too", set(_count(poster.posts)) == {201})
        drill.check("intake calls were made during the outage", bool(phases["during"]))
        drill.check("worker, beat and gunicorn reconnected by themselves (no restart)", same and alive)
        drill.check("the sweeper re-sent items left un-triaged by the outage", triage.resent_by_sweeper > 0)
        triage_report(drill, triage, accepted=accepted)
    return drill.finish(write=write)


def _count(posts: list[Post]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for p in posts:
        counts[p.status] = counts.get(p.status, 0) + 1
    return counts


def arguments(parser: Any) -> None:
    parser.add_argument("--outage", type=float, help="seconds Redis stays down (default 30)")
    parser.add_argument("--rate", type=float, help="items per second posted")
    parser.add_argument("--quick", action="store_true", default=None, help="the CI size")
    parser.add_argument("--keep", action="store_true", default=None, help="keep the scratch database")


if __name__ == "__main__":
    raise SystemExit(cli(run, __doc__ or NAME, arguments))
