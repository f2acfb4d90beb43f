"""Outbound webhooks: events stored with the change that caused them, then POSTed, signed, until the client
answers 2xx or the last attempt fails (the event is then given up, and a person may re-drive it).

Delivery is at least once: receivers dedupe by ``event_id``, which never changes for an event.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from celery import current_app
from celery.exceptions import Retry
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import KombuError

from ops_platform.core.errors import Conflict
from ops_platform.core.models import ApiClient, User, WebhookDelivery, WebhookEvent
from ops_platform.core.services import audit_record
from ops_platform.core.webhook_signing import SIGNATURE_HEADER, webhook_signature

logger = logging.getLogger(__name__)

# By name: tasks.py imports this module, so this module does not import it back.
DELIVER_TASK = "ops_platform.core.tasks.webhook_deliver_task"
USER_AGENT = "ops-platform-webhooks/1"


def webhook_emit(*, client: ApiClient, event_type: str, payload: dict[str, Any]) -> WebhookEvent | None:
    """Store an event for ``client`` and send it once the surrounding transaction commits.

    None when the client has no callback URL. ``payload`` must be JSON: ids, labels, policy, action, never
    the content itself.
    """
    if not client.callback_url:
        return None
    event = WebhookEvent.objects.create(
        client=client, event_type=event_type, payload=payload, next_attempt_at=timezone.now()
    )
    event_id = str(event.event_id)
    transaction.on_commit(lambda: webhook_send(event_id))
    return event


def webhooks_emit_many(*, client: ApiClient, event_type: str, payloads: list[dict[str, Any]]) -> int:
    """:func:`webhook_emit` for many events of one client (a batch of auto-actions or bulk decisions): one
    INSERT, and the sends after commit. Returns how many events were stored."""
    if not client.callback_url or not payloads:
        return 0
    now = timezone.now()
    events = WebhookEvent.objects.bulk_create(
        WebhookEvent(client=client, event_type=event_type, payload=payload, next_attempt_at=now) for payload in payloads
    )
    event_ids = [str(event.event_id) for event in events]

    def send_all() -> None:
        for event_id in event_ids:
            if not webhook_send(event_id):
                break  # the broker is down: the sweeper sends the rest

    transaction.on_commit(send_all)
    return len(events)


def webhook_send(event_id: str) -> bool:
    """Hand the event to the ``webhooks`` queue; with the broker unreachable, leave it for the sweeper."""
    try:
        current_app.tasks[DELIVER_TASK].delay(event_id)
    except (KombuError, OSError) as exc:
        logger.warning("broker unreachable (%s): webhook event %s left for the sweeper", type(exc).__name__, event_id)
        return False
    except Retry:
        # Eager mode with task_eager_propagates (the embedded demo) runs the first attempt in-process and
        # raises the retry instead of scheduling it: the failed attempt is recorded and the event stays
        # pending for the sweeper. A decision that committed must not fail because its receiver did.
        return True
    return True


def webhook_body(event: WebhookEvent) -> bytes:
    """The bytes POSTed and signed; the same for every attempt."""
    body = {
        "event_id": str(event.event_id),
        "type": event.event_type,
        "created_at": event.created_at.isoformat(),
        "data": event.payload,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def webhook_retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): doubling from the base up to the cap, with
    "equal jitter" (between half and all of it) so a receiver coming back is not hit by every event at once."""
    delay = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not a secret


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one run of the delivery task did; ``retry_in`` is set when another attempt is due."""

    event_id: str
    attempted: bool
    delivered: bool = False
    gave_up: bool = False
    retry_in: float | None = None


def webhook_deliver(*, event_id: str) -> DeliveryOutcome:
    """Make the next attempt at delivering an event, unless it was delivered or given up already.

    The attempt is counted (and committed) before the request goes out, so a worker killed mid-request
    still uses up an attempt; no database transaction is held open across the HTTP call.
    """
    now = timezone.now()
    with transaction.atomic():
        event = (
            WebhookEvent.objects.select_for_update(of=("self",))
            .select_related("client")
            .filter(event_id=event_id)
            .first()
        )
        if event is None or event.delivered_at is not None or event.gave_up_at is not None:
            return DeliveryOutcome(event_id, attempted=False, delivered=bool(event and event.delivered_at))
        event.attempts += 1
        event.next_attempt_at = now
        event.save(update_fields=["attempts", "next_attempt_at"])
    attempt = event.attempts

    status_code, error, duration_ms = _post(event)
    delivered = status_code is not None and 200 <= status_code < 300
    done_at = timezone.now()
    gave_up = not delivered and attempt >= settings.WEBHOOK_MAX_ATTEMPTS
    retry_in = None if delivered or gave_up else webhook_retry_delay(attempt)
    with transaction.atomic():
        WebhookDelivery.objects.create(
            event=event,
            attempt=attempt,
            at=done_at,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
            delivered=delivered,
        )
        WebhookEvent.objects.filter(pk=event.pk).update(
            delivered_at=done_at if delivered else None,
            gave_up_at=done_at if gave_up else None,
            next_attempt_at=done_at + timedelta(seconds=retry_in) if retry_in is not None else None,
        )
    if gave_up:
        logger.warning(
            "webhook event %s to client %s given up after %d attempts (last: %s)",
            event.event_id,
            event.client.source,
            attempt,
            status_code or error,
        )
    return DeliveryOutcome(event_id, attempted=True, delivered=delivered, gave_up=gave_up, retry_in=retry_in)


def _post(event: WebhookEvent) -> tuple[int | None, str, int]:
    """POST the signed event; (status code, error class, milliseconds). The response body is never read."""
    client = event.client
    if not client.callback_url:
        return None, "NoCallbackUrl", 0
    if not client.webhook_secret:
        # Unsigned events would let anyone forge decisions; better late (after the secret is set) than unsigned.
        return None, "NoWebhookSecret", 0
    body = webhook_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: webhook_signature(client.webhook_secret, body),
        "X-Event-Id": str(event.event_id),
        "X-Event-Type": event.event_type,
    }
    started = time.monotonic()
    try:
        with (
            httpx.Client(timeout=settings.WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False) as http,
            http.stream("POST", client.callback_url, content=body, headers=headers) as response,
        ):
            status: int | None = response.status_code
        error = ""
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        status, error = None, type(exc).__name__
    return status, error, round((time.monotonic() - started) * 1000)


def webhook_redeliver(*, event: WebhookEvent, actor: User | str) -> WebhookEvent:
    """Send a given-up event again with a fresh set of attempts and the same ``event_id``."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event.pk)
        if event.gave_up_at is None:
            raise Conflict(f"Webhook event {event.event_id} is {event.state}; only a given-up event is re-delivered.")
        before = {"attempts": event.attempts, "gave_up_at": event.gave_up_at.isoformat()}
        event.attempts = 0
        event.gave_up_at = None
        event.next_attempt_at = timezone.now()
        event.save(update_fields=["attempts", "gave_up_at", "next_attempt_at"])
        audit_record(
            actor=actor,
            action="webhook.redeliver",
            target=event,
            before=before,
            after={"event_id": str(event.event_id), "client": event.client_id, "type": event.event_type},
        )
        event_id = str(event.event_id)
        transaction.on_commit(lambda: webhook_send(event_id))
    return event


def webhook_events_sweep(*, now: datetime | None = None, limit: int = 1_000) -> int:
    """Re-send pending events whose next attempt is long overdue: the broker was down when they were
    emitted, lost a retry, or a worker died mid-attempt. A late original may still run too; the extra
    attempt is harmless (receivers dedupe) and counts toward the limit."""
    now = now or timezone.now()
    cutoff = now - settings.WEBHOOK_SWEEP_AFTER
    with transaction.atomic():
        ids = list(
            WebhookEvent.objects.pending()
            .select_for_update(skip_locked=True)
            .filter(next_attempt_at__lte=cutoff)
            .order_by("next_attempt_at")
            .values_list("pk", "event_id")[:limit]
        )
        # Not due again until another full sweep interval has passed, however the send below goes.
        WebhookEvent.objects.filter(pk__in=[pk for pk, _ in ids]).update(next_attempt_at=now)
    sent = 0
    for _, event_id in ids:
        if not webhook_send(str(event_id)):
            break
        sent += 1
    return sent
