"""Review and QA by API (``/api/v1/``): a vendor's own tool claims, decides and releases review items; QA
re-reviews and adjudicates samples. Every write calls the same service as the web page, so every check (roles,
the queue's teams and vendors, the lease, the policies the queue offers) is the same; this module only resolves
who acts, parses, and chooses HTTP statuses.

It lives in ``qa`` because that layer may import both ``queues`` (the review services) and ``routing`` (the
intake's ``Idempotency-Key`` store, reused as is).

Who acts: see :func:`ops_platform.core.api_auth.acting_user` and docs/api.md.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ops_platform.core.api_auth import ApiKeyAuthentication, HasScopeOrSignedIn, acting_user, client_may_act_for
from ops_platform.core.api_errors import error_responses, flatten_errors
from ops_platform.core.errors import ApplicationError, Conflict, NotFound
from ops_platform.core.models import ApiClient, ApiScope, DecisionLabel, EnforcementAction, Policy, User, Vendor
from ops_platform.core.params import MAX_ID
from qa import services as qa_services
from qa.models import CalibrationItem, CalibrationSession, LabelTarget, QaSample, SampleState, SamplingPlan
from qa.selectors import SampleScope, calibration_participant, session_items_from, session_report_page
from qa.services.labels import MAX_LABELS as LABELS_PER_BATCH
from qa.statistics import Estimate
from queues import services as queue_services
from queues.models import ItemState, Queue, ReviewItem
from routing.intake.idempotency import StoredResponse, idempotent_call

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 200},
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "API keys: replays the first successful call's response to retries with the same key (24 h); the same "
        "key with another body or endpoint is refused with 422. Ignored for signed-in (session) calls."
    ),
)
REFUSALS = {
    "s400": "Invalid request, or refused by the service (e.g. a policy the queue does not offer, not your item).",
    "s403": "The key lacks the scope, may not act for this reviewer, or the reviewer may not do this.",
    "s409": "Conflict: the lease expired, the item or sample is not in the expected state, or a call with this "
    "Idempotency-Key is still running.",
    "s422": "Idempotency-Key reused with a different body or endpoint.",
}
ROW_REFUSALS = {
    **REFUSALS,
    "s400": "Invalid request, or a row the service refuses; `errors[0].field` names it, e.g. `labels[7].policy`.",
    "s409": "The session is closed, a row repeats a rating (the batch's or an earlier one), or a call with this "
    "Idempotency-Key is still running.",
}


class ReviewApiView(APIView):
    """API keys (with the scope) or a signed-in session; CSRF applies to session writes."""

    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [HasScopeOrSignedIn]


def _invalid(serializer: serializers.Serializer) -> Response:
    errors = flatten_errors(serializer.errors)
    return Response({"error": "invalid", "detail": "The request is invalid; see errors.", "errors": errors}, 400)


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ApplicationError("Send a JSON object.")
    return request.data


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The request's JSON object as ``serializer_class`` validates it; invalid, the API's handler answers the 400
    naming each field (``api_exception_handler``, the same body as ``_invalid``)."""
    serializer = serializer_class(data=_body(request))
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _sample_verdict(
    request: Request, pk: int, data: dict[str, Any]
) -> tuple[User, QaSample, Policy | None, EnforcementAction | None]:
    """Who acts, on which sample, with which policy and enforcement action: a re-review's or adjudication's."""
    return (
        acting_user(request, data.get("reviewer")),
        _sample(pk),
        _policy(data.get("policy")),
        _action(data.get("action")),
    )


def _idempotent(request: Request, run: Callable[[], StoredResponse]) -> Response:
    """Run the write once per API key and ``Idempotency-Key`` (intake's store); refusals are not stored."""
    key = request.headers.get("Idempotency-Key")
    client = request.user
    replayed = False
    if key is None or not isinstance(client, ApiClient):
        stored = run()
    else:
        payload = [request.method, request.path, request.data]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        stored, replayed = idempotent_call(client=client, key=key, request_hash=digest, run=run)
    response = Response(stored.body, status=stored.status)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def _policy(slug: str | None) -> Policy | None:
    if not slug:
        return None
    policy = Policy.objects.filter(slug=slug).first()
    if policy is None:
        raise ApplicationError(f"No policy '{slug}'.", field="policy")
    return policy


def _action(slug: str | None) -> EnforcementAction | None:
    if not slug:
        return None
    action = EnforcementAction.objects.filter(slug=slug).first()
    if action is None:
        raise ApplicationError(f"No enforcement action '{slug}'.", field="action")
    return action


