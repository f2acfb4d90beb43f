"""Accounts and investigation at scale (issue 20): ``--items`` items (10,000,000 by default) of 20 words each over
``--accounts`` accounts (1,000,000), with decisions, strikes, actions and history, seeded by COPY. Measures, p50 /
p95 over many accounts and queries: the account page (``account_page``, what /accounts/<pk>/ shows), an
account-scoped search (``items_search`` with the author and a word), a full-text search over all item text (words
of every frequency, two-word queries, a phrase, beside the raw SQL of the same query: the reference) and triage
(scoring, routing, writes: ``items_triage``) CPU per 1,000 items with the account features rules read and without,
in turns. Targets: pages and account searches p95 <= 200 ms, full text p95 <= 500 ms, strikes <= +10% triage CPU.
Invalid run (exit 1): the full-text search and its raw SQL return different ids.

    .venv/bin/python bench/accounts.py --keep --seed-only      # seed once (about an hour at 10M), keep the database
    .venv/bin/python bench/accounts.py --reuse                 # measure on it, again and again
"""

from __future__ import annotations

import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import benchlib
import numpy as np
import psycopg
from benchlib import RESULTS, Report, copy_rows, intake_row, percentile

PAGE_MS, FULL_TEXT_MS, TRIAGE_ADDED = 200.0, 500.0, 0.10
VOCABULARY = 50_000  # word ranks drawn log-uniformly: rank r about as often as 1/r (Zipf-like)
RANKS = [1, 10, 100, 1_000, 10_000, 45_000]  # single-word queries, common to rare
CHUNK = 200_000
BATCH = 1_000  # items per triage round
DECIDED_EVERY, VIOLATION_EVERY, ACTION_EVERY = 10, 20, 100  # items with a decision, a violation; accounts actioned
RAW = """SELECT i.id FROM queues_reviewitem i JOIN queues_itemsearchtext s ON s.item_id = i.id
WHERE s.vector @@ websearch_to_tsquery('simple'::regconfig, %s)
ORDER BY i.id DESC LIMIT 51"""
# The indexes dropped for the load and built after it (every one but the primary keys and unique constraints).
SEEDED_TABLES = [
    "queues_reviewitem",
    "queues_itemsearchtext",
    "queues_decision",
    "queues_strike",
    "queues_accountevent",
]
INDEXES = """SELECT indexname, indexdef FROM pg_indexes i WHERE tablename = ANY(%s)
AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.indexname))::regclass)"""


def spread(values: list[float]) -> str:
    return f"{percentile(values, 0.5):.1f} / {percentile(values, 0.95):.1f}"


