"""Reads for QA: the statistics per queue, policy, vendor, reviewer and period, scorecards and coaching, the
calibration report, and what the QA pages list and show.

Every figure comes from ``qa.statistics`` with its interval; estimates from samples are weighted by each
sample's inclusion probability. Agreement, Cohen's kappa and Krippendorff's alpha on one row all compare the
same two raters, the original decision and the blind re-review, over the same units (closed samples with a
re-review): the adjudicator rates only disputed samples and sides with one party, so counting them as a third
rater would inflate alpha. Adjudication feeds accuracy instead (docs/qa.md, "Definitions"): a decision
counts right when adjudication or a golden answer found no error in it. N-review queues have their own
multi-rater figures (``independent_reviews``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.figures import MIN_ITEMS
from ops_platform.core.localday import day_end, today_start
from ops_platform.core.models import Policy, User, Vendor
from qa.models import (
    MAX_SEVERITY,
    CalibrationItem,
    CalibrationRating,
    CalibrationSession,
    GoldenInjection,
    GoldenItem,
    GoldenRate,
    QaSample,
    QaScorecardDaily,
    SampleState,
    SamplingPlan,
)
from qa.rollups import group_filter, sample_groups
from qa.statistics import (
    ErrorType,
    Estimate,
    QaOutcome,
    accuracy,
    agreement_rate,
    fleiss_kappa,
    krippendorff_alpha,
    pair_agreement,
    percent_agreement,
    rating_matrix,
    weighted_proportion_from_sums,
)
from queues.models import Decision, Queue, ReviewItem
from queues.selectors import ground_truth_latest

DASHBOARD_RESAMPLES = 500
MIN_UNITS_TO_JUDGE = MIN_ITEMS  # fewer units than this: "too few to judge" instead of a figure
NONE_LABEL = "none"
NO_VIOLATION = "no violation"  # a calibration rating's label when it found none


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
    return _scoped(
        samples,
        f,
        queue="original_queue_id",
        vendor="original_vendor_id",
        reviewer="original_reviewer_id",
        at="closed_at",
    )


def golden_scored(f: QaFilter) -> QuerySet[GoldenInjection]:
    injections = GoldenInjection.objects.filter(scored_at__isnull=False)
    if f.policy_id:
        injections = injections.filter(golden__expected_policy_id=f.policy_id)
    return _scoped(injections, f, queue="golden__queue_id", vendor="vendor_id", reviewer="reviewer_id", at="scored_at")


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
    """The figures of the filter's closed samples and golden results, computed from the raw rows; scorecards and
    the coaching page read the same figures from the rollup (``scorecard_stats``)."""
    golden = golden_scored(f).aggregate(n=Count("pk"), right=Count("pk", filter=Q(correct=True)))
    return stats_of(sample_groups(samples_closed(f)), golden["n"], golden["right"], n_resamples=n_resamples)


def stats_of(
    groups: Iterable[Mapping[str, Any]],
    golden: int,
    golden_right: int,
    *,
    n_resamples: int = DASHBOARD_RESAMPLES,
    slugs: Mapping[int, str] | None = None,
) -> SliceStats:
    """A slice's figures from its sample groups (``qa.rollups.sample_groups``, or rollup rows summed alike) and
    its golden counts: the one definition behind every QA figure."""
    slugs = _policy_slugs() if slugs is None else slugs
    pairs: Counter[tuple[str, str]] = Counter()
    errors: Counter[str] = Counter()
    samples = adjudicated = adjudicated_right = 0
    weight = weight_sq = loss = 0.0
    for g in groups:
        n = g["samples"]
        samples, weight, loss = samples + n, weight + g["weight"], loss + g["loss"]
        weight_sq += g["weight_sq"]
        if g["error_type"]:
            errors[g["error_type"]] += g["weight"]
        if g["review_violation"] is not None:
            original = _label(g["original_violation"], slugs.get(g["original_policy_id"]))
            pairs[original, _label(g["review_violation"], slugs.get(g["review_policy_id"]))] += n
        if g["adjudicated"]:
            adjudicated += n
            adjudicated_right += 0 if g["error_type"] else n
    together = pair_agreement(pairs, n_resamples=n_resamples) if pairs.total() >= 2 else None
    quality = None
    if samples and weight > 0:
        lost = weighted_proportion_from_sums(loss / MAX_SEVERITY, weight, weight_sq, samples)
        quality = Estimate(1 - lost.value, 1 - lost.high, 1 - lost.low, lost.n)
    return SliceStats(
        samples=samples,
        agreement=together.agreement if together else None,
        kappa=together.kappa if together else None,
        alpha=together.alpha if together else None,
        adjudicated_accuracy=accuracy(adjudicated_right, adjudicated) if adjudicated else None,
        golden_accuracy=accuracy(golden_right, golden) if golden else None,
        quality=quality,
        errors={t: weighted_proportion_from_sums(errors[t.value], weight, weight_sq, samples) for t in ErrorType}
        if quality
        else {},
    )


def _policy_slugs() -> dict[int, str]:
    return dict(Policy.objects.values_list("pk", "slug"))


LABEL_FIELDS = ("original_violation", "original_policy_id", "review_violation", "review_policy_id")


def scorecard_stats(
    by: Literal["reviewer", "vendor"], f: QaFilter, *, n_resamples: int = DASHBOARD_RESAMPLES
) -> dict[int, SliceStats]:
    """The figures of every reviewer (or vendor) in the filter's scope, read from the scorecard rollup for the
    days before today and from today's closed samples (grouped alike in the database), and one grouped query of
    golden results: the figures ``slice_stats`` gives each from raw rows. The period is in whole local days (the
    filter's start and end are local midnights, as the form gives them)."""
    key = f"{by}_id"
    today = timezone.localdate()
    rows = QaScorecardDaily.objects.filter(
        group_filter(reviewer_id=f.reviewer_id, vendor_id=f.vendor_id, queue_id=f.queue_id, policy_id=f.policy_id),
        day__lt=today,  # today is read live below: a sample closed a minute ago counts at once
    ).exclude(**{key: None})
    if f.start:
        rows = rows.filter(day__gte=timezone.localdate(f.start))
    if f.end:
        rows = rows.filter(day__lt=timezone.localdate(f.end))
    groups: dict[int, list[dict[str, Any]]] = {}
    summed = rows.values(key, *LABEL_FIELDS, "adjudicated", "error_type").annotate(
        samples=Sum("samples"), weight=Sum("weight"), weight_sq=Sum("weight_sq"), loss=Sum("loss")
    )
    for g in summed.order_by():
        groups.setdefault(g[key], []).append(g)
    start, end = max(f.start or today_start(), today_start()), min(f.end or day_end(today), day_end(today))
    if start < end:
        for g in sample_groups(samples_closed(QaFilter(**{**f.__dict__, "start": start, "end": end}))):
            if g[key] is not None:
                groups.setdefault(g[key], []).append(g)
    golden_key = "reviewer" if by == "reviewer" else "vendor"
    golden = {
        g[golden_key]: (g["n"], g["right"])
        for g in golden_scored(f)
        .exclude(**{golden_key: None})
        .values(golden_key)
        .annotate(n=Count("pk"), right=Count("pk", filter=Q(correct=True)))
        .order_by()
    }
    inputs = {pk: (groups.get(pk, []), *golden.get(pk, (0, 0))) for pk in groups.keys() | golden.keys()}
    return stats_cached(inputs, n_resamples=n_resamples, slugs=_policy_slugs())


STATS_CACHE_SECONDS = 60 * 60  # keyed by content, an entry is never stale: this only bounds memory


def stats_cached(
    inputs: Mapping[int, tuple[list[dict[str, Any]], int, int]], *, n_resamples: int, slugs: Mapping[int, str]
) -> dict[int, SliceStats]:
    """``stats_of`` of each slice ({key: (sample groups, golden results, golden right)}), cached under a digest of
    everything it is computed from (the groups, the golden counts, the policy slugs that name the labels, the
    resamples): keyed by content, an entry can never be stale, and a slice whose rows did not change since the last
    page (every reviewer but the few a rollup refresh or a sample closed today touched) is not computed again
    (issue 19: the scorecards spent ~0.5 s a page in the bootstrap intervals at a million decisions)."""
    shared = json.dumps([n_resamples, sorted(slugs.items())])
    keys = {}
    for pk, (groups, golden, right) in inputs.items():
        rows = sorted(json.dumps(g, sort_keys=True, default=str) for g in groups)
        body = json.dumps([shared, rows, golden, right])
        keys[pk] = "qa:slice-stats:" + hashlib.sha256(body.encode()).hexdigest()
    found: dict[str, SliceStats] = cache.get_many(list(keys.values()))
    out, fresh = {}, {}
    for pk, key in keys.items():
        stats = found.get(key)
        if stats is None:
            groups, golden, right = inputs[pk]
            stats = fresh[key] = stats_of(groups, golden, right, n_resamples=n_resamples, slugs=slugs)
        out[pk] = stats
    if fresh:
        cache.set_many(fresh, STATS_CACHE_SECONDS)
    return out


@dataclass(frozen=True)
class ScorecardRow:
    key: int
    name: str
    stats: SliceStats


def scorecards(by: Literal["reviewer", "vendor"], f: QaFilter) -> list[ScorecardRow]:
    """One row per reviewer (or vendor) with QA samples or golden results in the filter's scope, from the rollup."""
    if by not in ("reviewer", "vendor"):
        raise ApplicationError(f"Scorecards are by reviewer or vendor, not {by!r}.", field="by")
    stats = scorecard_stats(by, f)
    if by == "reviewer":
        people = User.objects.filter(pk__in=stats).order_by("username")
        return [ScorecardRow(p.pk, p.get_full_name() or p.get_username(), stats[p.pk]) for p in people]
    return [ScorecardRow(v.pk, v.name, stats[v.pk]) for v in Vendor.objects.filter(pk__in=stats).order_by("name")]


def scorecards_warm() -> int:
    """The scorecards page's default figures (every reviewer and vendor, all time, and the independent reviews)
    computed ahead of the page: the periodic rollup refresh calls it after each refresh, so only a slice whose rows
    changed is computed, and not by a page. Returns the rows computed or found."""
    f = QaFilter()
    return len(scorecards("reviewer", f)) + len(scorecards("vendor", f)) + len(independent_reviews(f))


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
        golden_scored(QaFilter(reviewer_id=user.pk))
        .select_related("golden__expected_policy", "decision__policy")
        .order_by("-scored_at")[:limit]
    )
    mine = QaFilter(reviewer_id=user.pk)
    return entries, golden, scorecard_stats("reviewer", mine).get(user.pk) or stats_of([], 0, 0)


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


