"""Every page the URL resolver lists, requested by one user of each role through the whole Django stack in-process:
server-time p50/p95 per page and the slowest ten, beside ``/healthz``; on the embedded demo or on PostgreSQL with
the dashboard world. See bench/README.md.

    .venv/bin/python bench/pages.py --mode demo | --mode postgres [--decisions 10000000 --waiting 1000000]
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import benchlib
import psycopg
from benchlib import RESULTS, Report, django_setup, machine_description, percentile
from psycopg import sql

from tests.support.processes import PYTHON, ROOT, app_env, manage

TARGET_MS = 300.0
# Not pages: they sign out, only confirm a deletion (collecting every related row), or redirect elsewhere.
SKIPPED = re.compile(r"(^|[_:])(logout|login|view_on_site)$|_delete$|^(api-schema|healthz)$")


def routes() -> Iterator[tuple[str, str]]:
    """(url name with its namespace, route) of every named pattern the resolver lists."""
    from django.urls import URLResolver, get_resolver

    def walk(patterns: list[Any], prefix: str, space: str) -> Iterator[tuple[str, str]]:
        for p in patterns:
            if isinstance(p, URLResolver):
                inner = f"{space}{p.namespace}:" if p.namespace else space
                yield from walk(p.url_patterns, prefix + str(p.pattern), inner)
            elif p.name:
                yield space + p.name, prefix + str(p.pattern)

    yield from walk(get_resolver().url_patterns, "", "")


def last(model: Any, **where: Any) -> Any:
    return model.objects.filter(**where).order_by("-pk").values_list("pk", flat=True).first()


def arguments() -> dict[str, list[dict[str, Any]]]:
    """Real arguments for each url name that takes any: the newest row of the model the page shows."""
    from django.contrib import admin
    from django.contrib.auth import get_user_model

    from analytics.models import Alert, AlertRule
    from analytics.panels import AREAS, panels_all
    from qa.models import CalibrationItem, CalibrationSession, QaSample, SamplingPlan
    from queues.models import Queue, ReviewItem
    from routing.rules.models import Backtest, Rule, RuleSet
    from routing.scoring.models import ModelVersion

    queue = Queue.objects.filter(is_active=True).order_by("pk").values_list("slug", flat=True).first()
    waiting = last(ReviewItem, state="queued")
    sample = last(QaSample)
    rule = Rule.objects.order_by("-pk").values_list("pk", "rule_set_id").first()
    calibration = CalibrationItem.objects.order_by("-pk").values_list("pk", "session_id").first()
    one = {
        "analytics-alert": {"pk": last(Alert)},
        "analytics-alert-rule": {"pk": last(AlertRule)},
        "scoring-model-card": {"pk": last(ModelVersion)},
        "rules-backtest": {"pk": last(Backtest)},
        "review-item": {"pk": waiting},
        "api-item-detail": {"pk": waiting},
        "analytics-item": {"pk": waiting},
        "investigation-item": {"pk": waiting},
        "review-bulk": {"slug": queue},
        "qa-plan-edit": {"pk": last(SamplingPlan)},
        "qa-calibration-session": {"pk": last(CalibrationSession)},
        "api-calibration-report": {"pk": last(CalibrationSession)},
        "rules-rule-edit": {"pk": rule[1], "rule_pk": rule[0]} if rule else {"pk": None},
        "qa-calibration-rate": {"pk": calibration[1], "item_pk": calibration[0]} if calibration else {"pk": None},
    }
    one |= {name: {"pk": sample} for name in ["qa-review", "qa-compare", "qa-adjudicate"]}
    one |= {name: {"pk": last(RuleSet)} for name in ["rules-detail", "rules-meta", "rules-diff", "rules-shadow"]}
    many = {name: [kw] for name, kw in one.items() if None not in kw.values()}
    many["analytics-area"] = [{"area": a} for a in AREAS]
    many["analytics-panel"] = [{"area": p.area, "name": p.name} for p in panels_all()]
    many["api-metric"] = [{"name": p.name} for p in panels_all()]
    many["admin:auth_user_password_change"] = [{"id": last(get_user_model())}]
    labels = sorted({m._meta.app_label for m in admin.site._registry})
    many["admin:app_list"] = [{"app_label": label} for label in labels]
    for model in admin.site._registry:
        pk = last(model)
        for view in ("change", "history"):
            if pk is not None:
                many[f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}"] = [{"object_id": pk}]
    return many


def pages() -> tuple[list[tuple[str, str]], list[str]]:
    """(url name, path) of every page to time; and the routes left out, with the reason."""
    from django.urls import NoReverseMatch, reverse

    args = arguments()
    out, left = [], []
    for name, route in routes():
        if SKIPPED.search(name):
            continue
        takes = "<" in route or "(?P" in route
        for kwargs in args.get(name, [{}] if not takes else []):
            try:
                out.append((name, reverse(name, kwargs=kwargs)))
            except NoReverseMatch:
                left.append(f"{route} (arguments {kwargs} do not reverse)")
        if takes and name not in args:
            left.append(f"{route} ({name}: no row to open in this world)")
    return out, left


def personas() -> dict[str, Any]:
    """A user of each role (the first active one; created when the world has none)."""
    from ops_platform.core.models import Role, User
    from ops_platform.core.services import user_create

    found = {}
    for role in Role:
        user = User.objects.filter(groups__name=role.value, is_active=True).order_by("pk").first()
        if user is None:
            user = user_create(actor="bench", username=f"bench-{role.value}", password="x" * 20, roles=[role])
        found[role.value] = user
    return found


def time_pages(
    repeat: int, only: list[str]
) -> tuple[dict[str, list[float]], dict[str, dict[str, int]], list[float], list[str]]:
    """Milliseconds per page over every persona and run (pages shown, 2xx, only; the first run of each is cold),
    the statuses each gave, the reference's milliseconds, and what was left out."""
    from django.test import Client

    logging.disable(logging.WARNING)  # refusals (403, 405) are expected answers here, not news
    todo, left = pages()
    todo = [(name, path) for name, path in todo if not only or any(text in path for text in only)]
    people = personas()
    from analytics.panels import charts_warm
    from qa.selectors import scorecards_warm

    seconds, drawn = benchlib.timed(charts_warm)  # what the periodic rollup refresh does after each refresh
    print(f"charts drawn ahead as the periodic job does: {drawn} in {seconds:,.1f} s", flush=True)
    seconds, rows = benchlib.timed(scorecards_warm)
    print(f"QA scorecards computed ahead as the periodic job does: {rows} rows in {seconds:,.1f} s", flush=True)
    stop = refresh_beat()
    times: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, dict[str, int]] = defaultdict(dict)
    reference: list[float] = []
    downloads.clear()
    print(f"{len(todo)} pages x {len(people)} personas x {repeat} runs", flush=True)
    for role, user in people.items():
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        for name, path in todo:
            for _ in range(repeat):
                t0 = time.perf_counter()
                response = client.get(path, secure=True)
                ms = (time.perf_counter() - t0) * 1000
                if getattr(response, "streaming", False):
                    # A download's page time is to its first row (the header, then the first row its query
                    # gives); the whole file, proportional to the rows it exports, is reported apart.
                    chunks = iter(response.streaming_content)
                    next(chunks, b"")
                    next(chunks, b"")
                    ms = (time.perf_counter() - t0) * 1000
                    b"".join(chunks)
                    downloads[f"{path} ({name})"].append((time.perf_counter() - t0) * 1000)
                statuses[path][role] = response.status_code
                if response.status_code < 300:  # a page shown; refusals and redirects (to sign in) are not
                    times[f"{path} ({name})"].append(ms)
            reference.append(benchlib.timed(partial(client.get, "/healthz", secure=True))[0] * 1000)
        print(f"  {role}: done", flush=True)
    stop.set()
    return times, statuses, reference, left