def word(rank: int) -> str:  # a made-up word per rank: its digits in base 70 as syllables
    syllable = "bdfgklmnprstvz"[rank % 14] + "aeiou"[rank // 14 % 5]
    return syllable + (word(rank // 70) if rank >= 70 else "")


def author_of(rng: np.random.Generator, n: int, accounts: int) -> np.ndarray:
    """Accounts for ``n`` items, skewed: account a gets about 1 / sqrt(a) of them (the busiest, 0: about
    sqrt(items) items; the median account: a handful)."""
    return (rng.random(n) ** 2 * accounts).astype(np.int64)


def seed(conninfo: str, items: int, accounts: int, user_id: int, policy_id: int) -> dict[str, float]:
    """Accounts, items (ids 1..items), a final decision on every DECIDED_EVERY-th item (a violation and a strike on
    every VIOLATION_EVERY-th), an action in force on every ACTION_EVERY-th account, their history; by COPY with the
    tables' indexes dropped, then built."""
    from queues.models import Account, AccountAction, AccountEvent, Decision, ReviewItem, Strike

    rng = np.random.default_rng(0)
    lexicon = [word(r) for r in range(VOCABULARY + 1)]
    start = datetime.now(UTC) - timedelta(seconds=items)
    took: dict[str, float] = {}
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        indexes = conn.execute(INDEXES, [SEEDED_TABLES]).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        t0 = time.perf_counter()
        refs = [f"u{a}" for a in range(accounts)]
        copy_rows(
            conn,
            Account,
            ["id", "source", "ref", "first_seen_at", "external_created_at", "status"],
            (
                (a + 1, "bench", refs[a], start, start - timedelta(days=a % 1000), "suspended")
                if a % ACTION_EVERY == 0
                else (a + 1, "bench", refs[a], start, start - timedelta(days=a % 1000), "active")
                for a in range(accounts)
            ),
        )
        copy_rows(
            conn,
            AccountAction,
            ["account_id", "kind", "origin", "reason", "state", "requested_at", "effective_at"],
            ((a + 1, "suspend", "bulk", "bench", "in_force", start, start) for a in range(0, accounts, ACTION_EVERY)),
        )
        took["accounts"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for first in range(0, items, CHUNK):
            n = min(CHUNK, items - first)
            ranks = np.exp(rng.random((n, 20)) * np.log(VOCABULARY)).astype(np.int64)
            authors = author_of(rng, n, accounts)
            rows = []
            for j in range(n):
                i = first + j + 1
                state = "decided" if i % DECIDED_EVERY == 0 else "auto_actioned"
                item = {"external_id": f"e{i}", "text": " ".join(lexicon[r] for r in ranks[j])}
                item |= {"author_ref": refs[authors[j]], "state": state}
                rows.append((i, *intake_row(item, "bench", start + timedelta(seconds=i))))
            copy_rows(conn, ReviewItem, ["id", *benchlib.INTAKE_FIELDS], rows)
            decided = [(i, refs[authors[i - first - 1]]) for i in range(first + 1, first + n + 1) if i % 10 == 0]
            copy_rows(
                conn,
                Decision,
                ["id", "item_id", "reviewer_id", "policy_id", "is_violation", "decided_at"],
                (
                    (i, i, user_id, policy_id, i % VIOLATION_EVERY == 0, start + timedelta(seconds=i + 3600))
                    for i, _ in decided
                ),
            )
            struck = [(i, int(ref[1:]) + 1) for i, ref in decided if i % VIOLATION_EVERY == 0]
            copy_rows(
                conn,
                Strike,
                ["account_id", "decision_id", "policy_id", "family", "weight", "issued_at", "expires_at"],
                (
                    (a, i, policy_id, "spam", 1, start + timedelta(seconds=i), start + timedelta(seconds=i, days=90))
                    for i, a in struck
                ),
            )
            copy_rows(
                conn,
                AccountEvent,
                ["account_id", "at", "actor_label", "event", "data"],
                (
                    (a, start + timedelta(seconds=i), "bench", "strike_added", json.dumps({"decision": i}))
                    for i, a in struck
                ),
            )
            conn.commit()
            print(f"  {first + n:,} items", flush=True)
        took["items"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for table in ["queues_account", "queues_reviewitem", "queues_decision"]:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        for name, definition in indexes:
            print(f"  building {name} …", flush=True)
            conn.execute(definition)
            conn.commit()
        took["indexes"] = time.perf_counter() - t0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in [*SEEDED_TABLES, "queues_account", "queues_accountaction"]:
            conn.execute(f"VACUUM (ANALYZE) {table}")  # as autovacuum would after a bulk load
    return took


def main() -> int:
    parser = benchlib.parser(__doc__, "bench_accounts")
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per full-text query (after a warm-up)")
    parser.add_argument("--samples", type=int, default=200, help="accounts timed for the page and scoped search")
    parser.add_argument("--rounds", type=int, default=6, help="triage batches of 1,000 with and without each")
    parser.add_argument("--seed-only", action="store_true", help="seed and stop (with --keep: for --reuse)")
    parser.add_argument("--reuse", action="store_true", help="measure on the kept, seeded database")
    parser.add_argument("--parts", default="pages,fulltext,triage", help="what to measure (comma-separated)")
    args = parser.parse_args()
    with benchlib.scratch(
        args, reuse=args.reuse, CELERY_BROKER_URL="", LOG_LEVEL="WARNING", ALLOWED_HOSTS="127.0.0.1"
    ) as db:
        if args.reuse:
            benchlib.manage(db.env, "migrate", "--noinput")
        benchlib.manage(db.env, "collectstatic", "--noinput")  # production settings: the manifest pages need
        return run(args, db)


def setup() -> tuple[Any, Any]:
    from ops_platform.core.models import Policy, Role, User
    from ops_platform.core.services import user_create

    user = User.objects.filter(username="olga").first()
    if user is None:
        user = user_create(actor="bench", username="olga", password="x" * 12, roles=[Role.OPS_MANAGER])
    policy, _ = Policy.objects.get_or_create(slug="spam", defaults={"name": "Spam", "guidelines": "-"})
    return user, policy


def run(args: Any, db: benchlib.Scratch) -> int:
    from queues.models import ReviewItem

    user, policy = setup()
    took: dict[str, float] = {}
    if not args.reuse or not ReviewItem.objects.filter(pk=args.items).exists():
        print(f"seeding {args.items:,} items over {args.accounts:,} accounts by COPY …", flush=True)
        took = seed(db.conninfo, args.items, args.accounts, user.pk, policy.pk)
        print("seeded in s: " + ", ".join(f"{k} {v:.0f}" for k, v in took.items()), flush=True)
    if args.seed_only:
        return 0
    report = Report(
        "Accounts and investigation at scale", intro=f"{args.items:,} items over {args.accounts:,} accounts."
    )
    report.stamp(db.conninfo, f"load {benchlib.loadavg()}")
    if took:
        report.add("seeding by COPY s: accounts / items / indexes", " / ".join(f"{v:.0f}" for v in took.values()))
    busy0, total0 = benchlib.machine_busy()
    pages, scoped, cpu = account_pages(args, user) if "pages" in args.parts else ([], [], [0.0, 0.0])
    for label, values, spent in (
        []
        if not pages
        else [
            ("account page (GET /accounts/<pk>/)", pages, cpu[0]),
            ("account-scoped search", scoped, cpu[1]),
        ]
    ):
        verdict = "met" if percentile(values, 0.95) <= PAGE_MS else "MISSED"
        report.add(f"{label}, {len(values)} accounts, ms p50 / p95", f"{spread(values)} (<= {PAGE_MS:g}: {verdict})")
        report.add("  its mean CPU ms (this process + its PostgreSQL backend)", f"{spent / len(values) * 1000:.1f}")
    ok, figures = full_text(args, user) if "fulltext" in args.parts else (True, [])
    for label, value in figures:
        report.add(label, value)
    for label, value in triage(args, db.env) if "triage" in args.parts else []:
        report.add(label, value)
    busy1, total1 = benchlib.machine_busy()
    report.add("machine CPU s busy while timing (all processes)", f"{busy1 - busy0:.0f} of {total1 - total0:.0f}")
    return report.finish(RESULTS / "accounts.md", write=not args.no_write, ok=ok, failure="full-text ids differ")


def account_pages(args: Any, user: Any) -> tuple[list[float], list[float], list[float]]:
    """Server time of the account page, and of an account-scoped search (the author and a word), for accounts
    drawn as items are (so busy ones more often) and the ten busiest."""
    from django.test import Client

    from investigation.selectors import SearchFilter
    from investigation.services import items_search

    rng = np.random.default_rng(1)
    accounts = [*range(10), *author_of(rng, args.samples - 10, args.accounts).tolist()]
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    pages, scoped, cpu = [], [], [0.0, 0.0]
    backend = backend_pid()
    client.get("/accounts/1/", secure=True)  # a warm-up: templates compiled, caches filled
    for n, a in enumerate(accounts):
        c0, t0 = time.process_time() + benchlib.process_cpu(backend), time.perf_counter()
        response = client.get(f"/accounts/{a + 1}/", secure=True)
        if response.status_code != 200:
            raise SystemExit(f"/accounts/{a + 1}/ answered {response.status_code}")
        pages.append((time.perf_counter() - t0) * 1000)
        c1 = time.process_time() + benchlib.process_cpu(backend)
        search = SearchFilter(source="bench", author=f"u{a}", text=word(RANKS[n % len(RANKS)]))
        scoped.append(benchlib.timed(lambda s=search: items_search(actor=user, search=s))[0] * 1000)
        c2 = time.process_time() + benchlib.process_cpu(backend)
        cpu[0], cpu[1] = cpu[0] + c1 - c0, cpu[1] + c2 - c1
    print(f"account page ms p50 / p95 {spread(pages)}, scoped search {spread(scoped)}, CPU s {cpu}", flush=True)
    return pages, scoped, cpu


def backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def full_text(args: Any, user: Any) -> tuple[bool, list[tuple[str, str]]]:
    """The full-text search over every item, per query, beside its raw SQL (in turns on one connection)."""
    from django.db import connection

    from investigation.selectors import SearchFilter
    from investigation.services import items_search
    from investigation.sql import walk_newest_first

    queries = [word(r) for r in RANKS] + [f"{word(3)} {word(300)}", f'"{word(2)} {word(5)}"', f"{word(20)} or mu"]
    service_ms: dict[str, list[float]] = {q: [] for q in queries}
    raw_ms: dict[str, list[float]] = {q: [] for q in queries}
    differ, how = [], {}
    for q in queries:  # the reference orders as the service chose to (sql.py): the id index, or GIN and sort
        raw_sql, how[q] = (RAW, "walk") if walk_newest_first(q) else (RAW.replace("id DESC", "id + 0 DESC"), "GIN")
        for run in range(args.repeat + 1):
            started = time.perf_counter()
            found = [r.item.pk for r in items_search(actor=user, search=SearchFilter(text=q)).rows]
            took = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            with connection.cursor() as cur:
                raw = [row[0] for row in cur.execute(raw_sql, [q]).fetchall()][:50]
            if run:
                service_ms[q].append(took)
                raw_ms[q].append((time.perf_counter() - started) * 1000)
            differ += [q] if found != raw else []
        print(f"{q!r} ({how[q]}): ms p50 / p95 {spread(service_ms[q])} (raw SQL {spread(raw_ms[q])})", flush=True)
    figures = [(f"full text `{q}` ({how[q]}) ms p50 / p95", spread(service_ms[q])) for q in queries]
    every = [ms for values in service_ms.values() for ms in values]
    verdict = "met" if percentile(every, 0.95) <= FULL_TEXT_MS else "MISSED"
    figures.append(
        (f"full text, all {len(every)} runs, ms p50 / p95", f"{spread(every)} (<= {FULL_TEXT_MS:g}: {verdict})")
    )
    figures.append(("reference: raw SQL, all ms p50 / p95", spread([ms for v in raw_ms.values() for ms in v])))
    if differ:
        print(f"ids differ for {differ}")
    return not differ, figures


def triage(args: Any, env: dict[str, str]) -> list[tuple[str, str]]:
    """Triage CPU (this process and its PostgreSQL backend) per 1,000 fresh items of existing authors, the whole
    task (``items_triage``: load, score with the local model, route, write) with the account features a live rule
    reads and with them switched off (as when no rule reads them), in turns; warm-up pair left out."""
    from django.utils import timezone

    import routing.rules.features as features
    from queues.models import ItemState, Queue, ReviewItem
    from queues.selectors import items_load
    from routing.rules.apply import items_route
    from routing.rules.features import TRIAGE_FIELDS
    from routing.rules.lifecycle import RuleData
    from routing.rules.models import RuleAction, RuleSetKind
    from routing.scoring.pipeline import items_score
    from tests.routing.rules_setup import policy_staff_member, ruleset_live
    from tests.support.processes import model_train

    label, _, _ = model_train(env, actor="bench/accounts.py")
    general, _ = Queue.objects.get_or_create(slug="general", defaults={"name": "General", "is_default_intake": True})
    watch, _ = Queue.objects.get_or_create(slug="repeat-offenders", defaults={"name": "Repeat offenders"})
    rules = [
        RuleData(name="struck", condition="author.strikes >= 1", action=RuleAction.ROUTE, queue_id=watch.pk),
        RuleData(name="flagger", condition='author.labels contains "trusted"', action=RuleAction.TAG, tags=["tf"]),
        RuleData(name="harsh", condition="score.harassment >= 0.9", action=RuleAction.ROUTE, queue_id=watch.pk),
    ]
    staff = [policy_staff_member(f"{name}-{time.time_ns()}") for name in ("pat", "priya")]
    ruleset_live(RuleSetKind.INTAKE, rules, author=staff[0], approver=staff[1], default_queue=general)
    backend = backend_pid()
    rng, words = random.Random(7), benchlib.VOCABULARY["en"].split()
    authors = np.random.default_rng(2)
    real, tag, inside = features.account_features, time.time_ns(), [0.0]

    def timed_features(pairs: Any, **kw: Any) -> Any:  # what the account lookup itself costs, apart from routing
        c0 = time.process_time() + benchlib.process_cpu(backend)
        found = real(pairs, **kw)
        inside[0] += time.process_time() + benchlib.process_cpu(backend) - c0
        return found

    cpu: dict[str, dict[str, list[float]]] = {m: {"triage": [], "routing": []} for m in ("with", "without")}
    for round_ in range(args.rounds * 2 + 2):
        mode = "with" if round_ % 2 == 0 else "without"
        new = {"source": "bench", "received_at": timezone.now(), "state": ItemState.RECEIVED}
        made = ReviewItem.objects.bulk_create(
            ReviewItem(
                external_id=f"t{tag}-{round_}-{n}", author_ref=f"u{a}", text=" ".join(rng.choices(words, k=15)), **new
            )
            for n, a in enumerate(author_of(authors, BATCH, args.accounts).tolist())
        )
        features.account_features = timed_features if mode == "with" else (lambda pairs, **kw: {})  # type: ignore[assignment]
        if round_ == 2:
            inside[0] = 0.0  # the warm-up pair left out
        cpu0 = time.process_time() + benchlib.process_cpu(backend)
        received = items_load([i.pk for i in made], fields=TRIAGE_FIELDS)  # items_triage's steps, timed apart
        items_score(items=received)
        cpu1 = time.process_time() + benchlib.process_cpu(backend)
        items_route(items=received)
        cpu2 = time.process_time() + benchlib.process_cpu(backend)
        features.account_features = real
        if round_ >= 2:
            cpu[mode]["triage"].append((cpu2 - cpu0) * 1000)
            cpu[mode]["routing"].append((cpu2 - cpu1) * 1000)
    med = {m: {k: statistics.median(v) for k, v in parts.items()} for m, parts in cpu.items()}
    added = med["with"]["triage"] - med["without"]["triage"]
    share = added / med["without"]["triage"]
    verdict = "met" if share <= TRIAGE_ADDED else "MISSED"
    print(f"triage CPU rounds ms: {cpu}", flush=True)
    return [
        (
            f"triage CPU ms per 1,000 items, without account features (median of {args.rounds})",
            f"{med['without']['triage']:.0f} (routing {med['without']['routing']:.0f})",
        ),
        (
            f"triage CPU ms per 1,000 items, with them (median of {args.rounds})",
            f"{med['with']['triage']:.0f} (routing {med['with']['routing']:.0f})",
        ),
        (
            "triage rounds ms without / with",
            f"{[round(v) for v in cpu['without']['triage']]} / {[round(v) for v in cpu['with']['triage']]}",
        ),
        (
            f"added by strikes and labels (<= {TRIAGE_ADDED:.0%} of triage: {verdict})",
            f"{added:.0f} ms ({share:+.1%}); model {label}",
        ),
        (
            "of which the account lookup itself (account_features), ms per 1,000",
            f"{inside[0] * 1000 / args.rounds:.0f}",
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