def _labels(policy: Policy | None, slugs: list[str]) -> list[DecisionLabel]:
    if not slugs:
        return []
    if policy is None:
        raise ApplicationError("Labels belong to a policy: name the policy.", field="labels")
    labels = list(DecisionLabel.objects.filter(policy=policy, slug__in=slugs))
    missing = sorted(set(slugs) - {label.slug for label in labels})
    if missing:
        raise ApplicationError(f"Policy '{policy.slug}' has no label '{missing[0]}'.", field="labels")
    return labels


def _item(pk: int) -> ReviewItem:
    item = ReviewItem.objects.filter(pk=pk).first() if 1 <= pk <= MAX_ID else None
    if item is None:
        raise NotFound(f"No review item {pk}.", field="id")
    return item


def _sample(pk: int) -> QaSample:
    sample = QaSample.objects.filter(pk=pk).first() if 1 <= pk <= MAX_ID else None
    if sample is None:
        raise NotFound(f"No QA sample {pk}.", field="id")
    return sample


# --- serializers ----------------------------------------------------------------------------------------


def _reviewer_field() -> serializers.CharField:
    return serializers.CharField(
        required=False,
        max_length=150,
        help_text="Username of the person the call acts for. Required with an API key (one your key may act "
        "for); signed in, you act as yourself and may leave it out.",
    )


class ActorIn(serializers.Serializer):
    reviewer = _reviewer_field()


class VerdictIn(ActorIn):
    is_violation = serializers.BooleanField()
    policy = serializers.SlugField(required=False, allow_null=True, max_length=50, help_text="Policy slug.")
    action = serializers.SlugField(required=False, allow_null=True, max_length=50, help_text="Action slug.")
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")


class DecisionIn(VerdictIn):
    labels = serializers.ListField(
        child=serializers.SlugField(max_length=50), required=False, max_length=50, default=list
    )


class ReleaseIn(ActorIn):
    reason = serializers.CharField(max_length=500, help_text="Why the item is skipped (kept in its history).")


class AdjudicationIn(VerdictIn):
    severity = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1000)
    error_type = serializers.CharField(required=False, allow_null=True, max_length=30)


class ReviewItemOut(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]
    kind = serializers.CharField()
    text = serializers.CharField(allow_blank=True)
    media_urls = serializers.ListField(child=serializers.CharField())
    language = serializers.CharField(allow_blank=True)
    queue = serializers.CharField(allow_null=True, help_text="The queue's slug.")
    policies = serializers.ListField(child=serializers.CharField(), help_text="Policies the queue offers.")
    required_reviews = serializers.IntegerField()
    lease_expires_at = serializers.DateTimeField(allow_null=True)


class ClaimOut(serializers.Serializer):
    item = ReviewItemOut(allow_null=True, help_text="Null when nothing is waiting for this reviewer.")


class DecisionResultOut(serializers.Serializer):
    decision = serializers.IntegerField()
    item = serializers.IntegerField()
    closed = serializers.BooleanField(help_text="False: more independent reviews are needed, or adjudication.")
    adjudication = serializers.BooleanField()
    state = serializers.CharField()


class ReleaseOut(serializers.Serializer):
    item = serializers.IntegerField()
    state = serializers.CharField()