# --- samples as the pages show them -----------------------------------------------------------------------


@dataclass(frozen=True)
class SampleScope:
    """Which samples a QA reviewer works: by the plan that drew them and the original decision's vendor, queue
    and policy (None: any)."""

    plan_id: int | None = None
    vendor_id: int | None = None
    queue_id: int | None = None
    policy_id: int | None = None

    def as_query(self) -> dict[str, int]:
        """The scope as query parameters (the claim form and the pages carry it by id)."""
        names = {"plan": self.plan_id, "vendor": self.vendor_id, "queue": self.queue_id, "policy": self.policy_id}
        return {name: value for name, value in names.items() if value}


def samples_in_scope(scope: SampleScope) -> QuerySet[QaSample]:
    wanted = {
        "plan_id": scope.plan_id,
        "original_vendor_id": scope.vendor_id,
        "original_queue_id": scope.queue_id,
        "original_policy_id": scope.policy_id,
    }
    return QaSample.objects.filter(**{name: value for name, value in wanted.items() if value})


def samples_waiting_in_scope(scope: SampleScope) -> int:
    """Samples waiting for a first re-review in the scope (the home page's count)."""
    return samples_in_scope(scope).filter(state=SampleState.PENDING).count()


def sample_held(*, actor: User, now: datetime | None = None) -> QaSample | None:
    """The sample ``actor`` holds for blind re-review while its lease runs."""
    now = now or timezone.now()
    return QaSample.objects.filter(state=SampleState.CLAIMED, assignee=actor, lease_expires_at__gt=now).first()


