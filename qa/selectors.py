"""Reads for QA: the statistics per queue, policy, vendor, reviewer and period, scorecards and coaching.

Every figure comes from ``qa.statistics`` with its interval; estimates from samples are weighted by each
sample's inclusion probability. Agreement compares the original decision with the blind re-review (and
the adjudicator, when there was one); accuracy counts a decision right when adjudication or a golden
answer found no error in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import User, Vendor
from qa.models import GoldenInjection, GoldenItem, QaSample, SampleState
from qa.review import MAX_SEVERITY
from qa.statistics import (
    ErrorType,
    Estimate,
    QaOutcome,
    accuracy,
    cohen_kappa,
    error_rates_by_type,
    krippendorff_alpha,
    percent_agreement,
    quality_score,
    rating_matrix,
)
from queues.models import GroundTruth

DASHBOARD_RESAMPLES = 500
NONE_LABEL = "none"


@dataclass(frozen=True)
class QaFilter:
    queue_id: int | None = None
    policy_id: int | None = None
    vendor_id: int | None = None
    reviewer_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None


def _scoped(qs: QuerySet[Any], f: QaFilter, *, queue: str, vendor: str, reviewer: str, at: str) -> QuerySet[Any]:
    """The filter's queue, vendor, reviewer and period applied through the given field names."""
    wanted = {queue: f.queue_id, vendor: f.vendor_id, reviewer: f.reviewer_id}
    qs = qs.filter(**{name: value for name, value in wanted.items() if value})
    if f.start:
        qs = qs.filter(**{f"{at}__gte": f.start})
    if f.end:
        qs = qs.filter(**{f"{at}__lt": f.end})
    return qs


def samples_closed(f: QaFilter) -> QuerySet[QaSample]:
    samples = QaSample.objects.filter(state=SampleState.CLOSED)
    if f.policy_id:
        samples = samples.filter(Q(original_policy_id=f.policy_id) | Q(review__policy_id=f.policy_id))
    return _scoped(samples, f, queue="original_queue_id", vendor="original_vendor_id",
                   reviewer="original_reviewer_id", at="closed_at")  # fmt: skip


def golden_scored(f: QaFilter) -> QuerySet[GoldenInjection]:
    injections = GoldenInjection.objects.filter(scored_at__isnull=False)
    if f.policy_id:
        injections = injections.filter(golden__expected_policy_id=f.policy_id)
    return _scoped(injections, f, queue="golden__queue_id", vendor="vendor_id", reviewer="reviewer_id",
                   at="scored_at")  # fmt: skip


def _label(is_violation: bool, policy_slug: str | None) -> str:
    return (policy_slug or "violation") if is_violation else NONE_LABEL


def outcome_of(error_type: str, severity: float, inclusion_probability: float) -> QaOutcome:
    return QaOutcome(ErrorType(error_type) if error_type else None, severity, inclusion_probability)


@dataclass(frozen=True)
class SliceStats:
    samples: int
    agreement: Estimate | None
    kappa: Estimate | None
    alpha: Estimate | None
    adjudicated_accuracy: Estimate | None
    golden_accuracy: Estimate | None
    quality: Estimate | None
    errors: dict[ErrorType, Estimate]


def slice_stats(f: QaFilter, *, n_resamples: int = DASHBOARD_RESAMPLES) -> SliceStats:
    rows = list(
        samples_closed(f).values_list(
            "pk", "original_is_violation", "original_policy__slug", "review__is_violation", "review__policy__slug",
            "adjudication__is_violation", "adjudication__policy__slug", "error_type", "severity",
            "inclusion_probability",
        )
    )  # fmt: skip
    originals, rereviews, triples = [], [], []
    outcomes: list[QaOutcome] = []
    adjudicated = adjudicated_right = 0
    for pk, o_v, o_p, r_v, r_p, a_v, a_p, error_type, severity, probability in rows:
        outcomes.append(outcome_of(error_type, severity, probability))
        if r_v is not None:
            originals.append(_label(o_v, o_p))
            rereviews.append(_label(r_v, r_p))
            triples += [(pk, "original", _label(o_v, o_p)), (pk, "qa", _label(r_v, r_p))]
        if a_v is not None:
            triples.append((pk, "adjudicator", _label(a_v, a_p)))
            adjudicated += 1
            adjudicated_right += not error_type
    agreement = kappa = alpha = None
    if len(originals) >= 2:
        matrix, _ = rating_matrix(triples)
        pairs, _ = rating_matrix([t for t in triples if t[1] != "adjudicator"])
        agreement = percent_agreement(pairs, n_resamples=n_resamples)
        kappa = cohen_kappa(originals, rereviews, n_resamples=n_resamples)
        alpha = krippendorff_alpha(matrix, n_resamples=n_resamples)
    golden = golden_scored(f).aggregate(n=Count("pk"), right=Count("pk", filter=Q(correct=True)))
    return SliceStats(
        samples=len(rows),
        agreement=agreement,
        kappa=kappa,
        alpha=alpha,
        adjudicated_accuracy=accuracy(adjudicated_right, adjudicated) if adjudicated else None,
        golden_accuracy=accuracy(golden["right"], golden["n"]) if golden["n"] else None,
        quality=quality_score(outcomes, max_severity=MAX_SEVERITY) if outcomes else None,
        errors=error_rates_by_type(outcomes) if outcomes else {},
    )