# Milliseconds to the last byte of each streamed download (its page time is to its first row).
downloads: dict[str, list[float]] = defaultdict(list)


def refresh_beat() -> threading.Event:
    """What beat's minute rollup refresh does for the pages besides the charts, in a thread while they are timed:
    count the live backlog and share it (``backlog_counts_publish``: a count in PostgreSQL, the thread waits on it
    without the GIL). Set the returned event to stop it."""
    from django.conf import settings
    from django.db import connection

    from analytics.selectors.operations import backlog_counts_publish

    stop = threading.Event()
    every = settings.ANALYTICS_REFRESH_EVERY.total_seconds()
    seconds, _ = benchlib.timed(backlog_counts_publish)
    print(f"backlog counted ahead as the periodic job does: {seconds:,.1f} s, again every {every:g} s", flush=True)

    def run() -> None:
        while not stop.wait(every):
            backlog_counts_publish()
        connection.close()

    threading.Thread(target=run, name="refresh-beat", daemon=True).start()
    return stop


def demo_database(path: Path, fresh: bool) -> dict[str, str]:
    """The embedded demo's environment on ``path`` (migrated and seeded by ``demo_seed`` when new)."""
    # As `make demo` runs it: OPS_DEMO=1 and so DEBUG on (static files from the finders, no manifest).
    env = app_env(f"sqlite:///{path}", OPS_DEMO="1", DEBUG="1", LOG_LEVEL="WARNING", CELERY_BROKER_URL="")
    if fresh or not path.exists():
        path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        for command in (["migrate", "--noinput"], ["demo_seed"]):
            subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
        print(f"demo seeded in {time.perf_counter() - t0:,.0f} s", flush=True)
    return env