def sample_in_review(*, pk: int, actor: User) -> QaSample | None:
    """Sample ``pk`` if ``actor`` holds it, with what the blind page shows (and nothing of the original decision)."""
    return (
        QaSample.objects.select_related("item", "original_queue")
        .filter(pk=pk, state=SampleState.CLAIMED, assignee=actor)
        .first()
    )


def samples_rereviewed() -> QuerySet[QaSample]:
    """Samples with their blind re-review, with both sides' people, policies and actions (the compare page)."""
    return QaSample.objects.select_related(
        "item",
        "original_queue",
        "original_policy",
        "original_action",
        "original_reviewer",
        "review__policy",
        "review__action",
        "review__reviewer",
    ).filter(review__isnull=False)


def samples_adjudicable() -> QuerySet[QaSample]:
    """Re-reviewed samples waiting for adjudication, or closed (the page then shows the outcome)."""
    return samples_rereviewed().filter(state__in=[SampleState.ADJUDICATION, SampleState.CLOSED])


def original_decision(sample: QaSample) -> Decision | None:
    """The re-reviewed decision with its reviewer, policy and action; None for a rule's auto-action."""
    if sample.decision_id is None:
        return None
    return Decision.objects.select_related("reviewer", "policy", "action").get(pk=sample.decision_id)