class SampleOut(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    item = ReviewItemOut()


class SampleClaimOut(serializers.Serializer):
    sample = SampleOut(allow_null=True, help_text="Null when no sample is waiting. Blind: no original decision.")


class ReReviewOut(serializers.Serializer):
    review = serializers.IntegerField()
    sample = serializers.IntegerField()
    agrees = serializers.BooleanField()
    state = serializers.CharField()


class AdjudicationOut(serializers.Serializer):
    adjudication = serializers.IntegerField()
    sample = serializers.IntegerField()
    error_type = serializers.CharField()
    severity = serializers.FloatField()
    correction = serializers.IntegerField(allow_null=True, help_text="The correcting decision, if one was made.")


def _item_out(item: ReviewItem) -> dict[str, Any]:
    queue = Queue.objects.filter(pk=item.queue_id).first() if item.queue_id else None
    return {
        "id": item.pk,
        "external_id": item.external_id,
        "source": item.source,
        "kind": item.kind,
        "text": item.text,
        "media_urls": [str(u) for u in item.media_urls or []],
        "language": item.language,
        "queue": queue.slug if queue else None,
        "policies": sorted(queue.policies.values_list("slug", flat=True)) if queue else [],
        "required_reviews": item.required_reviews,
        "lease_expires_at": item.lease_expires_at,
    }


def _serialized(serializer_class: type[serializers.Serializer], data: dict[str, Any]) -> Any:
    return serializer_class(data).data


# --- review items -----------------------------------------------------------------------------------------


class QueueClaimNextApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.REVIEWS_WRITE}

    @extend_schema(
        operation_id="queues_claim_next",
        summary="Claim the next item of a queue for a reviewer",
        description=(
            "As the review page's claim-next: the reviewer's held item in this queue (lease renewed) or the next "
            "one they may take, under a lease; `item` is null when nothing waits for them. 403 when the reviewer "
            "may not work the queue (its teams, vendors and skills)."
        ),
        request=ActorIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: ClaimOut, **error_responses(400, 403, 404, 409, 413, 422, **REFUSALS)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(ActorIn, request)
        actor = acting_user(request, data.get("reviewer"))
        queue = Queue.objects.filter(slug=slug).first()
        if queue is None:
            raise NotFound(f"No queue '{slug[:100]}'.", field="slug")

        def run() -> StoredResponse:
            item = queue_services.item_claim_next(queue=queue, actor=actor)
            return StoredResponse(200, _serialized(ClaimOut, {"item": _item_out(item) if item else None}))

        return _idempotent(request, run)


class ReviewItemDecisionApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.REVIEWS_WRITE}

    @extend_schema(
        operation_id="review_items_decide",
        summary="Decide a claimed item",
        description=(
            "As the review page's decision: only the reviewer holding the item's live lease may decide it, under "
            "a policy its queue offers, with that policy's labels and actions. An item needing N independent "
            "reviews goes back to its queue (or to adjudication on disagreement): `closed` says which."
        ),
        request=DecisionIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: DecisionResultOut, **error_responses(400, 403, 404, 409, 413, 422, **REFUSALS)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(DecisionIn, request)
        actor = acting_user(request, data.get("reviewer"))
        item = _item(pk)
        policy = _policy(data.get("policy"))
        action = _action(data.get("action"))
        labels = _labels(policy, data["labels"])

        def run() -> StoredResponse:
            result = queue_services.decision_record(
                item=item,
                actor=actor,
                is_violation=data["is_violation"],
                policy=policy,
                labels=labels,
                action=action,
                rationale=data["rationale"],
            )
            state = ReviewItem.objects.values_list("state", flat=True).get(pk=item.pk)
            body = {
                "decision": result.decision.pk,
                "item": item.pk,
                "closed": result.closed,
                "adjudication": result.adjudication,
                "state": state,
            }
            return StoredResponse(201, _serialized(DecisionResultOut, body))

        return _idempotent(request, run)


class ReviewItemReleaseApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.REVIEWS_WRITE}

    @extend_schema(
        operation_id="review_items_release",
        summary="Release (skip) a claimed item",
        description=(
            "Gives the item back to its queue with the reason; claim-next passes it to other reviewers first. "
            "Only the reviewer holding its live lease may release it."
        ),
        request=ReleaseIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: ReleaseOut, **error_responses(400, 403, 404, 409, 413, 422, **REFUSALS)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(ReleaseIn, request)
        actor = acting_user(request, data.get("reviewer"))
        item = _item(pk)

        def run() -> StoredResponse:
            queue_services.item_release(item=item, actor=actor, reason=data["reason"])
            state = ReviewItem.objects.values_list("state", flat=True).get(pk=item.pk)
            return StoredResponse(200, _serialized(ReleaseOut, {"item": item.pk, "state": state}))

        return _idempotent(request, run)


# --- QA ---------------------------------------------------------------------------------------------------


class SampleClaimIn(ActorIn):
    plan = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Only samples this sampling plan drew (its id)."
    )
    vendor = serializers.SlugField(required=False, max_length=50, help_text="Only decisions of this vendor (slug).")
    queue = serializers.SlugField(required=False, max_length=50, help_text="Only decisions made in this queue (slug).")
    policy = serializers.SlugField(required=False, max_length=50, help_text="Only decisions under this policy (slug).")


def _sample_scope(data: dict[str, Any]) -> SampleScope:
    """The claim's scope by ids; an unknown plan, vendor, queue or policy is refused, not read as 'any'."""

    def pk_of(model: Any, field: str, lookup: dict[str, Any]) -> int | None:
        if data.get(field) is None:
            return None
        pk = model.objects.filter(**lookup).values_list("pk", flat=True).first()
        if pk is None:
            raise ApplicationError(f"No {field} '{data[field]}'.", field=field)
        return int(pk)

    return SampleScope(
        plan_id=pk_of(SamplingPlan, "plan", {"pk": data.get("plan")}),
        vendor_id=pk_of(Vendor, "vendor", {"slug": data.get("vendor")}),
        queue_id=pk_of(Queue, "queue", {"slug": data.get("queue")}),
        policy_id=pk_of(Policy, "policy", {"slug": data.get("policy")}),
    )


class QaSampleClaimNextApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.QA_WRITE}

    @extend_schema(
        operation_id="qa_samples_claim_next",
        summary="Claim the next sample for blind re-review, in a scope",
        description=(
            "As the QA page: the held sample or the oldest waiting one in the scope (`plan`, `vendor`, `queue`, "
            "`policy` of the original decision; left out: any), never one of the reviewer's own decisions, and the "
            "ones they skipped only after every other. Blind: the original decision and its reviewer are not "
            "shown. Needs the QA role."
        ),
        request=SampleClaimIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: SampleClaimOut, **error_responses(400, 403, 409, 413, 422, **REFUSALS)},
    )
    def post(self, request: Request) -> Response:
        data = _valid(SampleClaimIn, request)
        actor = acting_user(request, data.get("reviewer"))
        scope = _sample_scope(data)

        def run() -> StoredResponse:
            sample = qa_services.sample_claim_next(actor=actor, scope=scope)
            out = None
            if sample is not None:
                out = {
                    "id": sample.pk,
                    "state": sample.state,
                    "lease_expires_at": sample.lease_expires_at,
                    "item": _item_out(ReviewItem.objects.get(pk=sample.item_id)),
                }
            return StoredResponse(200, _serialized(SampleClaimOut, {"sample": out}))

        return _idempotent(request, run)


class SampleSkipOut(serializers.Serializer):
    sample = serializers.IntegerField()
    state = serializers.CharField()
    skipped_at = serializers.DateTimeField()


class QaSampleSkipApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.QA_WRITE}

    @extend_schema(
        operation_id="qa_samples_skip",
        summary="Skip a claimed sample",
        description=(
            "Gives the held sample back unreviewed with the reason (recorded and audited); it waits for someone "
            "else, and the reviewer's next claims offer it only after every other waiting sample."
        ),
        request=ReleaseIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: SampleSkipOut, **error_responses(400, 403, 404, 409, 413, 422, **REFUSALS)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(ReleaseIn, request)
        actor = acting_user(request, data.get("reviewer"))
        sample = _sample(pk)

        def run() -> StoredResponse:
            skip = qa_services.sample_skip(sample=sample, actor=actor, reason=data["reason"])
            body = {"sample": sample.pk, "state": SampleState.PENDING, "skipped_at": skip.skipped_at}
            return StoredResponse(200, _serialized(SampleSkipOut, body))

        return _idempotent(request, run)


class QaSampleReReviewApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.QA_WRITE}

    @extend_schema(
        operation_id="qa_samples_re_review",
        summary="Submit the blind re-review of a claimed sample",
        description=(
            "Agreement with the original closes the sample and records QA-verified ground truth; disagreement "
            "sends it to adjudication. Only the QA reviewer holding the sample may re-review it."
        ),
        request=VerdictIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: ReReviewOut, **error_responses(400, 403, 404, 409, 413, 422, **REFUSALS)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(VerdictIn, request)
        actor, sample, policy, action = _sample_verdict(request, pk, data)

        def run() -> StoredResponse:
            review = qa_services.qa_review_submit(
                sample=sample,
                actor=actor,
                is_violation=data["is_violation"],
                policy=policy,
                action=action,
                rationale=data["rationale"],
            )
            state = QaSample.objects.values_list("state", flat=True).get(pk=sample.pk)
            body = {"review": review.pk, "sample": sample.pk, "agrees": review.agrees, "state": state}
            return StoredResponse(201, _serialized(ReReviewOut, body))

        return _idempotent(request, run)


class QaSampleAdjudicationApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.QA_WRITE}

    @extend_schema(
        operation_id="qa_samples_adjudicate",
        summary="Adjudicate a disputed sample",
        description=(
            "A QA lead who made neither decision sets the final label, with a rationale; the original's error type "
            "follows, weighted by severity (the policy's by default). A wrong original is corrected (a new decision "
            "supersedes it and the client is told)."
        ),
        request=AdjudicationIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: AdjudicationOut, **error_responses(400, 403, 404, 409, 413, 422, **REFUSALS)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(AdjudicationIn, request)
        actor, sample, policy, action = _sample_verdict(request, pk, data)

        def run() -> StoredResponse:
            adjudication = qa_services.adjudicate(
                sample=sample,
                actor=actor,
                is_violation=data["is_violation"],
                policy=policy,
                action=action,
                rationale=data["rationale"],
                severity=data.get("severity"),
                error_type=data.get("error_type"),
            )
            body = {
                "adjudication": adjudication.pk,
                "sample": sample.pk,
                "error_type": adjudication.error_type,
                "severity": adjudication.severity,
                "correction": adjudication.correction_id,
            }
            return StoredResponse(201, _serialized(AdjudicationOut, body))

        return _idempotent(request, run)


# --- calibration sessions ---------------------------------------------------------------------------------

MAX_SESSION_ITEMS = 100_000
MAX_LABELS = LABELS_PER_BATCH
MAX_REPORT_PAGE = 500


class SessionFilterIn(serializers.Serializer):
    queue = serializers.SlugField(max_length=50, help_text="The queue whose items to take.")
    state = serializers.ChoiceField(choices=ItemState.choices, required=False, help_text="Only items in this state.")
    limit = serializers.IntegerField(min_value=2, max_value=MAX_SESSION_ITEMS, default=1000)


class SessionIn(ActorIn):
    name = serializers.CharField(max_length=200)
    participants = serializers.ListField(
        child=serializers.CharField(max_length=150), min_length=2, max_length=1000, help_text="Usernames."
    )
    item_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        required=False,
        max_length=MAX_SESSION_ITEMS,
        help_text="The items, in order (no size cap but the body limit). Give this or `filter`.",
    )
    filter = SessionFilterIn(required=False, help_text="Take a queue's items (oldest first) instead of a list.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("item_ids" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError("Give either item_ids or filter.")
        return attrs


class SessionOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    items = serializers.IntegerField()
    participants = serializers.ListField(child=serializers.CharField())
    closed_at = serializers.DateTimeField(allow_null=True)


class RatingIn(ActorIn):
    item = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="The review item's id.")
    is_violation = serializers.BooleanField()
    policy = serializers.SlugField(required=False, allow_null=True, max_length=50, help_text="Policy slug.")
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")


