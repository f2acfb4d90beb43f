"""Drill worker_kill: SIGKILL a celery worker ten times during a triage run; nothing lost, nothing routed twice.

Items are posted through the intake API (gunicorn) at a steady pace to two real ``celery worker`` processes on a
private Redis, which score them with the local model and route them. Each kill waits until the victim holds a
task (``received`` in its log, not yet ``succeeded``), sends SIGKILL and starts the worker again. The batch it
held stays unacknowledged in Redis (``acks_late``) until the visibility timeout, so what brings those items back
is the real recovery path: ``celery beat`` running the un-triaged sweeper, which re-sends items still
'received' after ``TRIAGE_SWEEP_AFTER_SECONDS``. Triage tasks are idempotent, so a batch that ran twice changes
nothing. The drill then reads the database: every item queued or auto-actioned, one live routing decision and
one 'queued' event per item, no duplicate scores, no dead letters.

    .venv/bin/python -m tests.drills.worker_kill            # 10 kills, 60 items/s
    .venv/bin/python -m tests.drills.worker_kill --quick    # the CI size: 10 kills, 30 items/s
"""

from __future__ import annotations

import random
import re
import time
from typing import Any

import redis

from tests.drills.harness import (
    RESULTS,
    Drill,
    DrillResult,
    Poster,
    cli,
    drill_world,
    triage_read,
    triage_report,
    untriaged_count,
)
from tests.support.processes import Beat, Gunicorn, Worker, running
from tests.support.servers import poll_until

NAME = "worker_kill"
TITLE = "SIGKILL a celery worker ten times mid-triage"


def in_flight(worker: Worker, since: int) -> bool:
    """The worker's log since its last start shows a task received and not yet finished."""
    with worker.log.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    received = len(re.findall(r"Task routing\.tasks\.items_triage_task\[[^\]]+\] received", text))
    finished = len(re.findall(r"Task routing\.tasks\.items_triage_task\[[^\]]+\] (succeeded|raised|retry)", text))
    return received > finished


def run(
    *,
    kills: int = 10,
    workers: int = 2,
    rate: float = 60.0,
    batch: int = 20,
    sweep_after: int = 15,
    sweep_every: int = 5,
    seed: int = 8,
    quick: bool = False,
    keep: bool = False,
    write: bool = True,
) -> DrillResult:
    if quick:
        rate = min(rate, 30.0)
    drill = Drill(NAME, TITLE)
    rng = random.Random(seed)
    sweeper = {"TRIAGE_SWEEP_AFTER_SECONDS": str(sweep_after), "TRIAGE_SWEEP_EVERY_SECONDS": str(sweep_every)}
    with drill_world(drill, sweeper, keep=keep) as (env, conninfo, broker, world):
        web = Gunicorn(env, RESULTS / f"drill-{NAME}-gunicorn.log", workers=2)
        beat = Beat(env, RESULTS / f"drill-{NAME}-beat.log")
        pool = [Worker(env, RESULTS / f"drill-{NAME}-worker-{i}.log", name=f"drill-kill-{i}") for i in range(workers)]
        kill_log: list[dict[str, Any]] = []
        with running(web, beat, *pool):
            offsets = {id(w): w.log.stat().st_size for w in pool}
            poster = Poster(web.base, world.key, batch=batch, per_second=rate, run="wk").start()
            drill.log(f"posting {rate:.0f} items/s; killing workers {kills} times …")
            time.sleep(3)
            restart_seconds: list[float] = []
            for k in range(kills):
                victim = pool[k % len(pool)]
                time.sleep(rng.uniform(0.5, 2.5))
                since = offsets[id(victim)]
                busy = poll_until(lambda: in_flight(victim, since), timeout=10, interval=0.02)  # noqa: B023
                victim.kill()
                started = time.monotonic()
                victim.start()
                restart_seconds.append(time.monotonic() - started)
                offsets[id(victim)] = victim.log.stat().st_size
                kill_log.append({"worker": k % len(pool), "mid_task": busy})
                drill.log(f"kill {k + 1}: worker {k % len(pool)} {'mid-task' if busy else 'idle'}, restarted")
            last_kill = time.monotonic()
            poster.stop()
            accepted = sum(p.items for p in poster.posts if p.status == 201)
            drill.log(f"{accepted} items accepted; waiting for triage to finish (sweeper after {sweep_after} s) …")
            finished = poll_until(lambda: untriaged_count(conninfo) == 0, timeout=sweep_after + 10 * sweep_every + 240)
            recovery = time.monotonic() - last_kill
            unacked = redis.Redis.from_url(broker.url).hlen("unacked")
        triage = triage_read(conninfo)

        statuses = poster.statuses()
        drill.figure(f"items posted (HTTP, batches of {batch})", sum(p.items for p in poster.posts))
        drill.figure("intake answers", {str(k): v for k, v in sorted(statuses.items())})
        drill.figure("workers", f"{workers} x `celery worker --pool solo` (prefetch 1, acks_late)")
        drill.figure("SIGKILLs", len(kill_log))
        drill.figure("SIGKILLs that hit a task in flight", sum(1 for k in kill_log if k["mid_task"]))
        drill.figure("worker restart to ready, median", f"{sorted(restart_seconds)[len(restart_seconds) // 2]:.1f} s")
        drill.figure("sweeper", f"items 'received' for over {sweep_after} s re-sent every {sweep_every} s by beat")
        drill.figure("last kill to every item triaged", f"{recovery:.1f} s" if finished else "not within the wait")
        drill.figure("messages still unacked in Redis (redelivered after the visibility timeout, a no-op)", unacked)

        drill.check("every intake call answered 201", set(statuses) == {201})
        drill.check(f"{kills} SIGKILLs were sent", len(kill_log) == kills)
        drill.check("at least one SIGKILL hit a task in flight", any(k["mid_task"] for k in kill_log))
        triage_report(drill, triage, accepted=accepted)
    return drill.finish(write=write)


def arguments(parser: Any) -> None:
    parser.add_argument("--kills", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--rate", type=float, help="items per second posted")
    parser.add_argument("--batch", type=int, help="items per intake call")
    parser.add_argument("--sweep-after", type=int, help="TRIAGE_SWEEP_AFTER_SECONDS for the run")
    parser.add_argument("--quick", action="store_true", default=None, help="the CI size")
    parser.add_argument("--keep", action="store_true", default=None, help="keep the scratch database")


if __name__ == "__main__":
    raise SystemExit(cli(run, __doc__ or NAME, arguments))