def policies_for(queue: Queue | None) -> list[Policy]:
    """The policies a QA decision may cite: the queue's, or every active one for an item without a queue."""
    policies = queue.policies.filter(is_active=True) if queue else Policy.objects.filter(is_active=True)
    return list(policies.prefetch_related("enforcement_actions"))


def plans_listed() -> QuerySet[SamplingPlan]:
    """Every sampling plan with its number of samples, active ones first."""
    return (
        SamplingPlan.objects.select_related("queue", "policy", "vendor", "reviewer")
        .annotate(n_samples=Count("samples"))
        .order_by("-is_active", "name")
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


def golden_rates() -> QuerySet[GoldenRate]:
    return GoldenRate.objects.select_related("queue").order_by("queue__name")


def golden_made(sample: QaSample) -> bool:
    """Whether the sample's item already became a golden item."""
    return GoldenItem.objects.filter(origin_item_id=sample.item_id).exists()


# --- calibration -------------------------------------------------------------------------------------------


def calibration_sessions(*, of: User | None = None) -> QuerySet[CalibrationSession]:
    """Newest first; with ``of``, only the sessions that person takes part in."""
    sessions = CalibrationSession.objects.order_by("-created_at")
    if of is not None:
        sessions = sessions.filter(pk__in=CalibrationSession.objects.filter(participants=of).values("pk"))
    # Items by a subquery: joining both items and participants would multiply the rows.
    items = CalibrationItem.objects.filter(session=OuterRef("pk")).values("session").annotate(n=Count("pk"))
    return sessions.annotate(n_items=Coalesce(Subquery(items.values("n")), 0), n_participants=Count("participants"))


def calibration_participant(session: CalibrationSession, user: User) -> bool:
    return session.participants.filter(pk=user.pk).exists()


def session_items(session: CalibrationSession) -> QuerySet[CalibrationItem]:
    return session.session_items.select_related("item", "item__queue")


def session_items_to_rate(session: CalibrationSession) -> QuerySet[CalibrationItem]:
    """The session's items with their session, for the one a participant rates (looked up by id)."""
    return CalibrationItem.objects.select_related("session").filter(session=session)


def session_item_next(session: CalibrationSession, participant: User) -> CalibrationItem | None:
    """The first item (by position) ``participant`` has not rated yet: the rating page's next item."""
    rated = CalibrationRating.objects.filter(session_item=OuterRef("pk"), participant=participant)
    return session_items(session).filter(~Exists(rated)).order_by("position").first()


def session_item_at(session: CalibrationSession, position: int) -> CalibrationItem | None:
    return session_items(session).filter(position=position).first()


def session_items_from(
    *, queue: Queue, state: str | None = None, since: datetime | None = None, limit: int
) -> list[int]:
    """A session's items taken by a filter: the queue's real (not golden) items, oldest first, up to ``limit``."""
    items = ReviewItem.objects.filter(queue=queue, is_golden=False)
    if state:
        items = items.filter(state=state)
    if since:
        items = items.filter(received_at__gte=since)
    return list(items.order_by("received_at", "pk").values_list("pk", flat=True)[:limit])


def session_people(session: CalibrationSession) -> list[User]:
    return list(session.participants.order_by("username"))


def ratings_of(session: CalibrationSession, participant: User) -> dict[int, CalibrationRating]:
    """One participant's ratings by session item: while the session is open, the only ones they may see."""
    ratings = CalibrationRating.objects.filter(session_item__session=session, participant=participant)
    return {r.session_item_id: r for r in ratings.select_related("policy")}


def rating_of(session_item: CalibrationItem, participant: User) -> CalibrationRating | None:
    return (
        CalibrationRating.objects.filter(session_item=session_item, participant=participant)
        .select_related("policy")
        .first()
    )


def ratings_made(session: CalibrationSession, people: list[User]) -> dict[int, int]:
    """How many of the session's items each person has rated (a count, never the answers)."""
    counts = dict(
        CalibrationRating.objects.filter(session_item__session=session, participant__in=people)
        .values_list("participant")
        .annotate(n=Count("pk"))
        .values_list("participant", "n")
    )
    return {p.pk: counts.get(p.pk, 0) for p in people}


def rating_label(rating: CalibrationRating) -> str:
    return rating.policy.slug if rating.is_violation and rating.policy else NO_VIOLATION


def _calibration_label(is_violation: bool, policy_slug: str | None) -> str:
    return (policy_slug or NO_VIOLATION) if is_violation else NO_VIOLATION


@dataclass(frozen=True)
class ItemRow:
    session_item: CalibrationItem
    labels: dict[int, str]  # participant id -> label
    majority: str | None  # None on a tie
    agreement: float | None  # share of rater pairs on this item that agree


@dataclass(frozen=True)
class PersonRow:
    participant: User
    rated: int
    with_majority: int

    @property
    def share(self) -> float | None:
        return self.with_majority / self.rated if self.rated else None


@dataclass(frozen=True)
class SessionReport:
    items: list[ItemRow]
    people: list[PersonRow]
    alpha: Estimate | None
    agreement: Estimate | None


@dataclass(frozen=True)
class SessionReportPage:
    """The overall and per-person figures, and one page of item rows."""

    items: list[ItemRow]
    people: list[PersonRow]
    alpha: Estimate | None
    agreement: Estimate | None
    count: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.count // self.page_size))


def _majority_and_agreement(labels: dict[int, str]) -> tuple[str | None, float | None]:
    counts = Counter(labels.values()).most_common()
    majority = counts[0][0] if counts and (len(counts) == 1 or counts[0][1] > counts[1][1]) else None
    n = len(labels)
    pairs = n * (n - 1) / 2
    agreeing = sum(c * (c - 1) / 2 for _, c in counts)
    return majority, (agreeing / pairs if pairs else None)


def _estimate_json(estimate: Estimate | None) -> dict[str, Any] | None:
    """JSON (and PostgreSQL's jsonb) has no NaN: an undefined bound is stored as null."""
    if estimate is None:
        return None
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in estimate.as_dict().items()}