class RatingOut(serializers.Serializer):
    rating = serializers.IntegerField()
    session = serializers.IntegerField()
    item = serializers.IntegerField()


class BatchRatingIn(serializers.Serializer):
    item = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="The review item's id.")
    is_violation = serializers.BooleanField()
    policy = serializers.SlugField(required=False, allow_null=True, max_length=50, help_text="Policy slug.")
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")


class RatingBatchIn(ActorIn):
    # DRF checks a list's max_length before validating its rows (the stubs do not know the argument).
    ratings = BatchRatingIn(  # type: ignore[call-arg]
        many=True, max_length=qa_services.MAX_RATINGS, help_text=f"1 to {qa_services.MAX_RATINGS} ratings."
    )


class BatchRatingOut(serializers.Serializer):
    rating = serializers.IntegerField()
    item = serializers.IntegerField()


class RatingBatchOut(serializers.Serializer):
    session = serializers.IntegerField()
    rated = serializers.IntegerField()
    ratings = BatchRatingOut(many=True, help_text="In the order sent.")


class ReportQuery(serializers.Serializer):
    reviewer = _reviewer_field()
    page = serializers.IntegerField(min_value=1, max_value=MAX_SESSION_ITEMS, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=MAX_REPORT_PAGE, default=100)


class EstimateOut(serializers.Serializer):
    value = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField()
    degenerate = serializers.BooleanField()


class ReportRowOut(serializers.Serializer):
    position = serializers.IntegerField()
    item = serializers.IntegerField()
    labels = serializers.DictField(child=serializers.CharField(), help_text="Username -> label (policy slug).")
    majority = serializers.CharField(allow_null=True, help_text="Null on a tie.")
    agreement = serializers.FloatField(allow_null=True, help_text="Share of this item's rater pairs that agree.")


class ReportPersonOut(serializers.Serializer):
    participant = serializers.CharField()
    rated = serializers.IntegerField()
    with_majority = serializers.IntegerField()


class ReportOut(serializers.Serializer):
    session = serializers.IntegerField()
    raters = serializers.CharField(help_text="Who the overall figures count as raters, and the unit.")
    alpha = EstimateOut(allow_null=True, help_text="Krippendorff's alpha (nominal), all participants.")
    agreement = EstimateOut(allow_null=True, help_text="Mean pairwise percent agreement, all participants.")
    people = ReportPersonOut(many=True)
    count = serializers.IntegerField(help_text="Items in the session.")
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    items = ReportRowOut(many=True)


def _session_out(session: CalibrationSession) -> dict[str, Any]:
    return {
        "id": session.pk,
        "name": session.name,
        "items": session.session_items.count(),
        "participants": sorted(session.participants.values_list("username", flat=True)),
        "closed_at": session.closed_at,
    }


