"""Drill webhook_outage: a client's webhook receiver is down for five minutes; every event is delivered
afterwards, at least once, with the same event id and a valid signature on every attempt.

The receiver is a small HTTP server in this process that checks each request's ``X-Signature`` with the
client's secret (``ops_platform.core.webhook_signing``, the file receivers copy) and records the event id of
the header and of the body. Events come from the platform's own path: items auto-actioned by
``items_auto_action`` emit ``decision.final`` events on commit, which a real ``celery worker`` on the
``webhooks`` queue delivers, retrying with backoff (``WEBHOOK_RETRY_*``). A first wave is delivered while the
receiver is up; then the receiver goes away (connections refused) for the outage, during which two more
waves are emitted; then it comes back and the drill waits for every event to be delivered.

The backoff base is shortened (5 s, capped at 60 s, 20 attempts) so the retries fit the drill; the outage
stays five minutes in the full run. ``--quick`` (CI) shortens the outage to 60 s and says so in its output.

    .venv/bin/python -m tests.drills.webhook_outage            # 5-minute outage
    .venv/bin/python -m tests.drills.webhook_outage --quick    # 60 s outage (CI)
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

from ops_platform.core.webhook_signing import SIGNATURE_HEADER, webhook_signature_verify
from tests.drills.harness import (
    RESULTS,
    Drill,
    DrillResult,
    cli,
    drill_world,
)
from tests.support.processes import Worker, manage, running
from tests.support.servers import free_port, poll_until

NAME = "webhook_outage"
TITLE = "a webhook receiver down for five minutes"

EMIT = """
from django.db import transaction
from django.utils import timezone
from ops_platform.core.models import EnforcementAction, Policy
from queues.models import ReviewItem
from queues.services import items_auto_action
policy, _ = Policy.objects.get_or_create(slug="spam", defaults={"name": "Spam", "guidelines": "No spam."})
action, _ = EnforcementAction.objects.get_or_create(slug="remove", defaults={"name": "Remove"})
now = timezone.now()
items = ReviewItem.objects.bulk_create(
    ReviewItem(source="drill", external_id=f"wh-%(wave)s-{n}", text="cheap likes", received_at=now)
    for n in range(%(count)d)
)
with transaction.atomic():
    done = items_auto_action(item_ids=[i.pk for i in items], actor="rules:drill", policy=policy, action=action,
                             reason="webhook drill")