def _estimate_from(data: dict[str, Any] | None) -> Estimate | None:
    if data is None:
        return None
    nan = math.nan
    low, high = data["low"], data["high"]
    return Estimate(
        data["value"], nan if low is None else low, nan if high is None else high, data["n"], data["degenerate"]
    )


def session_figures(session: CalibrationSession, *, n_resamples: int = 500) -> dict[str, Any]:
    """The report's overall figures (Krippendorff's alpha, missing ratings allowed, and percent agreement, with
    intervals; raters: every participant; unit: a session item rated at least twice) and each person's agreement
    with the item's majority, as JSON: computed from every rating, stored when the session closes."""
    rows = CalibrationRating.objects.filter(session_item__session=session).values_list(
        "session_item_id", "participant_id", "is_violation", "policy__slug"
    )
    by_item: dict[int, dict[int, str]] = {}
    for item, person, violation, slug in rows.order_by("session_item_id").iterator(chunk_size=5000):
        by_item.setdefault(item, {})[person] = _calibration_label(violation, slug)
    people = list(session.participants.order_by("username").values_list("pk", flat=True))
    tally = {pk: [0, 0] for pk in people}
    triples: list[tuple[int, int, str]] = []
    pairable = 0
    for item, labels in by_item.items():
        majority, _ = _majority_and_agreement(labels)
        pairable += len(labels) >= 2
        for person, label in labels.items():
            triples.append((item, person, label))
            if person in tally and majority is not None:
                tally[person][0] += 1
                tally[person][1] += label == majority
    alpha = agreement = None
    if pairable >= 2:
        matrix, _ = rating_matrix(triples)
        alpha = krippendorff_alpha(matrix, n_resamples=n_resamples)
        agreement = percent_agreement(matrix, n_resamples=n_resamples)
    return {
        "alpha": _estimate_json(alpha),
        "agreement": _estimate_json(agreement),
        "people": [[pk, *tally[pk]] for pk in people],
    }