def _estimate(estimate: Estimate | None) -> dict[str, Any] | None:
    """JSON has no NaN: an undefined bound (a degenerate estimate) is null."""
    if estimate is None:
        return None
    out = estimate.as_dict()
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()}


def _calibration_session(pk: int, actor: User) -> CalibrationSession:
    """As the page: a session is visible to its participants and to QA; to anyone else it does not exist."""
    session = CalibrationSession.objects.filter(pk=pk).first() if 1 <= pk <= MAX_ID else None
    if session is None or not (actor.has_perm("core.perform_qa") or calibration_participant(session, actor)):
        raise NotFound(f"No calibration session {pk} of yours.", field="id")
    return session


def _participants(request: Request, usernames: list[str]) -> list[User]:
    found = {u.username: u for u in User.objects.filter(username__in=usernames, is_active=True)}
    client = request.user
    for name in usernames:
        user = found.get(name)
        if user is None or (isinstance(client, ApiClient) and not client_may_act_for(client, user)):
            raise ApplicationError(f"No participant '{name[:150]}' you may name.", field="participants")
    return [found[name] for name in dict.fromkeys(usernames)]


class CalibrationSessionsApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.QA_WRITE}

    @extend_schema(
        operation_id="calibration_sessions_create",
        summary="Create a calibration session from a list of item ids or a queue filter",
        description=(
            "As the QA page, without its size cap: `item_ids` (in order) or `filter` (a queue's items, oldest "
            "first, up to `limit`). Needs the QA role. With an API key, every participant must be a person the "
            "key may act for."
        ),
        request=SessionIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: SessionOut, **error_responses(400, 403, 409, 413, 422, **REFUSALS)},
    )
    def post(self, request: Request) -> Response:
        data = _valid(SessionIn, request)
        actor = acting_user(request, data.get("reviewer"))
        participants = _participants(request, data["participants"])
        item_ids: list[int]
        if "filter" in data:
            wanted = data["filter"]
            queue = Queue.objects.filter(slug=wanted["queue"]).first()
            if queue is None:
                raise ApplicationError(f"No queue '{wanted['queue']}'.", field="filter.queue")
            item_ids = session_items_from(queue=queue, state=wanted.get("state"), limit=wanted["limit"])
        else:
            item_ids = data["item_ids"]

        def run() -> StoredResponse:
            session = qa_services.session_create(
                actor=actor, name=data["name"], item_ids=item_ids, participants=participants
            )
            return StoredResponse(201, _serialized(SessionOut, _session_out(session)))

        return _idempotent(request, run)


class CalibrationRatingsApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.QA_WRITE}

    @extend_schema(
        operation_id="calibration_ratings_create",
        summary="Rate one item of a calibration session",
        description="A participant's rating of one of the session's items; ratings are final (409 on a second).",
        request=RatingIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: RatingOut, **error_responses(400, 403, 404, 409, 413, 422, **REFUSALS)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(RatingIn, request)
        actor = acting_user(request, data.get("reviewer"))
        session = _calibration_session(pk, actor)
        session_item = CalibrationItem.objects.filter(session=session, item_id=data["item"]).first()
        if session_item is None:
            raise NotFound(f"Item {data['item']} is not in this session.", field="item")
        policy = _policy(data.get("policy"))

        def run() -> StoredResponse:
            rating = qa_services.rating_submit(
                session_item=session_item,
                actor=actor,
                is_violation=data["is_violation"],
                policy=policy,
                rationale=data["rationale"],
            )
            body = {"rating": rating.pk, "session": session.pk, "item": data["item"]}
            return StoredResponse(201, _serialized(RatingOut, body))

        return _idempotent(request, run)


def _rating_rows(rows: list[dict[str, Any]]) -> list[qa_services.RatingRow]:
    """Slugs to policies; an unknown one is refused by its row."""
    policies = {p.slug: p for p in Policy.objects.filter(slug__in={r["policy"] for r in rows if r.get("policy")})}
    out = []
    for i, row in enumerate(rows):
        policy = policies.get(row["policy"]) if row.get("policy") else None
        if row.get("policy") and policy is None:
            raise ApplicationError(f"Rating {i}: no policy '{row['policy']}'.", field=f"ratings[{i}].policy")
        out.append(qa_services.RatingRow(row["item"], row["is_violation"], policy, row["rationale"]))
    return out


class CalibrationRatingBatchApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.QA_WRITE}

    @extend_schema(
        operation_id="calibration_ratings_batch",
        summary="Rate many items of a calibration session in one call",
        description=(
            "A participant's ratings of up to 5,000 of the session's items, checked as a whole before any is kept "
            "(all or nothing): the first bad row is refused by its index, e.g. `ratings[7].item` (400: not in the "
            "session, an unknown policy, a violation without one; 409: an item already rated, or twice in the "
            "batch). The same checks as one rating; retries replay by `Idempotency-Key`."
        ),
        request=RatingBatchIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: RatingBatchOut, **error_responses(400, 403, 404, 409, 413, 422, **ROW_REFUSALS)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(RatingBatchIn, request)
        actor = acting_user(request, data.get("reviewer"))
        session = _calibration_session(pk, actor)
        rows = _rating_rows(data["ratings"])

        def run() -> StoredResponse:
            ratings = qa_services.ratings_submit(session=session, actor=actor, ratings=rows)
            out = [{"rating": r.pk, "item": row.item_id} for r, row in zip(ratings, rows, strict=True)]
            body = {"session": session.pk, "rated": len(out), "ratings": out}
            return StoredResponse(201, _serialized(RatingBatchOut, body))

        return _idempotent(request, run)


class CalibrationCloseApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.QA_WRITE}

    @extend_schema(
        operation_id="calibration_sessions_close",
        summary="Close a calibration session",
        description="Ends rating and opens the report to participants. Needs the QA role; closing twice is a no-op.",
        request=ActorIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: SessionOut, **error_responses(400, 403, 404, 409, 413, 422, **REFUSALS)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(ActorIn, request)
        actor = acting_user(request, data.get("reviewer"))
        session = _calibration_session(pk, actor)

        def run() -> StoredResponse:
            closed = qa_services.session_close(session=session, actor=actor)
            return StoredResponse(200, _serialized(SessionOut, _session_out(closed)))

        return _idempotent(request, run)


class CalibrationReportApi(ReviewApiView):
    required_scopes = {"GET": ApiScope.QA_READ}

    @extend_schema(
        operation_id="calibration_sessions_report",
        summary="A closed session's report, its items paginated",
        description=(
            "Overall figures count every participant as a rater and the session's items as units; each item row "
            "has everyone's label, the majority and the share of agreeing rater pairs. 409 while the session is "
            "open (nobody sees others' answers before it closes)."
        ),
        parameters=[ReportQuery],
        responses={200: ReportOut, **error_responses(400, 403, 404, 409, **REFUSALS)},
    )
    def get(self, request: Request, pk: int) -> Response:
        query = ReportQuery(data=request.query_params)
        if not query.is_valid():
            return _invalid(query)
        wanted = query.validated_data
        actor = acting_user(request, wanted.get("reviewer"))
        session = _calibration_session(pk, actor)
        if session.closed_at is None:
            raise Conflict("The report opens when the session closes.", field="id")
        size, page = wanted["page_size"], wanted["page"]
        report = session_report_page(session, page=page, page_size=size)
        names = dict(session.participants.values_list("pk", "username"))
        rows = report.items
        body = {
            "session": session.pk,
            "raters": "all participants of the session; unit: a session item",
            "alpha": _estimate(report.alpha),
            "agreement": _estimate(report.agreement),
            "people": [
                {"participant": p.participant.username, "rated": p.rated, "with_majority": p.with_majority}
                for p in report.people
            ],
            "count": report.count,
            "page": page,
            "page_size": size,
            "items": [
                {
                    "position": row.session_item.position,
                    "item": row.session_item.item_id,
                    "labels": {names.get(pid, str(pid)): label for pid, label in row.labels.items()},
                    "majority": row.majority,
                    "agreement": row.agreement,
                }
                for row in rows
            ],
        }
        return Response(_serialized(ReportOut, body))


# --- labels made elsewhere -------------------------------------------------------------------------------


class ExternalLabelIn(serializers.Serializer):
    item = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="The review item's id; or leave it out and name the item by `item_source` and `external_id`.",
    )
    item_source = serializers.CharField(
        required=False,
        max_length=100,
        help_text="The integrating service the item came from (the `source` it was sent to intake with).",
    )
    external_id = serializers.CharField(
        required=False, max_length=200, help_text="The item's id in that service (as sent to intake)."
    )
    is_violation = serializers.BooleanField()
    policy = serializers.SlugField(
        required=False, allow_null=True, max_length=50, help_text="Policy slug; required for a violation."
    )
    rater = serializers.CharField(
        max_length=200, help_text="Who made the label, as the source system names them (a worker id, an email)."
    )
    labelled_at = serializers.DateTimeField(help_text="When the label was made (ISO 8601 with a time zone).")
    participant = serializers.CharField(
        required=False,
        max_length=150,
        help_text="Calibration only: the session participant (username) the rating is recorded for.",
    )
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")


