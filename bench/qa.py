"""QA calibration at scale: a 10,000-item session created, rated by 5 raters (label imports, and one call per
rating for a first slice) and reported over HTTP to gunicorn, beside the same ratings by ``rating_submit``
in-process; claim-next as a reviewer's decisions grow. See bench/README.md; correctness is the tests' job.

    .venv/bin/python bench/qa.py [--items 10000] [--raters 5] [--per-call-items 10000] [--workers 2] [--batch 1000]
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib
import httpx
from benchlib import RESULTS, Report, django_setup, machine_description, percentile, post_all, timed

from tests.support.processes import Gunicorn, running

RESULT = RESULTS / "qa.md"
REDIS_URL = "redis://127.0.0.1:6379/8"
REPORT_TARGET_MS = 300.0
REPEATS = 5


def labels_of(items: int, raters: int, seed: int = 22) -> list[list[bool]]:
    """Per item, each rater's verdict: one in three items a violation, each rater off the truth one time in five."""
    rng = random.Random(seed)
    return [[(i % 3 == 0) != (rng.random() >= 0.8) for _ in range(raters)] for i in range(items)]


def repeated_ms(call: Callable[[], Any]) -> tuple[float, float, float]:
    """Median, min and max milliseconds of ``REPEATS`` calls (after one warm-up)."""
    call()
    times = [timed(call)[0] * 1000 for _ in range(REPEATS)]
    return statistics.median(times), min(times), max(times)


