"""Drill openai_faults: the OpenAI API fails 30% of calls; every item is scored or falls back, the breaker
opens and closes.

``tests/support/fake_openai.py`` (a local server speaking the OpenAI API, so the real ``openai`` client and its
retries run) answers 30% of calls with a 429, a 500 or a response slower than the client's timeout. Items are
posted through the intake API to a real ``celery worker`` whose default chain is ``openai_moderation`` then
the local model. A third of the way in, the provider fails every call for a few seconds (an outage inside the
noise), which must open the circuit breaker (its state is shared through Redis); trial calls after each
cool-down close it again once the provider answers. The drill reads the outcome from the fake's request log
and the database: calls and failures by kind, breaker openings and closings, items per backend.

    .venv/bin/python -m tests.drills.openai_faults             # 1,200 items
    .venv/bin/python -m tests.drills.openai_faults --quick     # the CI size: 400 items
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import psycopg
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
from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import Gunicorn, Worker, running
from tests.support.servers import poll_until

NAME = "openai_faults"
TITLE = "the OpenAI API failing 30% of calls"
BACKEND = "openai_moderation"


def breaker_history(conninfo: str) -> tuple[Counter[str], int, int, str]:
    """Call outcomes of the moderation backend, breaker openings (the incident's occurrences), closings (a
    successful call after calls were skipped as circuit-open) and the outcome of the last call."""
    with psycopg.connect(conninfo) as conn:
        outcomes = [
            row[0]
            for row in conn.execute(
                "SELECT outcome FROM routing_classifiercall WHERE backend = %s ORDER BY id", (BACKEND,)
            ).fetchall()
        ]
        row = conn.execute(
            "SELECT coalesce(sum(occurrences), 0) FROM routing_scoringincident WHERE kind = 'circuit_open' "
            "AND backend = %s",
            (BACKEND,),
        ).fetchone()
    opens = int(row[0]) if row else 0
    closes, was_open = 0, False
    for outcome in outcomes:
        if outcome == "circuit_open":
            was_open = True
        elif outcome == "ok" and was_open:
            closes, was_open = closes + 1, False
    return Counter(outcomes), opens, closes, outcomes[-1] if outcomes else ""


def run(
    *,
    items: int = 1200,
    rate: float = 20.0,
    batch: int = 10,
    failure_rate: float = 0.3,
    outage: float = 8.0,
    cooldown: int = 3,
    seed: int = 30,
    quick: bool = False,
    keep: bool = False,
    write: bool = True,
) -> DrillResult:
    if quick:
        items = min(items, 400)
    drill = Drill(NAME, TITLE)
    provider = {
        "OPENAI_API_KEY": "sk-drill",
        "OPENAI_TIMEOUT_SECONDS": "1",
        "OPENAI_MAX_RETRIES": "1",
        "OPENAI_MODERATION_BATCH": "5",
        "SCORING_DEFAULT_CHAIN": f"{BACKEND},local",
        "SCORING_BREAKER_FAILURES": "5",
        "SCORING_BREAKER_COOLDOWN_SECONDS": str(cooldown),
    }
    with (
        FakeOpenAI(seed=seed, failure_rate=failure_rate, slow_seconds=2.5, retry_after=0.1) as fake,
        drill_world(drill, provider | {"OPENAI_BASE_URL": fake.base_url}, keep=keep) as (env, conninfo, broker, world),
    ):
        web = Gunicorn(env, RESULTS / f"drill-{NAME}-gunicorn.log", workers=2)
        worker = Worker(env, RESULTS / f"drill-{NAME}-worker.log", name="drill-openai")
        with running(web, worker):
            poster = Poster(web.base, world.key, batch=batch, per_second=rate, run="oa", limit=items).start()
            time.sleep(items / rate / 3)
            drill.log(f"the provider fails every call for {outage:.0f} s …")
            fake.failure_rate = 1.0
            time.sleep(outage)
            fake.failure_rate = failure_rate
            poster.wait()
            accepted = sum(p.items for p in poster.posts if p.status == 201)
            drill.log(f"{accepted} items accepted; waiting for triage …")
            finished = poll_until(lambda: untriaged_count(conninfo) == 0, timeout=300)
        # The breaker's state is in the Django cache (Redis db 1): no "open until" key means closed.
        open_key = f":1:scoring:breaker:{BACKEND}:open_until"
        closed_at_end = not redis.Redis.from_url(broker.db(1)).exists(open_key)
        triage = triage_read(conninfo)
        outcomes, opens, closes, last = breaker_history(conninfo)
        calls = [r for r in fake.requests if r.path.endswith("/moderations")]
        faults = Counter(r.fault or "answered" for r in calls)

        by_backend = triage.items_by_backend
        openai_items = by_backend.get(BACKEND, 0)
        with psycopg.connect(conninfo) as conn:
            row = conn.execute(
                "SELECT count(*) FROM queues_reviewitem i WHERE source = 'drill' AND NOT EXISTS (SELECT 1 FROM "
                "routing_classifierscore s WHERE s.item_id = i.id AND s.backend IN (%s, 'local'))",
                (BACKEND,),
            ).fetchone()
            no_score = int(row[0]) if row else 0
            row = conn.execute(
                "SELECT count(DISTINCT item_id) FROM routing_classifierscore WHERE backend = 'local' AND item_id NOT "
                "IN (SELECT item_id FROM routing_classifierscore WHERE backend = %s)",
                (BACKEND,),
            ).fetchone()
            fallen_back = int(row[0]) if row else 0

        drill.figure(
            "provider",
            f"fake OpenAI failing {failure_rate:.0%} of calls (429 / 500 / slower than the "
            f"1 s timeout), and every call for {outage:.0f} s a third of the way in",
        )
        drill.figure("client", "openai client: 1 s timeout, 1 retry (backoff, Retry-After); moderation batches of 5")
        drill.figure("HTTP calls to /v1/moderations (retries included)", len(calls))
        drill.figure("calls by fault served", dict(sorted(faults.items())))
        drill.figure("fault rate served", f"{1 - faults.get('answered', 0) / max(1, len(calls)):.1%}")
        drill.figure("backend calls by outcome (after the client's retries)", dict(sorted(outcomes.items())))
        drill.figure("circuit breaker openings", opens)
        drill.figure("circuit breaker closings (trial call succeeded)", closes)
        drill.figure("breaker after the run", f"{'closed' if closed_at_end else 'open'} (last call: {last})")
        drill.figure(f"items scored by {BACKEND}", openai_items)
        drill.figure("items fallen back to the local model", fallen_back)
        drill.figure("items with no score (unscored, to people)", by_backend.get("unscored", 0))

        drill.check("every intake call answered 201", set(Counter(p.status for p in poster.posts)) == {201})
        drill.check("the fake served 429s, 500s and timeouts", {"429", "500", "slow"} <= set(faults))
        drill.check("every item scored by OpenAI or fallen back to the local model", no_score == 0 and finished)
        drill.check("both paths were taken (OpenAI scores and local fallbacks)", openai_items > 0 and fallen_back > 0)
        drill.check("the circuit breaker opened", opens >= 1 and outcomes.get("circuit_open", 0) > 0)
        drill.check("the circuit breaker closed again, and is closed at the end", closes >= 1 and closed_at_end)
        drill.check("the fake server raised no errors of its own", not fake.errors)
        triage_report(drill, triage, accepted=accepted)
    return drill.finish(write=write)


def arguments(parser: Any) -> None:
    parser.add_argument("--items", type=int)
    parser.add_argument("--rate", type=float, help="items per second posted")
    parser.add_argument("--failure-rate", type=float, help="share of calls the fake fails (default 0.3)")
    parser.add_argument("--quick", action="store_true", default=None, help="the CI size")
    parser.add_argument("--keep", action="store_true", default=None, help="keep the scratch database")


if __name__ == "__main__":
    raise SystemExit(cli(run, __doc__ or NAME, arguments))
