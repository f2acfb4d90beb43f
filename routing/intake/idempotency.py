"""``Idempotency-Key`` for the intake API: the first call's HTTP response (status and body) is stored and replayed to
retries with the same key. API layer only: intake's services know nothing of HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict
from ops_platform.core.models import ApiClient
from routing.intake.models import IdempotencyRecord

# A stored idempotency record with no response this old belongs to a request that died mid-way.
ABANDONED_AFTER = timedelta(minutes=2)


class IdempotencyKeyReused(ApplicationError):
    status_code = 422
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was used with a different request body.", field="Idempotency-Key")


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any


def idempotent_call(
    *, client: ApiClient, key: str, request_hash: str, run: Callable[[], StoredResponse]
) -> tuple[StoredResponse, bool]:
    """Run ``run`` once per (client, key); later calls with the same key get the stored response.

    Returns the response and whether it was replayed. The same key with a different body is refused,
    as is a second call while the first is still running.
    """
    if not key or len(key) > 200:
        raise ApplicationError("Idempotency-Key must be 1 to 200 characters.", field="Idempotency-Key")
    record = _idempotency_claim(client=client, key=key, request_hash=request_hash)
    if record.response_status is not None:
        return StoredResponse(record.response_status, record.response_body), True
    try:
        with transaction.atomic():
            response = run()
            IdempotencyRecord.objects.filter(pk=record.pk).update(
                response_status=response.status, response_body=response.body
            )
    except BaseException:
        IdempotencyRecord.objects.filter(pk=record.pk, response_status__isnull=True).delete()
        raise
    return response, False


def _idempotency_claim(*, client: ApiClient, key: str, request_hash: str) -> IdempotencyRecord:
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(client=client, key=key, request_hash=request_hash)
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.get(client=client, key=key)
    if record.request_hash != request_hash:
        raise IdempotencyKeyReused()
    if record.response_status is None:
        if timezone.now() - record.created_at < ABANDONED_AFTER:
            raise Conflict("A request with this Idempotency-Key is still in progress.", field="Idempotency-Key")
        # The first attempt died mid-way (its transaction rolled back): this call takes over.
        IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=timezone.now())
    return record


def idempotency_records_purge(*, older_than: timedelta | None = None) -> int:
    cutoff: datetime = timezone.now() - (settings.API_IDEMPOTENCY_TTL if older_than is None else older_than)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