def waiting_add(conninfo: str, n: int, now: datetime) -> float:
    """Seconds to add ``n`` waiting items over 14 days and the queues, cloned from the newest by INSERT … SELECT."""
    if n <= 0:
        return 0.0
    t0 = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cols = [
            c
            for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'queues_reviewitem' "
                "AND column_name <> 'id' ORDER BY ordinal_position"
            )
        ]
        template = conn.execute("SELECT max(id) FROM queues_reviewitem WHERE state = 'queued'").fetchone()
        queues = [q for (q,) in conn.execute("SELECT id FROM queues_queue WHERE is_active ORDER BY id")]
        when = "%(now)s::timestamptz - (g %% 1209600) * interval '1 second'"
        replaced = {
            "external_id": "'bench-waiting-' || g",
            "state": "'queued'",
            "queue_id": f"(ARRAY{queues})[1 + g %% {len(queues)}]",
            "received_at": when,
            "created_at": when,
            "queued_at": when,
            "triaged_at": when,
            "due_at": f"{when} + interval '1 day'",
            "assignee_id": "NULL",
            "claimed_at": "NULL",
            "decided_at": "NULL",
            "lease_expires_at": "NULL",
        }
        select = ", ".join(replaced.get(c, f"t.{c}") for c in cols)
        statement = sql.SQL(
            "INSERT INTO queues_reviewitem ({}) SELECT " + select + " FROM queues_reviewitem t, "
            "generate_series(1, %(n)s) g WHERE t.id = %(template)s"
        ).format(sql.SQL(", ").join(map(sql.Identifier, cols)))
        conn.execute(statement, {"now": now, "n": n, "template": template[0] if template else None})
        conn.execute("VACUUM (ANALYZE) queues_reviewitem")
    return time.perf_counter() - t0


