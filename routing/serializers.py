"""The intake API's input and output shapes, validated strictly."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from queues.models import ItemKind, ReviewItem

MAX_TEXT = 50_000
MAX_METADATA_BYTES = 16_384
MAX_METADATA_DEPTH = 5
CLOCK_SKEW = timedelta(minutes=5)
LANGUAGE_RE = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$")


def _check_json(value: Any, depth: int = 0) -> int:
    """Depth of a JSON value; raises on strings PostgreSQL's jsonb cannot hold (NUL, lone surrogates)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Must not contain NUL characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise serializers.ValidationError("Contains an unpaired UTF-16 surrogate; send valid Unicode.") from exc
        return depth
    if isinstance(value, dict):
        return max(
            [_check_json(k, depth + 1) for k in value] + [_check_json(v, depth + 1) for v in value.values()],
            default=depth + 1,
        )
    if isinstance(value, list):
        return max((_check_json(v, depth + 1) for v in value), default=depth + 1)
    return depth


class Text(serializers.CharField):
    """Text kept exactly as sent (DRF's CharField already refuses NUL and lone surrogates)."""

    default_error_messages = {"not_a_string": "Not a valid string: expected a JSON string."}

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        # DRF would turn 12 into "12"; an integrator sending a number where text belongs has a bug.
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class ItemIn(serializers.Serializer):
    """One item as an integrating service submits it."""

    external_id = Text(max_length=200, help_text="The item's id in your system; unique within your source.")
    kind = serializers.ChoiceField(
        choices=[ItemKind.CONTENT, ItemKind.USER_REPORT],
        default=ItemKind.CONTENT,
        help_text="'content' or 'user_report'. Appeals go to /api/v1/appeals.",
    )
    text = Text(max_length=MAX_TEXT, allow_blank=True, default="")
    media_urls = serializers.ListField(
        child=serializers.URLField(max_length=2000),
        max_length=20,
        default=list,
        help_text="http(s) URLs of images or video; shown blurred until a reviewer reveals them.",
    )
    author_ref = Text(max_length=200, allow_blank=True, default="", help_text="Your id of the author.")
    surface = Text(max_length=100, allow_blank=True, default="", help_text="Where it appeared: post, comment, dm …")
    language = Text(max_length=16, allow_blank=True, default="", help_text="BCP 47 tag, e.g. 'en' or 'pt-BR'.")
    metadata = serializers.DictField(default=dict, help_text="Free JSON object, at most 16 KiB.")
    report_reasons = serializers.ListField(child=Text(max_length=500), max_length=100, default=list)
    received_at = serializers.DateTimeField(required=False, help_text="When your platform received it; default now.")

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

    def validate_external_id(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Must not be blank.")
        return value

    def validate_language(self, value: str) -> str:
        if value and not LANGUAGE_RE.match(value):
            raise serializers.ValidationError("Not a BCP 47 language tag (e.g. 'en', 'pt-BR').")
        return value

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, Any]:
        if _check_json(value) > MAX_METADATA_DEPTH:
            raise serializers.ValidationError(f"Nested deeper than {MAX_METADATA_DEPTH} levels.")
        if len(json.dumps(value, ensure_ascii=False).encode("utf-8")) > MAX_METADATA_BYTES:
            raise serializers.ValidationError(f"Larger than {MAX_METADATA_BYTES} bytes.")
        return value

    def validate_received_at(self, value: Any) -> Any:
        if value > timezone.now() + CLOCK_SKEW:
            raise serializers.ValidationError("Is in the future.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("text") and not attrs.get("media_urls"):
            raise serializers.ValidationError({"text": ["An item needs text or media_urls."]})
        if attrs.get("kind") == ItemKind.USER_REPORT and not attrs.get("report_reasons"):
            raise serializers.ValidationError({"report_reasons": ["A user report needs at least one reason."]})
        return attrs


class ItemResult(serializers.Serializer):
    """What happened to one submitted item."""

    index = serializers.IntegerField()
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    status = serializers.ChoiceField(choices=[201, 200], help_text="201 created, 200 already had it.")
    state = serializers.CharField()


class ItemBatchResult(serializers.Serializer):
    created = serializers.IntegerField()
    existing = serializers.IntegerField()
    results = ItemResult(many=True)


class DecisionOut(serializers.Serializer):
    id = serializers.IntegerField()
    is_violation = serializers.BooleanField()
    policy = serializers.CharField(allow_null=True)
    action = serializers.CharField(allow_null=True)
    decided_at = serializers.DateTimeField()


class ItemOut(serializers.ModelSerializer):
    """An item as it stands: where it is and, once decided, the outcome."""

    queue: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    decision = serializers.SerializerMethodField()

    class Meta:
        model = ReviewItem
        fields = [
            "id",
            "source",
            "external_id",
            "kind",
            "state",
            "queue",
            "priority",
            "due_at",
            "received_at",
            "triaged_at",
            "queued_at",
            "claimed_at",
            "decided_at",
            "decision",
        ]
        read_only_fields = fields

    @extend_schema_field(DecisionOut(allow_null=True))
    def get_decision(self, item: ReviewItem) -> dict[str, Any] | None:
        decision = self.context["decision"]
        if decision is None:
            return None
        return {
            "id": decision.pk,
            "is_violation": decision.is_violation,
            "policy": decision.policy.slug if decision.policy else None,
            "action": decision.action.slug if decision.action else None,
            "decided_at": decision.decided_at,
        }


class AppealIn(serializers.Serializer):
    """A user's appeal of a decision on one of your items."""

    external_id = Text(max_length=200, help_text="The appeal's id in your system; unique within your source.")
    item_external_id = Text(max_length=200, help_text="Your external_id of the decided item being appealed.")
    statement = Text(max_length=5_000, allow_blank=True, default="", help_text="What the user says, as text.")
    language = Text(max_length=16, allow_blank=True, default="")
    received_at = serializers.DateTimeField(required=False)

    def validate_language(self, value: str) -> str:
        if value and not LANGUAGE_RE.match(value):
            raise serializers.ValidationError("Not a BCP 47 language tag, e.g. 'en' or 'pt-BR'.")
        return value


class AppealResult(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    appeal_of = serializers.IntegerField()
    status = serializers.IntegerField()
    state = serializers.CharField()
