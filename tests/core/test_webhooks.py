"""Signed decision webhooks: the signature, retries with backoff against a real local receiver, giving up and
re-driving, the decision that emits one, and a real celery worker delivering over Redis."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest.mock import ANY

import pytest
from celery import signals
from django.db import transaction
from django.test import Client
from django.utils import timezone

from ops_platform.celery import app as celery_app
from ops_platform.core.errors import Conflict
from ops_platform.core.models import (
    ApiClient,
    ApiScope,
    AuditLog,
    DecisionLabel,
    EnforcementAction,
    Policy,
    User,
    WebhookDelivery,
    WebhookEvent,
)
from ops_platform.core.services import api_client_create
from ops_platform.core.tasks import webhook_deliver_task
from ops_platform.core.webhook_signing import webhook_signature, webhook_signature_verify
from ops_platform.core.webhooks import (
    webhook_body,
    webhook_emit,
    webhook_events_sweep,
    webhook_redeliver,
    webhook_retry_delay,
)
from queues.models import ItemState, Queue, ReviewItem
from queues.services import decision_record, item_claim, items_enqueue
from tests.conftest import PASSWORD, free_port, wait_until

pytestmark = pytest.mark.django_db

SECRET = "whsec_test-secret"
PAYLOAD = {"item_id": 1, "external_id": "post-1", "is_violation": True, "labels": ["slur"]}


# --- the receiver: a real HTTP server in a thread, as an integrating service would run one ------------


@dataclass
class Received:
    event_id: str
    event_type: str
    body: bytes
    verified: bool
    status: int


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is what the slow-receiver test wants


class Receiver:
    """Answers 500 to the first ``fail_first`` requests, then 204; checks every request's signature."""

    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    status = 500 if len(receiver.requests) < receiver.fail_first else 204
                    receiver.requests.append(
                        Received(
                            event_id=self.headers["X-Event-Id"],
                            event_type=self.headers["X-Event-Type"],
                            body=body,
                            verified=webhook_signature_verify(receiver.secret, self.headers["X-Signature"], body),
                            status=status,
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/decisions"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def successes(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET, fail_first=3) as r:
        yield r


def client_for(url: str, source: str = "social-app") -> ApiClient:
    client, _ = api_client_create(
        actor="test", name="Social app", source=source, scopes=[ApiScope.ITEMS_WRITE], callback_url=url
    )
    client.webhook_secret = SECRET
    client.save(update_fields=["webhook_secret"])
    return client


@pytest.fixture
def eager_retries() -> Iterator[list[float]]:
    """Eager runs that follow Celery's retries, and the countdowns each retry asked for.

    An eager task that calls ``retry()`` is run again at once by ``Task.apply`` (the countdown is ignored),
    but only when eager errors do not propagate; the project's settings propagate them.
    """
    seen: list[float] = []

    def record(request: Any = None, reason: Any = None, **kwargs: Any) -> None:
        seen.append(reason.when)

    conf = celery_app.conf
    saved = conf.task_eager_propagates
    conf.task_eager_propagates = False
    signals.task_retry.connect(record, weak=False)
    yield seen
    signals.task_retry.disconnect(record)
    conf.task_eager_propagates = saved


def emit(client: ApiClient, capture: Any, payload: dict[str, Any] | None = None) -> WebhookEvent:
    with capture(execute=True):
        event = webhook_emit(client=client, event_type="decision.final", payload=payload or PAYLOAD)
    assert event is not None
    event.refresh_from_db()
    return event


# --- the signature ------------------------------------------------------------------------------------


def test_a_signature_verifies_the_body_it_signed() -> None:
    body = b'{"event_id":"e1","type":"decision.final"}'
    header = webhook_signature(SECRET, body)
    assert header.startswith("t=")
    assert ",v1=" in header
    assert webhook_signature_verify(SECRET, header, body)
    assert webhook_signature_verify(SECRET, header, body.decode())


def test_a_tampered_body_fails_verification() -> None:
    body = b'{"is_violation":true}'
    header = webhook_signature(SECRET, body)
    assert not webhook_signature_verify(SECRET, header, b'{"is_violation":false}')
    assert not webhook_signature_verify(SECRET, header, body + b" ")


def test_another_secret_fails_verification() -> None:
    body = b"{}"
    assert not webhook_signature_verify("whsec_other", webhook_signature(SECRET, body), body)
    assert not webhook_signature_verify("", webhook_signature("", body), body)


def test_a_stale_or_future_timestamp_fails_verification() -> None:
    body = b"{}"
    now = int(time.time())
    assert not webhook_signature_verify(SECRET, webhook_signature(SECRET, body, timestamp=now - 301), body)
    assert not webhook_signature_verify(SECRET, webhook_signature(SECRET, body, timestamp=now + 301), body)
    assert webhook_signature_verify(SECRET, webhook_signature(SECRET, body, timestamp=now - 290), body)
    old = webhook_signature(SECRET, body, timestamp=now - 3600)
    assert webhook_signature_verify(SECRET, old, body, tolerance=7200)


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=00", "t=1", "garbage", "t=1;v1=2"])
def test_a_malformed_header_fails_verification(header: str) -> None:
    assert not webhook_signature_verify(SECRET, header, b"{}")


def test_any_of_several_v1_signatures_may_match_during_a_secret_rotation() -> None:
    body = b"{}"
    t = int(time.time())
    new = webhook_signature("whsec_new", body, timestamp=t).split(",v1=")[1]
    old = webhook_signature(SECRET, body, timestamp=t).split(",v1=")[1]
    assert webhook_signature_verify("whsec_new", f"t={t},v1={old},v1={new}", body)


def test_retry_delays_double_with_jitter_up_to_the_cap(settings: Any) -> None:
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    settings.WEBHOOK_RETRY_MAX_SECONDS = 600
    for attempt, full in [(1, 30), (2, 60), (3, 120), (5, 480), (6, 600), (8, 600)]:
        delays = [webhook_retry_delay(attempt) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays), (attempt, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered


# --- emitting and delivering --------------------------------------------------------------------------


def test_a_client_without_a_callback_url_gets_no_event(db: None) -> None:
    client, _ = api_client_create(actor="test", name="Quiet", source="quiet", scopes=[ApiScope.ITEMS_WRITE])
    assert client.webhook_secret == ""
    assert webhook_emit(client=client, event_type="decision.final", payload=PAYLOAD) is None
    assert not WebhookEvent.objects.exists()


def test_a_client_with_a_callback_url_is_given_a_signing_secret(db: None) -> None:
    client, _ = api_client_create(
        actor="test", name="Svc", source="svc", scopes=[ApiScope.ITEMS_WRITE], callback_url="https://svc.example/hook"
    )
    assert client.webhook_secret.startswith("whsec_")
    assert len(client.webhook_secret) > 40


def test_a_failing_receiver_gets_the_event_retried_with_backoff_until_it_answers_2xx(
    receiver: Receiver, eager_retries: list[float], django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(receiver.url)

    event = emit(client, django_capture_on_commit_callbacks)

    assert [r.status for r in receiver.requests] == [500, 500, 500, 204]
    assert {r.event_id for r in receiver.requests} == {str(event.event_id)}
    assert {r.event_type for r in receiver.requests} == {"decision.final"}
    assert all(r.verified for r in receiver.requests)
    [ok] = receiver.successes()
    body = json.loads(ok.body)
    assert body == {
        "event_id": str(event.event_id),
        "type": "decision.final",
        "created_at": event.created_at.isoformat(),
        "data": PAYLOAD,
    }
    assert ok.body == webhook_body(event)  # the same bytes every attempt, re-signed each time
    # The task went through Celery's retry three times, each with a longer countdown than the base's half.
    assert len(eager_retries) == 3
    assert all(r >= 15 for r in eager_retries)
    log = list(event.deliveries.values_list("attempt", "status_code", "error", "delivered"))
    assert log == [(1, 500, "", False), (2, 500, "", False), (3, 500, "", False), (4, 204, "", True)]
    assert all(d.duration_ms < 5_000 for d in event.deliveries.all())
    assert (event.attempts, event.state, event.next_attempt_at, event.gave_up_at) == (4, "delivered", None, None)


def test_in_the_embedded_mode_a_failing_receiver_leaves_the_event_pending_and_the_caller_unharmed(
    receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # Eager errors propagate here (the project's settings), so the retry cannot run in-process.
    event = emit(client_for(receiver.url), django_capture_on_commit_callbacks)

    assert [r.status for r in receiver.requests] == [500]
    assert (event.state, event.attempts) == ("pending", 1)
    assert event.next_attempt_at is not None
    assert event.next_attempt_at > timezone.now()


def test_running_the_task_again_after_delivery_sends_nothing(
    receiver: Receiver, eager_retries: list[float], django_capture_on_commit_callbacks: Any
) -> None:
    event = emit(client_for(receiver.url), django_capture_on_commit_callbacks)
    assert len(receiver.requests) == 4

    assert webhook_deliver_task.apply(args=(str(event.event_id),)).get() is True  # a redelivered message
    webhook_deliver_task.apply(args=(str(event.event_id),))

    assert len(receiver.requests) == 4
    assert WebhookDelivery.objects.filter(event=event).count() == 4


def test_after_the_last_attempt_the_event_is_given_up_and_a_redrive_delivers_it_with_the_same_id(
    receiver: Receiver, eager_retries: list[float], ops_manager: User, django_capture_on_commit_callbacks: Any
) -> None:
    receiver.fail_first = 1_000
    event = emit(client_for(receiver.url), django_capture_on_commit_callbacks)

    assert len(receiver.requests) == 8
    assert len(eager_retries) == 7  # no retry is scheduled after the last attempt
    assert (event.state, event.attempts, event.next_attempt_at) == ("gave up", 8, None)
    assert event.gave_up_at is not None
    assert not event.deliveries.filter(delivered=True).exists()
    webhook_deliver_task.apply(args=(str(event.event_id),))  # a given-up event is not retried by a stray run
    assert len(receiver.requests) == 8

    receiver.fail_first = 0
    with django_capture_on_commit_callbacks(execute=True):
        webhook_redeliver(event=event, actor=ops_manager)

    event.refresh_from_db()
    assert (event.state, event.attempts, event.gave_up_at) == ("delivered", 1, None)
    assert [r.status for r in receiver.requests] == [500] * 8 + [204]
    assert {r.event_id for r in receiver.requests} == {str(event.event_id)}
    assert len(receiver.successes()) == 1
    assert event.deliveries.count() == 9
    audit = AuditLog.objects.get(action="webhook.redeliver")
    assert (audit.actor, audit.target_id, audit.before) == (
        ops_manager,
        str(event.pk),
        {"attempts": 8, "gave_up_at": ANY},
    )

    with pytest.raises(Conflict, match="is delivered"):
        webhook_redeliver(event=event, actor=ops_manager)


def test_an_unreachable_receiver_is_recorded_by_error_class(
    settings: Any, eager_retries: list[float], django_capture_on_commit_callbacks: Any
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    event = emit(client_for(f"http://127.0.0.1:{free_port()}/gone"), django_capture_on_commit_callbacks)

    assert event.state == "gave up"
    attempts = list(event.deliveries.values_list("status_code", "error", "delivered"))
    assert attempts == [(None, "ConnectError", False)] * 2


def test_a_slow_receiver_times_out_and_is_retried(
    settings: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.2
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    receiver.fail_first = 0
    handler = receiver.server.RequestHandlerClass
    original = handler.do_POST  # type: ignore[attr-defined]

    def slow(self: Any) -> None:
        time.sleep(0.5)
        original(self)

    monkeypatch.setattr(handler, "do_POST", slow)
    event = emit(client_for(receiver.url), django_capture_on_commit_callbacks)

    [attempt] = event.deliveries.all()
    # The receiver would have answered 200 after 0.5 s: a ReadTimeout means the 0.2 s limit cut the wait
    # short. How long the cut-off took is the machine's business (a loaded CI runner took 518 ms), so the
    # only bound checked is that the attempt waited for its timeout at all.
    assert (attempt.status_code, attempt.error, attempt.delivered) == (None, "ReadTimeout", False)
    assert attempt.duration_ms >= 190


def test_without_a_signing_secret_nothing_is_sent(
    receiver: Receiver, eager_retries: list[float], django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(receiver.url)
    client.webhook_secret = ""
    client.save(update_fields=["webhook_secret"])

    event = emit(client, django_capture_on_commit_callbacks)

    assert receiver.requests == []
    assert event.state == "gave up"
    assert set(event.deliveries.values_list("error", flat=True)) == {"NoWebhookSecret"}


def test_the_sweeper_resends_events_whose_attempt_is_long_overdue(
    receiver: Receiver, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    receiver.fail_first = 0
    client = client_for(receiver.url)
    # As if the broker had been down when the decision committed: stored, never sent.
    event = webhook_emit(client=client, event_type="decision.final", payload=PAYLOAD)
    assert event is not None
    fresh = webhook_emit(client=client, event_type="decision.final", payload=PAYLOAD)
    assert fresh is not None
    WebhookEvent.objects.filter(pk=event.pk).update(
        next_attempt_at=timezone.now() - settings.WEBHOOK_SWEEP_AFTER - timedelta(seconds=1)
    )

    assert webhook_events_sweep() == 1

    event.refresh_from_db()
    fresh.refresh_from_db()
    assert (event.state, fresh.state) == ("delivered", "pending")
    assert [r.event_id for r in receiver.requests] == [str(event.event_id)]


# --- the decision that emits it -----------------------------------------------------------------------


@pytest.fixture
def hate(db: None) -> tuple[Policy, DecisionLabel, EnforcementAction]:
    policy = Policy.objects.create(slug="hate", name="Hate", guidelines="No attacks on protected groups.")
    label = DecisionLabel.objects.create(policy=policy, slug="slur", name="Slur")
    action = EnforcementAction.objects.create(slug="remove", name="Remove", strength=2)
    policy.enforcement_actions.add(action)
    return policy, label, action


def _queued(queue: Queue, source: str, n: int, text: str, required_reviews: int = 1) -> ReviewItem:
    item = ReviewItem.objects.create(source=source, external_id=f"post-{n}", text=text, received_at=timezone.now())
    items_enqueue(item_ids=[item.pk], queue=queue, actor="test", required_reviews=required_reviews)
    item.refresh_from_db()
    return item


def test_a_final_decision_emits_one_event_without_the_content(
    receiver: Receiver,
    intake_queue: Queue,
    reviewer: User,
    qa_lead: User,
    hate: tuple[Policy, DecisionLabel, EnforcementAction],
    django_capture_on_commit_callbacks: Any,
) -> None:
    receiver.fail_first = 0
    client = client_for(receiver.url)
    policy, label, action = hate
    intake_queue.policies.add(policy)  # a decision cites a policy of the item's queue
    text = "HOSTILE-CONTENT-7f3a you people are vermin"
    item = _queued(intake_queue, client.source, 1, text, required_reviews=2)

    item_claim(item=item, actor=reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        first = decision_record(
            item=item,
            actor=reviewer,
            is_violation=True,
            policy=policy,
            labels=[label],
            action=action,
            rationale="RATIONALE-91c quoting: vermin",
        )
    assert not first.closed
    assert not WebhookEvent.objects.exists()  # an interim review tells the client nothing

    item.refresh_from_db()
    item_claim(item=item, actor=qa_lead)
    with django_capture_on_commit_callbacks(execute=True):
        final = decision_record(
            item=item,
            actor=qa_lead,
            is_violation=True,
            policy=policy,
            labels=[label],
            action=action,
            rationale="RATIONALE-91c",
        )
    assert final.closed
    assert ReviewItem.objects.get(pk=item.pk).state == ItemState.DECIDED

    event = WebhookEvent.objects.get()
    assert (event.client, event.event_type, event.state) == (client, "decision.final", "delivered")
    assert event.payload == {
        "item_id": item.pk,
        "external_id": "post-1",
        "source": "social-app",
        "kind": "content",
        "decision_id": final.decision.pk,
        "decided_by": "reviewer",
        "is_violation": True,
        "policy": "hate",
        "policy_version": 1,
        "labels": ["slur"],
        "action": "remove",
        "decided_at": final.decision.decided_at.isoformat(),
    }
    [received] = receiver.requests
    assert received.verified
    for secret_text in ("HOSTILE-CONTENT", "vermin", "RATIONALE"):
        assert secret_text not in received.body.decode()
        assert secret_text not in json.dumps(event.payload)


def test_an_item_of_a_client_without_a_callback_emits_nothing(
    intake_queue: Queue, reviewer: User, django_capture_on_commit_callbacks: Any
) -> None:
    api_client_create(actor="test", name="Quiet", source="quiet", scopes=[ApiScope.ITEMS_WRITE])
    for n, source in enumerate(["quiet", "no-such-client"]):
        item = _queued(intake_queue, source, n, "hello")
        item_claim(item=item, actor=reviewer)
        with django_capture_on_commit_callbacks(execute=True):
            assert decision_record(item=item, actor=reviewer, is_violation=False).closed
    assert not WebhookEvent.objects.exists()


# --- the admin ----------------------------------------------------------------------------------------


def test_ops_see_the_attempts_and_redeliver_from_the_admin(
    receiver: Receiver, eager_retries: list[float], admin_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    receiver.fail_first = 1_000
    event = emit(client_for(receiver.url), django_capture_on_commit_callbacks)
    assert event.state == "gave up"
    http = Client()
    assert http.login(username=admin_user.get_username(), password=PASSWORD)

    listing = http.get("/admin/core/webhookevent/?state=gave_up")
    assert listing.status_code == 200
    assert str(event.event_id) in listing.content.decode()
    page = http.get(f"/admin/core/webhookevent/{event.pk}/change/")
    assert page.status_code == 200
    assert page.content.decode().count("500") >= 8
    assert http.get("/admin/core/webhookdelivery/").status_code == 200
    assert http.get(f"/admin/core/webhookevent/?q={event.event_id}").status_code == 200
    assert http.get("/admin/core/webhookevent/?q=not-a-uuid").status_code == 200

    receiver.fail_first = 0
    with django_capture_on_commit_callbacks(execute=True):
        done = http.post(
            "/admin/core/webhookevent/",
            {"action": "redeliver", "_selected_action": [event.pk]},
            follow=True,
        )
    assert done.status_code == 200
    assert "Re-delivering 1 event(s)" in done.content.decode()
    event.refresh_from_db()
    assert event.state == "delivered"
    assert AuditLog.objects.filter(action="webhook.redeliver", actor=admin_user).count() == 1


def test_the_event_admin_is_read_only(admin_user: User) -> None:
    http = Client()
    assert http.login(username=admin_user.get_username(), password=PASSWORD)
    assert http.get("/admin/core/webhookevent/add/").status_code == 403
    assert http.get("/admin/core/webhookdelivery/add/").status_code == 403


# --- a real worker on Redis ---------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_retries_a_failing_receiver_and_delivers_once(
    shared_redis_url: str, celery_worker_factory: Any
) -> None:
    import redis

    from tests.conftest import celery_publishing_to

    with Receiver(SECRET, fail_first=2) as receiver, celery_publishing_to(shared_redis_url):
        worker = celery_worker_factory(shared_redis_url, queues="webhooks")
        worker.env["WEBHOOK_RETRY_BASE_SECONDS"] = "0.2"
        worker.start()
        client = client_for(receiver.url)
        with transaction.atomic():
            event = webhook_emit(client=client, event_type="decision.final", payload=PAYLOAD)
        assert event is not None

        wait_until(
            lambda: WebhookEvent.objects.get(pk=event.pk).delivered_at is not None,
            timeout=30,
            what="the worker to deliver the event",
        )
        webhook_deliver_task.delay(str(event.event_id))  # as if the broker redelivered the message
        broker = redis.Redis.from_url(shared_redis_url)
        wait_until(
            lambda: broker.llen("webhooks") == 0 and broker.hlen("unacked") == 0,
            timeout=30,
            what="the worker to take the repeated task",
        )
        time.sleep(0.3)

    assert [r.status for r in receiver.requests] == [500, 500, 204]
    assert {r.event_id for r in receiver.requests} == {str(event.event_id)}
    assert all(r.verified for r in receiver.requests)
    assert len(receiver.successes()) == 1
    assert list(WebhookDelivery.objects.filter(event=event).values_list("attempt", "delivered")) == [
        (1, False),
        (2, False),
        (3, True),
    ]