def _item_rows(session_items: QuerySet[CalibrationItem]) -> list[ItemRow]:
    rows = []
    for si in session_items.prefetch_related("ratings__policy"):
        labels = {r.participant_id: rating_label(r) for r in si.ratings.all()}
        rows.append(ItemRow(si, labels, *_majority_and_agreement(labels)))
    return rows


def _figures_of(session: CalibrationSession) -> dict[str, Any]:
    """The session's figures: computed from its ratings while it is open; once closed, the figures stored when it
    closed (its ratings are final). A session closed before figures were stored gets them stored on its first view
    (the one write a read makes, so no view recomputes them again)."""
    if session.closed_at is None:
        return session_figures(session)
    if session.figures is None:
        session.figures = session_figures(session)
        CalibrationSession.objects.filter(pk=session.pk, figures__isnull=True).update(figures=session.figures)
    return session.figures


def session_report_page(session: CalibrationSession, *, page: int = 1, page_size: int = 100) -> SessionReportPage:
    """A session's figures (``_figures_of``) and the item rows of one page, by position."""
    figures = _figures_of(session)
    users = {u.pk: u for u in session.participants.all()}
    people = [PersonRow(users[pk], rated, hits) for pk, rated, hits in figures["people"] if pk in users]
    count = session.session_items.count()
    page = max(1, page)
    window = session_items(session).order_by("position")[(page - 1) * page_size : page * page_size]
    return SessionReportPage(
        _item_rows(window),
        people,
        _estimate_from(figures["alpha"]),
        _estimate_from(figures["agreement"]),
        count,
        page,
        page_size,
    )


def session_report(session: CalibrationSession) -> SessionReport:
    """Every item's row and the figures (``_figures_of``); the report pages read ``session_report_page`` instead."""
    figures = _figures_of(session)
    users = {u.pk: u for u in session.participants.all()}
    people = [PersonRow(users[pk], rated, hits) for pk, rated, hits in figures["people"]]
    rows = _item_rows(session.session_items.select_related("item").order_by("position"))
    return SessionReport(rows, people, _estimate_from(figures["alpha"]), _estimate_from(figures["agreement"]))


# --- independent reviews (N-review queues) ------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewerAgreement:
    reviewer_id: int
    name: str
    items: int
    agreement: Estimate | None  # None: fewer than MIN_UNITS_TO_JUDGE items


@dataclass(frozen=True)
class IndependentReviewRow:
    """The multi-rater figures of one N-review queue. Raters: the independent reviewers of each item (the
    first ``required_reviews`` decisions, never the adjudicator); unit: an item that needed N > 1 reviews and
    was closed in the period, with at least two independent reviews."""

    queue_id: int
    queue_name: str
    items: int
    ratings: int
    disputed: int  # units whose independent reviews disagreed (went to adjudication)
    fleiss: Estimate | None  # None: fewer than MIN_UNITS_TO_JUDGE units
    alpha: Estimate | None
    reviewers: list[ReviewerAgreement]

    @property
    def too_few(self) -> bool:
        return self.items < MIN_UNITS_TO_JUDGE