@dataclass(frozen=True)
class ScorecardRow:
    key: int
    name: str
    stats: SliceStats


def scorecards(by: Literal["reviewer", "vendor"], f: QaFilter) -> list[ScorecardRow]:
    """One row per reviewer (or vendor) with QA samples or golden results in the filter's scope."""
    if by == "reviewer":
        ids = set(samples_closed(f).exclude(original_reviewer=None).values_list("original_reviewer", flat=True))
        ids |= set(golden_scored(f).exclude(reviewer=None).values_list("reviewer", flat=True))
        people = User.objects.filter(pk__in=ids).order_by("username")
        return [
            ScorecardRow(p.pk, p.get_full_name() or p.get_username(), slice_stats(_narrow(f, reviewer_id=p.pk)))
            for p in people
        ]
    if by == "vendor":
        ids = set(samples_closed(f).exclude(original_vendor=None).values_list("original_vendor", flat=True))
        ids |= set(golden_scored(f).exclude(vendor=None).values_list("vendor", flat=True))
        return [
            ScorecardRow(v.pk, v.name, slice_stats(_narrow(f, vendor_id=v.pk)))
            for v in Vendor.objects.filter(pk__in=ids).order_by("name")
        ]
    raise ApplicationError(f"Scorecards are by reviewer or vendor, not {by!r}.", field="by")


def _narrow(f: QaFilter, **changes: int) -> QaFilter:
    return QaFilter(**{**f.__dict__, **changes})


@dataclass(frozen=True)
class CoachingEntry:
    sample: QaSample
    error_label: str


def coaching_for(user: User, *, limit: int = 100) -> tuple[list[CoachingEntry], list[GoldenInjection], SliceStats]:
    """A reviewer's own QA outcomes with the adjudicator's rationale, their golden results, their figures."""
    samples = list(
        QaSample.objects.filter(state=SampleState.CLOSED, original_reviewer=user)
        .select_related(
            "item",
            "original_policy",
            "original_action",
            "review__policy",
            "adjudication__policy",
            "adjudication__action",
        )
        .order_by("-closed_at")[:limit]
    )
    entries = [
        CoachingEntry(s, ErrorType(s.error_type).value.replace("_", " ") if s.error_type else "") for s in samples
    ]
    golden = list(
        golden_scored(QaFilter(reviewer_id=user.pk)).select_related("golden__expected_policy", "decision__policy")
        .order_by("-scored_at")[:limit]
    )  # fmt: skip
    return entries, golden, slice_stats(QaFilter(reviewer_id=user.pk))


def queue_counts() -> dict[str, int]:
    counts = dict(QaSample.objects.values_list("state").annotate(n=Count("pk")).values_list("state", "n"))
    return {state: counts.get(state, 0) for state in SampleState.values}


def adjudication_waiting() -> QuerySet[QaSample]:
    """Disputed samples, oldest first, with what the list shows."""
    return (
        QaSample.objects.filter(state=SampleState.ADJUDICATION)
        .select_related("item", "original_queue", "original_reviewer", "review__reviewer")
        .order_by("sampled_at", "pk")
    )


@dataclass(frozen=True)
class GoldenRow:
    golden: GoldenItem
    injections: int
    scored: int
    accuracy: Estimate | None


def golden_list() -> list[GoldenRow]:
    """Golden items with how often they were injected and how often reviewers got them right."""
    goldens = (
        GoldenItem.objects.select_related("queue", "expected_policy", "expected_action")
        .annotate(
            n_injected=Count("injections"),
            n_scored=Count("injections", filter=Q(injections__scored_at__isnull=False)),
            n_correct=Count("injections", filter=Q(injections__correct=True)),
        )
        .order_by("-is_active", "queue__name", "-created_at")
    )
    return [
        GoldenRow(g, g.n_injected, g.n_scored, accuracy(g.n_correct, g.n_scored) if g.n_scored else None)
        for g in goldens
    ]


def ground_truth_latest() -> QuerySet[GroundTruth]:
    """The latest verified label per item (a later record supersedes an earlier one), oldest item first."""
    latest = GroundTruth.objects.filter(item=OuterRef("item")).order_by("-recorded_at", "-pk").values("pk")[:1]
    return GroundTruth.objects.filter(pk=Subquery(latest)).order_by("item_id")