def claim_curve(r: Report, top: int, waiting: int = 300) -> bool:
    """Median ms of claim-next (put back) as one reviewer's decisions on closed items grow to ``top`` (and on half of
    what waits: claims pass over those), and a fresh reviewer's; False if the busy one got an item they decided."""
    from django.utils import timezone

    from ops_platform.core.db_statistics import database_statistics_gather
    from ops_platform.core.models import Role, Team
    from ops_platform.core.services import user_create
    from queues.models import Decision, ItemState, Queue, ReviewItem
    from queues.services import item_claim_next

    team, now, made = Team.objects.create(slug="claims", name="Claims"), timezone.now(), iter(range(10**9))
    busy, fresh = (
        user_create(actor="b", username=n, password="x" * 20, roles=[Role.REVIEWER], team=team) for n in "bf"
    )
    queue = Queue.objects.create(slug="n-review", name="Three reviews", max_required_reviews=3)
    fields = {"text": "x", "received_at": now, "queue": queue, "required_reviews": 3, "queued_at": now, "due_at": now}

    def new(n: int, state: str) -> list[Any]:
        return [ReviewItem(source="c", external_id=f"n{next(made)}", state=state, **fields) for _ in range(n)]

    mine = ReviewItem.objects.bulk_create(new(waiting, "queued"))[: waiting // 2]  # claims must pass over these
    ok, done = True, 0

    def claim(who: Any) -> None:
        nonlocal ok
        got = item_claim_next(queue=queue, actor=who)
        ok = ok and got is not None and not (who == busy and got in mine)
        ReviewItem.objects.filter(pk=got.pk if got else 0).update(state=ItemState.QUEUED, assignee=None)

    for step in sorted({s for s in (0, 1000, 2000, 5000, top) if s <= top}):
        rows = ([] if step else mine) + ReviewItem.objects.bulk_create(new(step - done, "decided"))
        Decision.objects.bulk_create(Decision(item=i, reviewer=busy, is_violation=False, decided_at=now) for i in rows)
        done = step
        database_statistics_gather()  # as the daily beat task does on SQLite (PostgreSQL: autovacuum's own)
        (b, *_), (f, *_) = repeated_ms(lambda: claim(busy)), repeated_ms(lambda: claim(fresh))
        r.add(
            f"claim-next, 3-review queue, {len(mine)} + {done:,} own decisions",
            f"median {b:.1f} ms (reviewer with none: {f:.1f} ms)",
        )
    return ok


def main() -> int:
    parser = benchlib.parser(__doc__, "ops_bench_qa")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--raters", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--concurrency", type=int, help="connections in flight (default: one per worker)")
    parser.add_argument("--batch", type=int, default=1000, help="labels per import call")
    parser.add_argument("--per-call-items", type=int, help="items rated one call per rating (default: all)")
    parser.add_argument("--claim-decisions", type=int, default=10_000, help="own decisions claims are timed up to")
    parser.add_argument("--claims-only", metavar="DATABASE_URL", help="time only claims, on this database (recreated)")
    args = parser.parse_args()
    if args.claims_only:
        if args.claims_only.startswith("sqlite:///"):
            Path(args.claims_only.removeprefix("sqlite:///")).unlink(missing_ok=True)
        benchlib.manage(env := benchlib.app_env(args.claims_only), "migrate", "--noinput")
        django_setup(env)
        r = Report(f"Claim-next as a reviewer's own decisions grow ({args.claims_only.split(':')[0]})")
        ok = claim_curve(r, args.claim_decisions)
        return r.finish(RESULTS / "qa-claims.md", write=not args.no_write, ok=ok, failure="a claim gave their own item")
    per_call = min(args.per_call_items or args.items, args.items)
    args.concurrency = args.concurrency or args.workers
    log = Path(tempfile.gettempdir()) / f"bench-qa-gunicorn-{os.getpid()}.log"
    verdicts = labels_of(args.items, args.raters)
    settings = {"CELERY_BROKER_URL": REDIS_URL, "CELERY_TASK_ALWAYS_EAGER": "true", "CACHE_URL": REDIS_URL}
    settings |= {"ALLOWED_HOSTS": "127.0.0.1,localhost,testserver", "CONN_MAX_AGE": "600"}
    with benchlib.scratch(args, redis=[REDIS_URL], files=[log], **settings) as db:
        from django.conf import settings
        from django.db import connections
        from django.test import Client, override_settings
        from django.utils import timezone

        from ops_platform.core.models import Policy, Role, Team
        from ops_platform.core.services import api_client_create, user_create
        from qa.models import CalibrationItem, CalibrationRating, CalibrationSession
        from qa.selectors import session_report_page
        from qa.services import rating_submit, session_close, session_create
        from queues.models import Queue, ReviewItem

        team = Team.objects.create(slug="in-house", name="In-house")
        lead = user_create(actor="bench", username="quinn", password="x" * 20, roles=[Role.SENIOR_REVIEWER], team=team)
        names = [f"rater{r}" for r in range(args.raters)]
        people = [
            user_create(actor="bench", username=n, password="x" * 20, roles=[Role.REVIEWER], team=team) for n in names
        ]
        queue = Queue.objects.create(slug="calibration", name="Calibration")
        Policy.objects.create(slug="hate", name="Hate")
        now = timezone.now()
        items = ReviewItem.objects.bulk_create(
            ReviewItem(source="bench", external_id=f"c{i}", text=f"post {i}", received_at=now, queue=queue)
            for i in range(args.items)
        )
        ids = [i.pk for i in items]
        _, key = api_client_create(
            actor="bench", name="qa-tool", source="qa-tool", scopes=["qa:write", "qa:read"], rate_limit_per_minute=10**9
        )
        connections.close_all()
        r = Report(f"QA calibration, {args.items:,} items x {args.raters} raters")
        web = Gunicorn(db.env, log, workers=args.workers)
        with (
            running(web),
            httpx.Client(base_url=web.base, headers={"Authorization": f"Bearer {key}"}, timeout=600) as http,
        ):

            def create(name: str) -> int:
                body = {"reviewer": "quinn", "name": name, "participants": names, "item_ids": ids}
                response = http.post("/api/v1/qa/calibration-sessions", json=body)
                if response.status_code != 201:
                    raise SystemExit(f"create: {response.status_code} {response.text[:500]}")
                return int(response.json()["id"])

            create_s, one_by_one = timed(lambda: create("one by one"))
            imported = create("imported")
            print(f"rating session {one_by_one} one call per rating …", flush=True)
            rated = [(pk, k, v) for pk, row in zip(ids, verdicts, strict=True) for k, v in enumerate(row)]
            ratings_in = [
                {"reviewer": names[k], "item": pk, "is_violation": v, "policy": "hate" if v else None}
                for pk, k, v in rated[: per_call * args.raters]
            ]
            bodies = [json.dumps(body).encode() for body in ratings_in]
            load = post_all(
                f"{web.base}/api/v1/qa/calibration-sessions/{one_by_one}/ratings",
                key,
                bodies,
                concurrency=args.concurrency,
            ).check("ratings")
            latencies = [p.seconds * 1000 for p in load.posted]
            print(f"rating session {imported} by label imports of {args.batch} …", flush=True)
            when = now.isoformat()
            rows = [
                {"item": pk, "participant": names[k], "rater": f"crowd-{k}", "labelled_at": when, "is_violation": v}
                | ({"policy": "hate"} if v else {})
                for pk, k, v in rated
            ]
            head = {"reviewer": "quinn", "target": "calibration", "source": "bench", "session": imported}
            chunks = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
            import_bodies = [json.dumps(head | {"labels": chunk}).encode() for chunk in chunks]
            # One connection: a batch locks the session while its ratings land, so parallel batches would queue.
            imports = post_all(f"{web.base}/api/v1/qa/label-imports", key, import_bodies, concurrency=1)
            imports.check("label imports")
            close_api_s, closed = timed(
                lambda: http.post(f"/api/v1/qa/calibration-sessions/{imported}/close", json={"reviewer": "quinn"})
            )
            http.post(f"/api/v1/qa/calibration-sessions/{one_by_one}/close", json={"reviewer": "quinn"})
            report_url = f"/api/v1/qa/calibration-sessions/{imported}/report?reviewer=quinn&page_size=100"
            last_page = -(-args.items // 100)
            first_ms = repeated_ms(lambda: http.get(report_url).raise_for_status())
            last_ms = repeated_ms(lambda: http.get(f"{report_url}&page={last_page}").raise_for_status())
            count = http.get(report_url).json()["count"]

        print("rating the reference session in-process …", flush=True)
        reference = session_create(actor=lead, name="in-process", item_ids=ids, participants=people)
        session_items = {
            si.item_id: si for si in CalibrationItem.objects.select_related("session").filter(session=reference)
        }
        policy = Policy.objects.get(slug="hate")

        def rate_all() -> None:
            for pk, row in zip(ids[:per_call], verdicts[:per_call], strict=True):
                for person, v in zip(people, row, strict=True):
                    rating_submit(
                        session_item=session_items[pk], actor=person, is_violation=v, policy=policy if v else None
                    )

        services_s, _ = timed(rate_all)
        session_close(session=reference, actor=lead)
        full = CalibrationSession.objects.get(pk=imported)
        page_ms = repeated_ms(lambda: session_report_page(full, page=last_page, page_size=100))
        browser = Client()
        browser.force_login(lead)
        # No collectstatic in a scratch run: plain static storage, so the page renders without the manifest.
        plain = {
            **settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
        with override_settings(STORAGES=plain):
            html_ms = repeated_ms(lambda: browser.get(f"/qa/calibration/{imported}/?page={last_page}"))

        claims = Report("claims")
        claims_ok = claim_curve(claims, args.claim_decisions)
        ratings, per_call_ratings = args.items * args.raters, per_call * args.raters
        sessions = [one_by_one, imported, reference.pk]
        stored = CalibrationRating.objects.filter(session_item__session_id__in=sessions).count()
        expected = ratings + 2 * per_call_ratings
        ok = closed.status_code == 200 and count == args.items and stored == expected and claims_ok
        r.add("machine", machine_description(db.conninfo, f"gunicorn {args.workers} sync workers"))
        r.add("session created by API (all item ids in one call)", f"{create_s:.2f} s")
        r.add(
            f"ratings by API, one call each, first {per_call:,} items ({args.concurrency} connections)",
            f"{per_call_ratings / load.elapsed:,.0f} ratings/s ({per_call_ratings:,} in {load.elapsed:.1f} s); "
            f"latency p50 {percentile(latencies, 0.5):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms",
        )
        r.add(
            f"ratings by API label imports ({args.batch} a call, 1 connection)",
            f"{ratings / imports.elapsed:,.0f} ratings/s ({len(import_bodies)} calls in {imports.elapsed:.1f} s)",
        )
        r.add(
            "reference: the same ratings by rating_submit in-process",
            f"{per_call_ratings / services_s:,.0f} ratings/s ({per_call_ratings:,} in {services_s:.1f} s)",
        )
        r.add(
            "close (figures computed once, 500 bootstrap resamples)",
            f"{close_api_s:.2f} s by API ({ratings:,} ratings)",
        )
        verdict = "PASS" if max(first_ms[0], last_ms[0], html_ms[0]) <= REPORT_TARGET_MS else "MISSED"
        for label, (median, low, high) in [
            (f"report by API, {args.items:,} items, page 1 of 100 rows", first_ms),
            (f"report by API, page {last_page}", last_ms),
            (f"report page (HTML, in-process client), page {last_page}", html_ms),
            ("reference: session_report_page in-process", page_ms),
        ]:
            r.add(label, f"median {median:.1f} ms (min {low:.1f}, max {high:.1f}; {REPEATS} runs)")
        r.add(f"report target ≤ {REPORT_TARGET_MS:.0f} ms", verdict)
        r.rows += claims.rows
        r.add("check", f"{stored:,} ratings stored (expected {expected:,}); report counts {count:,} items")
        busy = os.getloadavg()[0]
        r.add(
            "machine load (1-minute average at the end)", f"{busy:.1f} on {os.cpu_count()} CPUs: other work shared them"
        )
        return r.finish(RESULT, write=not args.no_write, ok=ok, failure="ratings or report do not add up")


if __name__ == "__main__":
    raise SystemExit(main())
