"""The intake API's input and output shapes, validated strictly."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.validators import ProhibitNullCharactersValidator, RegexValidator, URLValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from queues.models import ItemKind, ReviewItem
from routing.intake.services import created_at_problem

MAX_TEXT = 50_000
MAX_METADATA_BYTES = 16_384
MAX_METADATA_DEPTH = 5


def _check_json(value: Any, *, max_depth: int) -> None:
    """Refuse JSON nested deeper than ``max_depth`` or holding strings PostgreSQL cannot store as UTF-8 (lone
    surrogates). Iterative, and stops at the first level too deep: a hostile nesting cannot exhaust the stack.
    NUL is allowed: the model's field escapes it."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, str):
            try:
                current.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise serializers.ValidationError("Contains an unpaired UTF-16 surrogate; send valid Unicode.") from exc
            continue
        if isinstance(current, dict | list):
            if depth + 1 > max_depth:
                raise serializers.ValidationError(f"Nested deeper than {max_depth} levels.")
            children = [*current.keys(), *current.values()] if isinstance(current, dict) else current
            stack.extend((child, depth + 1) for child in children)


# An identifier (external id, author, surface, language) must not contain U+0000; content text may.
NO_NUL = r"^[^\x00]*$"
LANGUAGE_PATTERN = r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$"  # blank is allowed separately


class Text(serializers.CharField):
    """Text kept exactly as sent. Lone surrogates are refused (they are not Unicode text); U+0000 is refused
    unless ``allow_nul`` (content, stored by a NUL-safe field). ``pattern`` is checked and documented."""

    default_error_messages = {"not_a_string": "Not a valid string: expected a JSON string."}

    def __init__(self, *, allow_nul: bool = False, pattern: str = NO_NUL, problem: str = "", **kwargs: Any):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        # DRF's own NUL check, replaced by a pattern the OpenAPI schema shows (or by nothing for content); its
        # per-character surrogate check by one UTF-8 encode in to_internal_value, with the same message (why:
        # docs/performance.md, "routing/intake/serializers.py").
        dropped = (ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator)
        self.validators = [v for v in self.validators if not isinstance(v, dropped)]
        if not allow_nul:
            self.validators.append(RegexValidator(pattern, problem or "Must not contain NUL (U+0000)."))

    def to_internal_value(self, data: Any) -> str:
        # DRF would turn 12 into "12"; an integrator sending a number where text belongs has a bug.
        if not isinstance(data, str):
            self.fail("not_a_string")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError as exc:
            ProhibitSurrogateCharactersValidator()(exc.object[exc.start : exc.end])
            raise  # only a surrogate fails to encode; the validator raised above
        return super().to_internal_value(data)


class HttpUrl(serializers.URLField):
    """An http(s) URL: Django's URL validator also takes ftp and ftps, which no reviewer's browser should fetch."""

    default_error_messages = {"invalid": "Enter a valid http or https URL."}

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, URLValidator)]
        self.validators.append(URLValidator(schemes=["http", "https"], message=self.error_messages["invalid"]))


class CreatedAt(serializers.DateTimeField):
    """The content's creation time as the client's platform recorded it: kept, never used for ordering or due
    times (those follow the server's receipt time), and refused when implausible."""

    def to_internal_value(self, value: Any) -> Any:
        parsed = super().to_internal_value(value)
        problem = created_at_problem(parsed, now=timezone.now())
        if problem:
            raise serializers.ValidationError(problem)
        return parsed


def language_field(**kwargs: Any) -> Text:
    return Text(
        max_length=16,
        allow_blank=True,
        default="",
        pattern=LANGUAGE_PATTERN,
        problem="Not a BCP 47 language tag, e.g. 'en' or 'pt-BR'.",
        **kwargs,
    )


