"""Intake bookkeeping: the responses remembered for ``Idempotency-Key`` replays."""

from django.db import models

from ops_platform.core.models import ApiClient


class IdempotencyRecord(models.Model):
    """One API call made with an ``Idempotency-Key``: replayed, not re-run, when the key comes again."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "key"], name="idempotency_key_unique_per_client")]

    def __str__(self) -> str:
        return f"{self.client_id}:{self.key}"