print("EMITTED", len(done))
"""


@dataclass(frozen=True)
class Receipt:
    at: float
    header_id: str
    body_id: str
    signature_valid: bool
    body_sha: str


class Receiver:
    """The client's endpoint: verifies signatures, records what came, answers 200. ``stop`` closes the port."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.receipts: list[Receipt] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                valid = webhook_signature_verify(receiver.secret, self.headers.get(SIGNATURE_HEADER, ""), body)
                try:
                    body_id = str(json.loads(body).get("event_id"))
                except ValueError:
                    body_id = ""
                receipt = Receipt(
                    time.monotonic(),
                    self.headers.get("X-Event-Id", ""),
                    body_id,
                    valid,
                    hashlib.sha256(body).hexdigest(),
                )
                with receiver._lock:
                    receiver.receipts.append(receipt)
                self.send_response(200 if valid else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="drill-receiver", daemon=True).start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def events_read(conninfo: str) -> dict[str, tuple[bool, bool, int]]:
    """event_id -> (delivered, gave up, attempts)."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT event_id::text, delivered_at IS NOT NULL, gave_up_at IS NOT NULL, attempts FROM core_webhookevent"
        ).fetchall()
    return {r[0]: (bool(r[1]), bool(r[2]), int(r[3])) for r in rows}


def emit(env: dict[str, str], wave: str, count: int) -> int:
    out = manage(env, "shell", "-c", EMIT % {"wave": wave, "count": count})
    return int(next(line for line in out.splitlines() if line.startswith("EMITTED ")).split()[1])


def run(
    *,
    events: int = 90,
    outage: float = 300.0,
    base: float = 5.0,
    cap: float = 60.0,
    attempts: int = 20,
    quick: bool = False,
    keep: bool = False,
    write: bool = True,
) -> DrillResult:
    if quick:
        outage, cap, events = min(outage, 60.0), min(cap, 20.0), min(events, 45)
    drill = Drill(NAME, TITLE)
    # The receiver's address is fixed before the client exists; it learns the secret right after.
    receiver = Receiver("")
    retries = {
        "WEBHOOK_RETRY_BASE_SECONDS": str(base),
        "WEBHOOK_RETRY_MAX_SECONDS": str(cap),
        "WEBHOOK_MAX_ATTEMPTS": str(attempts),
        "WEBHOOK_TIMEOUT_SECONDS": "2",
    }
    setup = drill_world(drill, retries, keep=keep, model=False, cache=False, callback_url=receiver.url)
    with setup as (env, conninfo, _, world):
        receiver.secret = world.webhook_secret
        receiver.start()
        worker = Worker(env, RESULTS / f"drill-{NAME}-worker.log", queues="webhooks", name="drill-webhooks")
        per_wave = max(1, events // 3)
        with running(worker):
            emitted = emit(env, "up", per_wave)
            poll_until(lambda: sum(d for d, _, _ in events_read(conninfo).values()) >= emitted, timeout=120)
            ids_before_outage = set(events_read(conninfo))
            drill.log(f"receiver down for {outage:.0f} s …")
            receiver.stop()
            down_at = time.monotonic()
            emitted += emit(env, "down-early", per_wave)
            time.sleep(max(0.0, outage / 2 - (time.monotonic() - down_at)))
            emitted += emit(env, "down-late", events - 2 * per_wave)
            time.sleep(max(0.0, outage - (time.monotonic() - down_at)))
            ids_during = set(events_read(conninfo))
            receiver.start()
            up_at = time.monotonic()
            drill.log("receiver back; waiting for every event to be delivered …")
            delivered_all = poll_until(
                lambda: all(d for d, _, _ in events_read(conninfo).values()), timeout=2 * cap + 120
            )
            recovery = time.monotonic() - up_at
        final = events_read(conninfo)
        with psycopg.connect(conninfo) as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE NOT delivered), "
                "count(*) FILTER (WHERE NOT delivered AND status_code IS NULL) FROM core_webhookdelivery"
            ).fetchone()
            assert row is not None
            total_attempts, failed_attempts, refused = (int(v) for v in row)

        receipts = list(receiver.receipts)
        by_id: dict[str, set[str]] = defaultdict(set)
        for r in receipts:
            by_id[r.body_id].add(r.body_sha)
        counts = Counter(r.body_id for r in receipts)
        attempts_used = sorted(a for _, _, a in final.values())
        if quick:
            drill.note(f"CI size: the outage is {outage:.0f} s here, not five minutes (the full run keeps 300 s).")
        drill.figure("receiver outage", f"{outage:.0f} s (connections refused)" + (" — CI size" if quick else ""))
        drill.figure("retry backoff", f"base {base:g} s doubling to {cap:g} s, equal jitter, {attempts} attempts")
        drill.figure("events emitted (auto-actions, decision.final)", len(final))
        drill.figure("events emitted while the receiver was down", len(ids_during - ids_before_outage))
        drill.figure("events delivered", sum(1 for d, _, _ in final.values() if d))
        drill.figure("events given up", sum(1 for _, g, _ in final.values() if g))
        drill.figure("delivery attempts in all", total_attempts)
        drill.figure("failed attempts (of which connection refused)", f"{failed_attempts} ({refused})")
        spread = f"{attempts_used[len(attempts_used) // 2]} / {attempts_used[-1]}" if attempts_used else "none"
        drill.figure("attempts per event, median / max", spread)
        drill.figure("requests the receiver got", len(receipts))
        drill.figure("distinct event ids received", len(counts))
        drill.figure("duplicate deliveries (same event id again)", sum(n - 1 for n in counts.values()))
        drill.figure("invalid signatures", sum(1 for r in receipts if not r.signature_valid))
        drill.figure("receiver back to every event delivered", f"{recovery:.1f} s" if delivered_all else "not all")

        gave_up = any(g for _, g, _ in final.values())
        drill.check("every event was delivered, none given up", delivered_all and not gave_up)
        drill.check("the receiver got every event at least once", set(final) <= set(counts))
        drill.check("attempts failed during the outage", failed_attempts > 0)
        drill.check("every signature was valid", bool(receipts) and all(r.signature_valid for r in receipts))
        drill.check(
            "stable event ids: header id = body id, every id one the platform stored",
            all(r.header_id == r.body_id and r.body_id in final for r in receipts),
        )
        drill.check("the same event id always came with the same body", all(len(s) == 1 for s in by_id.values()))
        drill.check(
            "no event changed id across retries (the stored ids are the ones emitted)",
            ids_during <= set(final) and len(final) == emitted,
        )
        receiver.stop()
    return drill.finish(write=write)


def arguments(parser: Any) -> None:
    parser.add_argument("--events", type=int)
    parser.add_argument("--outage", type=float, help="seconds the receiver is down (default 300)")
    parser.add_argument("--quick", action="store_true", default=None, help="the CI size: a 60 s outage")
    parser.add_argument("--keep", action="store_true", default=None, help="keep the scratch database")


if __name__ == "__main__":
    raise SystemExit(cli(run, __doc__ or NAME, arguments))