class ItemIn(serializers.Serializer):
    """One item as an integrating service submits it."""

    external_id = Text(max_length=200, help_text="The item's id in your system; unique within your source.")
    kind = serializers.ChoiceField(
        choices=[ItemKind.CONTENT, ItemKind.USER_REPORT],
        default=ItemKind.CONTENT,
        help_text="'content' or 'user_report'. Appeals go to /api/v1/appeals.",
    )
    text = Text(max_length=MAX_TEXT, allow_blank=True, default="", allow_nul=True, help_text="Kept exactly as sent.")
    media_urls = serializers.ListField(
        child=HttpUrl(max_length=2000),
        max_length=20,
        default=list,
        help_text="http(s) URLs of images or video; shown blurred until a reviewer reveals them.",
    )
    author_ref = Text(
        max_length=200,
        allow_blank=True,
        default="",
        help_text="Your id of the author; for a report whose subject is 'account', the account reported.",
    )
    subject = serializers.ChoiceField(
        choices=["content", "account"],
        default="content",
        help_text="What a user report is about: 'content' (the text and media sent) or 'account' (the account "
        "author_ref names; text and media may then be empty).",
    )
    reporter_ref = Text(
        max_length=200, allow_blank=True, default="", help_text="For a user report: your id of the account reporting."
    )
    surface = Text(max_length=100, allow_blank=True, default="", help_text="Where it appeared: post, comment, dm …")
    language = language_field(help_text="BCP 47 tag, e.g. 'en' or 'pt-BR'.")
    metadata = serializers.DictField(default=dict, help_text="Free JSON object, at most 16 KiB.")
    report_reasons = serializers.ListField(child=Text(max_length=500, allow_nul=True), max_length=100, default=list)
    created_at = CreatedAt(
        required=False,
        help_text="When the content was created on your platform: not in the future, not older than "
        "INTAKE_CREATED_AT_MAX_AGE_DAYS. Kept as information; queue order and due times follow the time this "
        "platform received the item. `received_at`, its deprecated former name, is still read as created_at.",
    )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields) - {DEPRECATED_CREATED_AT})
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
            if DEPRECATED_CREATED_AT in data:
                return created_at_alias_read(data, super().to_internal_value)
        return super().to_internal_value(data)

    def validate_external_id(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Must not be blank.")
        return value

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value, max_depth=MAX_METADATA_DEPTH)
        if len(json.dumps(value, ensure_ascii=False).encode("utf-8")) > MAX_METADATA_BYTES:
            raise serializers.ValidationError(f"Larger than {MAX_METADATA_BYTES} bytes.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        about_account = attrs.get("subject") == "account"
        if about_account and attrs.get("kind") != ItemKind.USER_REPORT:
            raise serializers.ValidationError({"subject": ["Only a user report can be about an account."]})
        if about_account and not attrs.get("author_ref"):
            raise serializers.ValidationError({"author_ref": ["A report about an account names it in author_ref."]})
        if attrs.get("reporter_ref") and attrs.get("kind") != ItemKind.USER_REPORT:
            raise serializers.ValidationError({"reporter_ref": ["Only a user report has a reporter."]})
        if not about_account and not attrs.get("text") and not attrs.get("media_urls"):
            raise serializers.ValidationError({"text": ["An item needs text or media_urls."]})
        if attrs.get("kind") == ItemKind.USER_REPORT and not attrs.get("report_reasons"):
            raise serializers.ValidationError({"report_reasons": ["A user report needs at least one reason."]})
        return attrs


# The field's name until clients could send their own receipt time: read as created_at, and not declared, so a
# serializer does not walk one more field per item for it (intake validates a thousand items per call).
DEPRECATED_CREATED_AT = "received_at"


def created_at_alias_read(data: Any, read: Callable[[Any], Any]) -> Any:
    """``read(data)`` with the deprecated ``received_at`` read as ``created_at``; its errors keep the name sent."""
    if not isinstance(data, dict) or DEPRECATED_CREATED_AT not in data:
        return read(data)
    if "created_at" in data:
        raise serializers.ValidationError(
            {DEPRECATED_CREATED_AT: ["Deprecated name of created_at: send created_at alone."]}
        )
    renamed = {("created_at" if key == DEPRECATED_CREATED_AT else key): value for key, value in data.items()}
    try:
        return read(renamed)
    except serializers.ValidationError as exc:
        if isinstance(exc.detail, dict) and "created_at" in exc.detail:
            exc.detail[DEPRECATED_CREATED_AT] = exc.detail.pop("created_at")
        raise


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

    queue: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True
    )
    decision = serializers.SerializerMethodField()

    class Meta:
        model = ReviewItem
        fields = [
            "id",
            "source",
            "external_id",
            "kind",
            "text",
            "author_ref",
            "surface",
            "language",
            "metadata",
            "report_reasons",
            "state",
            "queue",
            "priority",
            "due_at",
            "created_at",
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
    statement = Text(
        max_length=5_000, allow_blank=True, default="", allow_nul=True, help_text="What the user says, as text."
    )
    language = language_field()
    created_at = CreatedAt(
        required=False,
        help_text="When the user filed the appeal on your platform (as for items; `received_at` is read as it).",
    )

    def to_internal_value(self, data: Any) -> Any:
        return created_at_alias_read(data, super().to_internal_value)


class AppealResult(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    appeal_of = serializers.IntegerField()
    status = serializers.IntegerField()
    state = serializers.CharField()