class LabelImportIn(ActorIn):
    target = serializers.ChoiceField(
        choices=LabelTarget.choices, help_text="`ground_truth` for items, or `calibration` ratings of `session`."
    )
    source = serializers.CharField(  # type: ignore[assignment]
        max_length=100, help_text="The system the labels were made in."
    )
    session = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="The calibration session (target `calibration`)."
    )
    # DRF checks a list's max_length before validating its rows (the stubs do not know the argument).
    labels = ExternalLabelIn(many=True, max_length=MAX_LABELS, help_text=f"1 to {MAX_LABELS} labels.")  # type: ignore[call-arg]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (attrs["target"] == LabelTarget.CALIBRATION) != ("session" in attrs):
            raise serializers.ValidationError({"session": "Calibration ratings name their session; ground truth none."})
        return attrs


class LabelImportOut(serializers.Serializer):
    id = serializers.IntegerField(help_text="The import batch (provenance of each label it brought).")
    target = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]
    session = serializers.IntegerField(allow_null=True)
    imported = serializers.IntegerField()
    imported_at = serializers.DateTimeField()


def _label_rows(request: Request, rows: list[dict[str, Any]]) -> list[qa_services.ExternalLabel]:
    """Slugs and usernames to rows; an unknown policy or a participant the key may not name is refused by row."""
    policies = {p.slug: p for p in Policy.objects.filter(slug__in={r["policy"] for r in rows if r.get("policy")})}
    wanted = {r["participant"] for r in rows if r.get("participant")}
    people = {u.username: u for u in User.objects.filter(username__in=wanted, is_active=True)}
    client = request.user
    out = []
    for i, row in enumerate(rows):
        policy = policies.get(row["policy"]) if row.get("policy") else None
        if row.get("policy") and policy is None:
            raise ApplicationError(f"Label {i}: no policy '{row['policy']}'.", field=f"labels[{i}].policy")
        participant = people.get(row["participant"]) if row.get("participant") else None
        if row.get("participant") and (
            participant is None or (isinstance(client, ApiClient) and not client_may_act_for(client, participant))
        ):
            raise ApplicationError(
                f"Label {i}: no participant '{row['participant']}' you may name.", field=f"labels[{i}].participant"
            )
        out.append(
            qa_services.ExternalLabel(
                item_id=row.get("item"),
                item_source=row.get("item_source", ""),
                external_id=row.get("external_id", ""),
                rater=row["rater"],
                labelled_at=row["labelled_at"],
                is_violation=row["is_violation"],
                policy=policy,
                participant=participant,
                rationale=row["rationale"],
            )
        )
    return out


class LabelImportsApi(ReviewApiView):
    required_scopes = {"POST": ApiScope.QA_WRITE}

    @extend_schema(
        operation_id="qa_label_imports_create",
        summary="Import labels made elsewhere, as ground truth or as calibration ratings",
        description=(
            "A batch of labels from a vendor's tool, a crowd platform or a policy team's golden set, each with its "
            "provenance (`rater`, `labelled_at`, and the batch's `source`). Each row names its item by `item` (the "
            "platform's id) or by `item_source` and `external_id` (as the integrating service sent it to intake); "
            "an unknown one is refused by its row (`labels[3].external_id`). `ground_truth`: each label becomes the "
            "item's latest verified label (origin `imported`), which classifier training and the ground-truth "
            "export read. `calibration`: each label is the rating of `participant` in the open `session`, through "
            "the same service as the rating page (one final rating per participant and item). All or nothing: the "
            "first bad row is refused by its index (`labels[7].policy`). Needs the QA role."
        ),
        request=LabelImportIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: LabelImportOut, **error_responses(400, 403, 404, 409, 413, 422, **ROW_REFUSALS)},
    )
    def post(self, request: Request) -> Response:
        data = _valid(LabelImportIn, request)
        actor = acting_user(request, data.get("reviewer"))
        session = _calibration_session(data["session"], actor) if data.get("session") else None
        labels = _label_rows(request, data["labels"])
        client = request.user if isinstance(request.user, ApiClient) else None

        def run() -> StoredResponse:
            batch = qa_services.labels_import(
                actor=actor, target=data["target"], source=data["source"], labels=labels, session=session, client=client
            )
            body = {
                "id": batch.pk,
                "target": batch.target,
                "source": batch.source,
                "session": batch.session_id,
                "imported": batch.count,
                "imported_at": batch.imported_at,
            }
            return StoredResponse(201, _serialized(LabelImportOut, body))

        return _idempotent(request, run)