def main() -> int:
    parser = benchlib.parser(__doc__, "bench_pages")
    parser.add_argument("--mode", choices=["demo", "postgres"], required=True)
    parser.add_argument("--repeat", type=int, default=3, help="requests per persona and page")
    parser.add_argument("--demo-db", type=Path, default=RESULTS / "pages-demo.sqlite3")
    parser.add_argument("--fresh", action="store_true", help="demo: seed a new demo database even if one exists")
    parser.add_argument("--decisions", type=int, default=10_000_000, help="postgres: decided items to seed")
    parser.add_argument("--waiting", type=int, default=1_000_000, help="postgres: extra waiting items")
    parser.add_argument("--reuse", action="store_true", help="postgres: time a database an earlier --keep run kept")
    parser.add_argument("--only", nargs="*", default=[], metavar="TEXT", help="time only pages whose path has TEXT")
    args = parser.parse_args()
    r = Report(f"Page benchmark ({args.mode}): every page as every persona, server time")
    r.add("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    if args.mode == "demo":
        env = demo_database(args.demo_db, args.fresh)
        django_setup(env)
        return finish(r, args, f"the embedded demo on SQLite ({args.demo_db})")
    sys.path.insert(0, str(Path(__file__).parent))
    import dashboard

    from tests.support import dashboard_world as dw

    hosts = "127.0.0.1,localhost"  # production settings allow no host unless told
    # No broker here, but production runs beat and workers apart from the web processes: no in-process scheduler
    # in this one (its classifier refresh read every decision in a thread while the pages were timed).
    with benchlib.scratch(
        args,
        reuse=args.reuse,
        CELERY_BROKER_URL="",
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS=hosts,
        PERIODIC_IN_PROCESS="false",
    ) as db:
        if not args.reuse:
            world = dw.world_create()
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            print(f"seeding {args.decisions:,} decided items by COPY …", flush=True)
            seeded = dashboard.seed(db.conninfo, world, args.decisions, now)
            extra = waiting_add(db.conninfo, args.waiting, now)
            print(f"seeded in {seeded.seconds:,.0f} s (+{extra:,.0f} s waiting items); building rollups …", flush=True)
            rollups, _ = benchlib.timed(lambda: dashboard.rollups_build(now - timedelta(seconds=1)))
            r.add(
                "seeding",
                f"COPY {sum(seeded.rows.values()):,} rows in {seeded.seconds:,.0f} s, "
                f"waiting items {extra:,.0f} s, rollups {rollups:,.0f} s",
            )
        manage(db.env, "collectstatic", "--noinput")  # production settings: the manifest the templates need
        r.add("machine", machine_description(db.conninfo))
        return finish(r, args, "PostgreSQL")


def finish(r: Report, args: Any, where: str) -> int:
    from queues.models import Decision, ReviewItem

    waiting = ReviewItem.objects.filter(state="queued").count()
    r.add("world", f"{where}: {Decision.objects.count():,} decisions, {waiting:,} waiting items")
    times, statuses, reference, left = time_pages(args.repeat, args.only)
    rows = sorted(((percentile(v, 0.95), percentile(v, 0.5), len(v), page) for page, v in times.items()), reverse=True)
    r.add("reference: /healthz", f"p50 {percentile(reference, 0.5):,.1f} ms, p95 {percentile(reference, 0.95):,.1f} ms")
    over = [page for p95, _, _, page in rows if p95 > TARGET_MS]
    r.add("target", f"p95 ≤ {TARGET_MS:g} ms: {len(rows) - len(over)} of {len(rows)} pages met")
    table = ["| page | n | p50 ms | p95 ms |", "|---|---:|---:|---:|"]
    table += [f"| {page} | {n} | {p50:,.0f} | {p95:,.0f} |" for p95, p50, n, page in sorted(rows, key=lambda x: x[3])]
    slow = [
        "### The slowest ten (p95)",
        "",
        *[f"1. {page}: {p95:,.0f} ms (p50 {p50:,.0f})" for p95, p50, _, page in rows[:10]],
    ]
    if downloads:
        slow.append(
            "\n### Streamed downloads: to the last byte (their page time above is to the first row)\n\n"
            + "\n".join(
                f"- {page}: p50 {percentile(v, 0.5):,.0f} ms, p95 {percentile(v, 0.95):,.0f} ms"
                for page, v in sorted(downloads.items())
            )
        )
    refused = sorted(p for p, s in statuses.items() if all(code >= 300 for code in s.values()))
    r.after += ["\n".join(table) + "\n", "\n".join(slow) + "\n"]
    r.after.append(
        "### Not timed\n\n"
        + "\n".join(
            f"- {x}" for x in [*left, *(f"{p}: no persona shown the page {dict(statuses[p])}" for p in refused)]
        )
        + "\n"
    )
    return r.finish(RESULTS / f"pages-{args.mode}.md", write=not args.no_write, ok=bool(rows), failure="no page timed")


if __name__ == "__main__":
    sys.exit(main())