def independent_reviews(f: QaFilter, *, n_resamples: int = DASHBOARD_RESAMPLES) -> list[IndependentReviewRow]:
    """Per N-review queue, in the filter's queue and period (by the item's final decision): Fleiss' kappa and
    Krippendorff's alpha (nominal) among the independent reviewers, and each reviewer's agreement with the
    final outcome (the adjudicator's word when the reviewers disagreed), each with a bootstrap interval over
    items. Labels are as the service compares them: violation or not, and the policy of a violation."""
    # Started from the few items that need several reviews (item_multi_review_idx), not from every final
    # decision of the period joined to its item.
    multi = ReviewItem.objects.filter(required_reviews__gt=1).values("pk")
    finals = _scoped(
        Decision.objects.filter(is_final=True, is_reversal=False, item_id__in=multi),
        QaFilter(start=f.start, end=f.end),
        queue="queue_id",
        vendor="vendor_id",
        reviewer="reviewer_id",
        at="decided_at",
    )
    outcome = {item: _label(v, p) for item, v, p in finals.values_list("item_id", "is_violation", "policy__slug")}
    reviews: dict[int, list[tuple[int, int | None, int, str]]] = {}
    rows = (
        Decision.objects.filter(item_id__in=finals.values("item_id"), is_reversal=False)
        .order_by("item_id", "decided_at", "pk")
        .values_list("item_id", "item__required_reviews", "queue_id", "reviewer_id", "is_violation", "policy__slug")
    )
    for item, required, queue, reviewer, v, p in rows.iterator(chunk_size=2000):
        mine = reviews.setdefault(item, [])
        # The first N decisions by different reviewers are the independent reviews; a later one adjudicated.
        if len(mine) < required and all(r != reviewer for _, _, r, _ in mine):
            mine.append((required, queue, reviewer, _label(v, p)))
    by_queue: dict[int, list[tuple[int, list[tuple[int, str]]]]] = {}
    for item, mine in reviews.items():
        home = mine[0][1] if mine else None  # the queue of the first independent review
        if len(mine) >= 2 and home is not None and (not f.queue_id or home == f.queue_id):
            by_queue.setdefault(home, []).append((item, [(r, label) for _, _, r, label in mine]))
    names = dict(Queue.objects.filter(pk__in=by_queue).values_list("pk", "name"))
    people = {
        u.pk: u.get_full_name() or u.get_username()
        for u in User.objects.filter(pk__in={r for units in by_queue.values() for _, rs in units for r, _ in rs})
    }
    return [
        _independent_row_cached(queue, names.get(queue, str(queue)), units, outcome, people, n_resamples)
        for queue, units in sorted(by_queue.items(), key=lambda kv: names.get(kv[0], ""))
    ]


def _independent_row_cached(
    queue: int,
    name: str,
    units: list[tuple[int, list[tuple[int, str]]]],
    outcome: dict[int, str],
    people: dict[int, str],
    n_resamples: int,
) -> IndependentReviewRow:
    """``_independent_row`` cached under a digest of everything it is computed from (as ``stats_cached``): its
    bootstrap intervals (kappa, alpha, each reviewer's agreement) are computed again only when a queue's reviews
    changed, not on every scorecards page."""
    names = sorted((r, people.get(r)) for r in {r for _, ratings in units for r, _ in ratings})
    body = json.dumps([queue, name, units, [outcome[item] for item, _ in units], names, n_resamples])
    key = "qa:independent-row:" + hashlib.sha256(body.encode()).hexdigest()
    row: IndependentReviewRow | None = cache.get(key)
    if row is None:
        row = _independent_row(queue, name, units, outcome, people, n_resamples)
        cache.set(key, row, STATS_CACHE_SECONDS)
    return row


def _independent_row(
    queue: int,
    name: str,
    units: list[tuple[int, list[tuple[int, str]]]],
    outcome: dict[int, str],
    people: dict[int, str],
    n_resamples: int,
) -> IndependentReviewRow:
    triples = [(item, reviewer, label) for item, ratings in units for reviewer, label in ratings]
    fleiss = alpha = None
    if len(units) >= MIN_UNITS_TO_JUDGE:
        matrix, _ = rating_matrix(triples)
        fleiss = fleiss_kappa(matrix, n_resamples=n_resamples)
        alpha = krippendorff_alpha(matrix, n_resamples=n_resamples)
    hits: dict[int, list[bool]] = {}
    for item, reviewer, label in triples:
        hits.setdefault(reviewer, []).append(label == outcome[item])
    reviewers = [
        ReviewerAgreement(
            r,
            people.get(r, str(r)),
            len(h),
            agreement_rate(h, n_resamples=n_resamples) if len(h) >= MIN_UNITS_TO_JUDGE else None,
        )
        for r, h in sorted(hits.items(), key=lambda kv: people.get(kv[0], ""))
    ]
    disputed = sum(1 for _, ratings in units if len({label for _, label in ratings}) > 1)
    return IndependentReviewRow(queue, name, len(units), len(triples), disputed, fleiss, alpha, reviewers)


# --- ground truth ------------------------------------------------------------------------------------------


def ground_truth_rows() -> Iterator[tuple[Any, ...]]:
    """The export's rows, streamed: each item's latest verified label (``queues.selectors.ground_truth_latest``)
    with the item's source and external id, by item id."""
    rows = ground_truth_latest().values_list(
        "item_id", "item__source", "item__external_id", "is_violation", "policy__slug", "origin", "recorded_at"
    )
    return rows.iterator(chunk_size=2000)
