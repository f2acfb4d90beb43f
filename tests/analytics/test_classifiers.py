"""Classifier performance from rollups, checked against scikit-learn on generated, seeded data.

Scores are drawn on the hundredths (0.00 … 0.99), so bucketing loses nothing and the bucketed figures must
equal scikit-learn's exact ones.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from django.test import Client, override_settings
from django.utils import timezone
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
)

from analytics.adapters import classifier_calibration_table, classifier_pr_table, classifier_summary_table
from analytics.filters import MetricFilter
from analytics.models import ClassifierRollup
from analytics.rollups import (
    classifier_rollups_rebuild,
    classifier_rollups_refresh,
    classifier_rollups_refresh_job,
    score_buckets,
)
from analytics.selectors.classifiers import (
    classifier_calibration,
    classifier_drift,
    classifier_items,
    classifier_metrics_at,
    classifier_models,
    classifier_pr_curve,
    classifier_summary,
    classifier_threshold_for_precision,
    classifier_threshold_for_recall,
)
from analytics.tables import cell_text
from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import Policy, User, Vendor
from qa.models import QaSample, SampleReason
from queues.models import Decision, GroundTruth, GroundTruthOrigin, ItemKind, ItemState, Queue, ReviewItem
from queues.services import decision_correct
from routing.models import ClassifierScore
from tests.qa.factories import decided

MONDAY = date(2025, 3, 3)
PERIOD = MetricFilter(start=MONDAY, end=MONDAY + timedelta(days=20))  # three ISO weeks
_ids = itertools.count()


def at(day: date, hour: int = 12) -> datetime:
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour))


@dataclass
class World:
    """Generated items: per item its hate score, human label, week, weight (1/π for QA) and decider."""

    hate: Policy
    violence: Policy
    spam: Policy
    queue: Queue
    other_queue: Queue
    reviewer: User
    vendor_reviewer: User
    vendor: Vendor
    items: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    weeks: list[date] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    queues: list[int] = field(default_factory=list)
    vendors: list[int | None] = field(default_factory=list)

    def arrays(self, *, week: date | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keep = np.array([week is None or w == week for w in self.weeks])
        return (
            np.array(self.labels)[keep],
            np.array(self.scores)[keep],
            np.array(self.weights)[keep],
        )


def _item(queue: Queue, *, received: datetime, **fields: object) -> ReviewItem:
    fields = {"state": ItemState.DECIDED, "decided_at": received, **fields}
    return ReviewItem(source="gen", external_id=f"g-{next(_ids)}", received_at=received, queue=queue, **fields)


@pytest.fixture
def world(reviewer: User, vendor_reviewer: User, vendor_a: Vendor) -> World:
    hate = Policy.objects.create(slug="hate", name="Hate", guidelines="-", classifier_categories=["hate"])
    violence = Policy.objects.create(
        slug="violence", name="Violence", guidelines="-", classifier_categories=["violence", "violence/graphic"]
    )
    spam = Policy.objects.create(slug="spam", name="Spam", guidelines="-")
    queue = Queue.objects.create(slug="main", name="Main")
    other = Queue.objects.create(slug="other", name="Other")
    return World(hate, violence, spam, queue, other, reviewer, vendor_reviewer, vendor_a)


def generate(world: World, *, n: int = 600, seed: int = 7, qa: bool = False) -> World:
    """``n`` decided items over three weeks, scored by local:v1 (hate, violence) and local:v2 (hate)."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 100, size=n) / 100
    # Roughly calibrated: a violation of the hate policy with probability ~ score.
    is_hate = rng.random(n) < scores
    # Some non-hate items are violations of another policy (still negatives for "hate").
    other_violation = ~is_hate & (rng.random(n) < 0.3)
    week_index = rng.integers(0, 3, size=n)
    vendor_side = rng.random(n) < 0.4
    in_other_queue = rng.random(n) < 0.25
    probabilities = rng.choice([0.05, 0.2, 0.5, 1.0], size=n)
    items = ReviewItem.objects.bulk_create(
        _item(
            world.other_queue if in_other_queue[i] else world.queue,
            received=at(MONDAY + timedelta(days=7 * int(week_index[i]) + int(i % 7)), 9),
        )
        for i in range(n)
    )
    decisions = []
    for i, item in enumerate(items):
        decided_at = at(MONDAY + timedelta(days=7 * int(week_index[i]) + int(i % 7)), 10 + int(i % 12))
        violation = bool(is_hate[i] or other_violation[i])
        policy = world.hate if is_hate[i] else world.spam if other_violation[i] else None
        decisions.append(
            Decision(
                item=item,
                reviewer=world.vendor_reviewer if vendor_side[i] else world.reviewer,
                queue=item.queue,
                policy=policy,
                is_violation=violation,
                decided_at=decided_at,
            )
        )
        world.items.append(item.pk)
        world.scores.append(float(scores[i]))
        world.labels.append(int(is_hate[i]))
        world.weeks.append(MONDAY + timedelta(days=7 * int(week_index[i])))
        world.weights.append(1.0)
        world.queues.append(item.queue_id)
        world.vendors.append(world.vendor.pk if vendor_side[i] else None)
    Decision.objects.bulk_create(decisions)
    ClassifierScore.objects.bulk_create(
        ClassifierScore(item=item, backend="local", model_version="v1", scores={"hate": s, "violence": 1 - s})
        for item, s in zip(items, world.scores, strict=True)
    )
    ClassifierScore.objects.bulk_create(
        ClassifierScore(item=item, backend="local", model_version="v2", scores={"hate": 0.5}) for item in items
    )
    if qa:
        _qa_samples(world, decisions, probabilities, rng)
    return world


def _qa_samples(world: World, decisions: list[Decision], probabilities: np.ndarray, rng: np.random.Generator) -> None:
    """Sample each decision with its probability; QA ground truth flips 10% of the labels (QA found errors)."""
    drawn = rng.random(len(decisions)) < probabilities
    flips = rng.random(len(decisions)) < 0.1
    samples, truths = [], []
    kept = [i for i in range(len(decisions)) if drawn[i]]
    for i in kept:
        d = decisions[i]
        samples.append(
            QaSample(
                item_id=d.item_id,
                decision=d,
                reason=SampleReason.RANDOM,
                inclusion_probability=float(probabilities[i]),
                sampled_at=d.decided_at + timedelta(hours=1),
                original_is_violation=d.is_violation,
                original_policy=d.policy,
                original_reviewer=d.reviewer,
                original_vendor_id=world.vendors[i],
                original_queue_id=d.queue_id,
                original_decided_at=d.decided_at,
            )
        )
        label = world.labels[i] ^ int(flips[i])
        truths.append(
            GroundTruth(
                item_id=d.item_id,
                decision=d,
                origin=GroundTruthOrigin.QA_VERIFIED,
                is_violation=bool(label),
                policy=world.hate if label else None,
                recorded_at=d.decided_at + timedelta(hours=2),
            )
        )
        world.labels[i] = label
        world.weights[i] = 1 / float(probabilities[i])
    QaSample.objects.bulk_create(samples)
    GroundTruth.objects.bulk_create(truths)
    # From here on the world describes the QA population only.
    for name in ("items", "scores", "labels", "weeks", "weights", "queues", "vendors"):
        values = getattr(world, name)
        setattr(world, name, [values[i] for i in kept])


HATE = {"category": "hate", "backend": "local", "model_version": "v1"}


def rollups_snapshot() -> list[tuple[object, ...]]:
    fields = ("week", "backend", "model_version", "category", "truth", "queue_id", "vendor_id", "bucket")
    rows = ClassifierRollup.objects.order_by(*fields).values_list(*fields, "positive", "negative", "score_sum", "n")
    return [(*row[:8], round(row[8], 9), round(row[9], 9), round(row[10], 9), row[11]) for row in rows]


# --- metrics against scikit-learn -------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.5, 0.37, 0.9])
def test_metrics_at_threshold_match_sklearn(world: World, threshold: float) -> None:
    generate(world)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    y, s, _ = world.arrays()
    predicted = (s >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, predicted).ravel()

    got = classifier_metrics_at(PERIOD, **HATE, threshold=threshold)

    assert (got.tp, got.fp, got.fn, got.tn) == (tp, fp, fn, tn)
    assert got.n == len(y)
    assert got.precision == pytest.approx(precision_score(y, predicted))
    assert got.recall == pytest.approx(recall_score(y, predicted))
    assert got.f1 == pytest.approx(f1_score(y, predicted))
    assert got.fpr == pytest.approx(fp / (fp + tn))
    assert got.prevalence == pytest.approx(y.mean())
    assert got.lift == pytest.approx(precision_score(y, predicted) / y.mean())


def test_active_threshold_comes_from_settings(world: World, settings: object) -> None:
    generate(world)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    assert classifier_metrics_at(PERIOD, **HATE).threshold == 0.5
    settings.ANALYTICS_CLASSIFIER_THRESHOLDS = {"default": 0.5, "hate": 0.8}  # type: ignore[attr-defined]
    y, s, _ = world.arrays()
    got = classifier_metrics_at(PERIOD, **HATE)
    assert got.threshold == 0.8
    assert got.precision == pytest.approx(precision_score(y, s >= 0.8))
    assert [row.threshold for row in classifier_summary(PERIOD) if row.category == "hate"] == [0.8, 0.8]


def test_pr_curve_and_auprc_match_sklearn(world: World) -> None:
    generate(world)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    y, s, _ = world.arrays()
    precision, recall, thresholds = precision_recall_curve(y, s)

    curve = classifier_pr_curve(PERIOD, **HATE)

    assert curve.auprc == pytest.approx(average_precision_score(y, s))
    expected = {round(t, 2): (p, r) for p, r, t in zip(precision, recall, thresholds, strict=False)}
    got = {round(point.threshold, 2): (point.precision, point.recall) for point in curve.points}
    assert got.keys() == expected.keys()
    for t, (p, r) in expected.items():
        assert got[t] == pytest.approx((p, r))
    assert curve.prevalence == pytest.approx(y.mean())


@pytest.mark.parametrize("target", [0.6, 0.8, 0.95])
def test_thresholds_for_target_precision_and_recall_match_a_direct_search(world: World, target: float) -> None:
    generate(world)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    y, s, _ = world.arrays()
    precision, recall, thresholds = precision_recall_curve(y, s)
    reaching = [t for p, t in zip(precision, thresholds, strict=False) if p >= target]
    keeping = [t for r, t in zip(recall, thresholds, strict=False) if r >= target]

    for_precision = classifier_threshold_for_precision(PERIOD, **HATE, target=target)
    for_recall = classifier_threshold_for_recall(PERIOD, **HATE, target=target)

    assert for_precision is not None
    assert for_recall is not None
    assert for_precision.threshold == pytest.approx(min(reaching))
    assert for_precision.precision is not None
    assert for_precision.precision >= target
    assert for_recall.threshold == pytest.approx(max(keeping))
    assert for_recall.recall == pytest.approx(recall_score(y, s >= max(keeping)))
    assert classifier_threshold_for_precision(PERIOD, **HATE, target=1.01) is None


def test_calibration_matches_a_direct_computation_and_sklearn(world: World) -> None:
    generate(world)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    y, s, _ = world.arrays()

    bins = classifier_calibration(PERIOD, **HATE)

    assert len(bins) == 10
    index = np.minimum((s * 10 + 1e-9).astype(int), 9)
    for b, row in enumerate(bins):
        mask = index == b
        assert row.n == mask.sum()
        assert row.mean_predicted == pytest.approx(s[mask].mean())
        assert row.observed_rate == pytest.approx(y[mask].mean())
    # scikit-learn puts a score on a bin edge (0.1, 0.2 …) in the lower bin; nudged up, the bins agree.
    observed, predicted = calibration_curve(y, s + 1e-6, n_bins=10)
    assert [row.observed_rate for row in bins if row.n] == pytest.approx(list(observed))
    assert [row.mean_predicted for row in bins if row.n] == pytest.approx(list(predicted - 1e-6))


def test_drift_gives_each_weeks_figures(world: World) -> None:
    generate(world)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)

    weeks = classifier_drift(PERIOD, **HATE)

    assert [w.week for w in weeks] == [MONDAY, MONDAY + timedelta(days=7), MONDAY + timedelta(days=14)]
    for row in weeks:
        y, s, _ = world.arrays(week=row.week)
        assert row.n == len(y)
        assert row.precision == pytest.approx(precision_score(y, s >= 0.5))
        assert row.recall == pytest.approx(recall_score(y, s >= 0.5))
        assert row.auprc == pytest.approx(average_precision_score(y, s))
        assert row.prevalence == pytest.approx(y.mean())
        assert row.mean_score == pytest.approx(s.mean())


def test_qa_truth_is_weighted_by_inverse_inclusion_probability(world: World) -> None:
    generate(world, qa=True)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    y, s, w = world.arrays()
    assert len(set(w)) > 1  # several inclusion probabilities

    got = classifier_metrics_at(PERIOD, **HATE, truth="qa", threshold=0.5)
    curve = classifier_pr_curve(PERIOD, **HATE, truth="qa")
    bins = classifier_calibration(PERIOD, **HATE, truth="qa")

    predicted = s >= 0.5
    assert got.n == len(y)
    assert got.precision == pytest.approx(precision_score(y, predicted, sample_weight=w))
    assert got.recall == pytest.approx(recall_score(y, predicted, sample_weight=w))
    assert got.f1 == pytest.approx(f1_score(y, predicted, sample_weight=w))
    tn, fp, _, _ = confusion_matrix(y, predicted, sample_weight=w).ravel()
    assert got.fpr == pytest.approx(fp / (fp + tn))
    assert got.prevalence == pytest.approx(np.average(y, weights=w))
    assert curve.auprc == pytest.approx(average_precision_score(y, s, sample_weight=w))
    index = np.minimum((s * 10 + 1e-9).astype(int), 9)
    for b, row in enumerate(bins):
        mask = index == b
        if mask.any():
            assert row.observed_rate == pytest.approx(np.average(y[mask], weights=w[mask]))
            assert row.mean_predicted == pytest.approx(np.average(s[mask], weights=w[mask]))
    # The decision truth is unweighted and still covers every decided item.
    assert classifier_metrics_at(PERIOD, **HATE).n == 600


def test_filters_select_queue_vendor_and_policy(world: World) -> None:
    generate(world)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    y, s, _ = world.arrays()
    queues, vendors = np.array(world.queues), np.array([v or 0 for v in world.vendors])

    by_queue = classifier_metrics_at(
        MetricFilter(PERIOD.start, PERIOD.end, queue_id=world.other_queue.pk), **HATE, threshold=0.5
    )
    mask = queues == world.other_queue.pk
    assert by_queue.n == mask.sum()
    assert by_queue.precision == pytest.approx(precision_score(y[mask], s[mask] >= 0.5))

    by_vendor = classifier_metrics_at(
        MetricFilter(PERIOD.start, PERIOD.end, vendor_id=world.vendor.pk), **HATE, threshold=0.5
    )
    mask = vendors == world.vendor.pk
    assert by_vendor.n == mask.sum()
    assert by_vendor.recall == pytest.approx(recall_score(y[mask], s[mask] >= 0.5))

    hate_only = MetricFilter(PERIOD.start, PERIOD.end, policy_id=world.hate.pk)
    assert classifier_metrics_at(hate_only, **HATE).n == len(y)
    assert classifier_metrics_at(hate_only, category="violence", backend="local", model_version="v1").n == 0
    assert {row.category for row in classifier_summary(hate_only)} == {"hate"}
    # A period covers the whole weeks it touches.
    one_day = MetricFilter(MONDAY + timedelta(days=8), MONDAY + timedelta(days=8))
    assert classifier_metrics_at(one_day, **HATE).n == sum(w == MONDAY + timedelta(days=7) for w in world.weeks)


def test_summary_lists_every_model_and_category(world: World) -> None:
    generate(world)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    y, s, _ = world.arrays()

    rows = {(r.backend, r.model_version, r.category): r for r in classifier_summary(PERIOD)}

    assert set(rows) == {("local", "v1", "hate"), ("local", "v1", "violence"), ("local", "v2", "hate")}
    assert rows["local", "v1", "hate"].auprc == pytest.approx(average_precision_score(y, s))
    assert rows["local", "v1", "violence"].prevalence == 0  # nobody decided a violence violation
    assert rows["local", "v1", "violence"].auprc is None
    assert classifier_models(PERIOD) == [("local", "v1"), ("local", "v2")]
    assert rows["local", "v1", "hate"].as_row()["precision"] == pytest.approx(precision_score(y, s >= 0.5))
    assert classifier_drift(PERIOD, **HATE)[0].as_row()["week"] == MONDAY.isoformat()


# --- drill-down -------------------------------------------------------------------------------------


@pytest.mark.parametrize("truth", ["decision", "qa"])
def test_drill_down_lists_the_items_behind_each_cell(world: World, truth: str) -> None:
    generate(world, qa=truth == "qa")
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    y, s, _ = world.arrays()
    ids = np.array(world.items)
    flagged = s >= 0.5
    expected = {
        "tp": (y == 1) & flagged,
        "fp": (y == 0) & flagged,
        "fn": (y == 1) & ~flagged,
        "tn": (y == 0) & ~flagged,
    }
    for cell, mask in expected.items():
        got = classifier_items(PERIOD, **HATE, truth=truth, cell=cell)
        assert set(got.values_list("pk", flat=True)) == set(ids[mask].tolist()), cell
    week = MONDAY + timedelta(days=7)
    fp_week = classifier_items(PERIOD, **HATE, truth=truth, cell="fp", week=week)
    in_week = np.array([w == week for w in world.weeks])
    assert set(fp_week.values_list("pk", flat=True)) == set(ids[expected["fp"] & in_week].tolist())
    scores = list(fp_week.values_list("clf_score", flat=True))
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ApplicationError):
        classifier_items(PERIOD, **HATE, cell="nonsense")


# --- which items count ------------------------------------------------------------------------------


def test_golden_auto_actioned_appeal_unscored_and_undecided_items_are_left_out(world: World) -> None:
    day = at(MONDAY + timedelta(days=1))
    counted = _item(world.queue, received=day)
    golden = _item(world.queue, received=day, is_golden=True)
    auto = _item(world.queue, received=day, state=ItemState.AUTO_ACTIONED)
    appeal = _item(world.queue, received=day, kind=ItemKind.APPEAL)
    unscored = _item(world.queue, received=day)
    undecided = _item(world.queue, received=day, state=ItemState.QUEUED, decided_at=None)
    items = ReviewItem.objects.bulk_create([counted, golden, auto, appeal, unscored, undecided])
    for item in items[:5]:
        # The auto-actioned item's human decision is its appeal's correction.
        Decision.objects.create(
            item=item, reviewer=world.reviewer, policy=world.hate, is_violation=True, decided_at=day
        )
    for item in items:
        backend = "unscored" if item.pk == unscored.pk else "local"
        ClassifierScore.objects.create(item=item, backend=backend, model_version="v1", scores={"hate": 0.9})

    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)

    assert classifier_metrics_at(PERIOD, **HATE).n == 1
    assert list(classifier_items(PERIOD, **HATE, cell="all").values_list("pk", flat=True)) == [counted.pk]
    assert not ClassifierRollup.objects.filter(backend="unscored").exists()


def test_a_superseding_decision_replaces_the_one_it_corrects_in_its_own_week(world: World, qa_lead: User) -> None:
    original = decided(world.queue, world.reviewer, policy=world.hate)  # decided now, through the services
    ClassifierScore.objects.create(item_id=original.item_id, backend="local", model_version="v1", scores={"hate": 0.8})
    this_week = timezone.localdate()
    f = MetricFilter(this_week - timedelta(days=30), this_week + timedelta(days=30))
    classifier_rollups_refresh()
    assert classifier_metrics_at(f, **HATE).tp == 1

    # QA found it was no violation: a correction supersedes the original a week later.
    later = timezone.now() + timedelta(days=7)
    decision_correct(
        item=ReviewItem.objects.get(pk=original.item_id),
        actor=qa_lead,
        is_violation=False,
        policy=None,
        action=None,
        rationale="not hate",
        at=later,
    )
    classifier_rollups_refresh()

    got = classifier_metrics_at(f, **HATE)
    assert (got.tp, got.fp, got.n) == (0, 1, 1)
    drift = {row.week: row.n for row in classifier_drift(f, **HATE)}
    assert drift[timezone.localdate(later) - timedelta(days=timezone.localdate(later).weekday())] == 1
    assert sum(drift.values()) == 1


def test_a_later_final_decision_wins_over_an_earlier_one(world: World) -> None:
    item = ReviewItem.objects.bulk_create([_item(world.queue, received=at(MONDAY))])[0]
    Decision.objects.create(item=item, reviewer=world.reviewer, is_violation=False, decided_at=at(MONDAY))
    # Reopened and decided again a week later, without a supersedes link.
    Decision.objects.create(
        item=item, reviewer=world.reviewer, policy=world.hate, is_violation=True, decided_at=at(MONDAY + timedelta(7))
    )
    # An interim decision of a multi-review round never counts.
    Decision.objects.create(
        item=item,
        reviewer=world.vendor_reviewer,
        is_violation=False,
        decided_at=at(MONDAY + timedelta(8)),
        is_final=False,
    )
    ClassifierScore.objects.create(item=item, backend="local", model_version="v1", scores={"hate": 0.7})

    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)

    assert [(w.week, w.n) for w in classifier_drift(PERIOD, **HATE) if w.n] == [(MONDAY + timedelta(7), 1)]
    assert classifier_metrics_at(PERIOD, **HATE).tp == 1


def test_the_latest_score_of_a_model_version_counts_once(world: World) -> None:
    item = ReviewItem.objects.bulk_create([_item(world.queue, received=at(MONDAY))])[0]
    Decision.objects.create(item=item, reviewer=world.reviewer, is_violation=False, decided_at=at(MONDAY))
    ClassifierScore.objects.create(
        item=item, backend="local", model_version="v1", prompt_version="a", scores={"hate": 0.9}
    )
    ClassifierScore.objects.create(
        item=item, backend="local", model_version="v1", prompt_version="b", scores={"hate": 0.2}
    )

    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)

    got = classifier_metrics_at(PERIOD, **HATE)
    assert (got.n, got.fp, got.tn) == (1, 0, 1)


def test_buckets_are_hundredths_and_one_joins_the_top_bucket() -> None:
    assert score_buckets(np.array([0.0, 0.29, 0.57, 0.999, 1.0])).tolist() == [0, 29, 57, 99, 99]


# --- refresh ----------------------------------------------------------------------------------------


def test_incremental_refresh_equals_a_rebuild_and_is_idempotent(world: World, qa_lead: User) -> None:
    generate(world, n=300, seed=11, qa=True)
    assert classifier_rollups_refresh() == [MONDAY, MONDAY + timedelta(7), MONDAY + timedelta(14)]
    assert classifier_rollups_refresh() == []

    # New work lands in week 2 and a new week 4; a correction moves a week-1 item to week 4; a new
    # model scores week-1 items; QA records new ground truth on a week-3 item.
    week4 = MONDAY + timedelta(days=21)
    fresh = ReviewItem.objects.bulk_create([_item(world.queue, received=at(week4)) for _ in range(5)])
    for n, item in enumerate(fresh):
        day = week4 if n < 3 else MONDAY + timedelta(8)
        policy = world.hate if n % 2 else None
        Decision.objects.create(
            item=item, reviewer=world.reviewer, policy=policy, is_violation=bool(n % 2), decided_at=at(day)
        )
        ClassifierScore.objects.create(item=item, backend="local", model_version="v1", scores={"hate": n / 10})
    week1_items = [pk for pk, w in zip(world.items, world.weeks, strict=True) if w == MONDAY]
    current = Decision.objects.get(item_id=week1_items[0])
    Decision.objects.create(
        item_id=week1_items[0],
        reviewer=qa_lead,
        is_violation=not current.is_violation,
        policy=None if current.is_violation else world.hate,
        decided_at=at(week4, 15),
        supersedes=current,
    )
    ClassifierScore.objects.bulk_create(
        ClassifierScore(item_id=pk, backend="openai_moderation", model_version="omni", scores={"hate": 0.3})
        for pk in week1_items[:20]
    )
    week3_item = next(pk for pk, w in zip(world.items, world.weeks, strict=True) if w == MONDAY + timedelta(14))
    GroundTruth.objects.create(
        item_id=week3_item,
        origin=GroundTruthOrigin.ADJUDICATED,
        is_violation=True,
        policy=world.violence,
        recorded_at=at(week4),
    )

    refreshed = classifier_rollups_refresh()
    incremental = rollups_snapshot()
    classifier_rollups_rebuild(MONDAY, week4)

    assert refreshed == [MONDAY, MONDAY + timedelta(7), MONDAY + timedelta(14), week4]
    assert incremental == rollups_snapshot()
    assert classifier_rollups_refresh() == []
    assert classifier_rollups_refresh_job() == {"weeks": []}


def test_rebuilding_a_week_twice_writes_the_same_rows(world: World) -> None:
    generate(world, n=200)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    first = rollups_snapshot()
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    assert rollups_snapshot() == first
    assert ClassifierRollup.objects.filter(truth="decision", category="hate", model_version="v1").values_list(
        "n", flat=True
    )


def _drilled(http: Client, url: str) -> int:
    response = http.get(url)
    assert response.status_code == 200, url
    return response.context["count"]


def test_the_summary_figures_are_the_rows_its_drill_downs_list_and_few_positives_are_too_few(
    world: World, qa_lead: User, ops_manager: User
) -> None:
    generate(world, n=240)
    classifier_rollups_refresh()
    # A late correction: QA finds an early hate decision was no violation, after the first refresh.
    corrected = Decision.objects.filter(policy=world.hate).order_by("decided_at").first()
    assert corrected is not None
    decision_correct(
        item=corrected.item,
        actor=qa_lead,
        is_violation=False,
        policy=None,
        action=None,
        rationale="not hate",
        at=corrected.decided_at + timedelta(hours=1),
    )
    classifier_rollups_refresh()
    http = Client()
    http.force_login(ops_manager, backend="django.contrib.auth.backends.ModelBackend")

    table = classifier_summary_table(PERIOD)
    assert table.drill is not None
    for row in table.rows:
        fp_url = str(table.drill(row))
        fp, tp = _drilled(http, fp_url), _drilled(http, fp_url.replace("clf_cell=fp", "clf_cell=tp"))
        assert (fp, tp) == (row["fp"], row["tp"]), row
        if tp + fp:
            assert row["precision"] == pytest.approx(tp / (tp + fp))
            assert row["precision_low"] <= row["precision"] <= row["precision_high"]

    page = http.get("/analytics/classifiers/", {"start": PERIOD.start, "end": PERIOD.end}).content.decode()
    hate_v1 = next(r for r in table.rows if (r["category"], r["model_version"]) == ("hate", "v1"))
    assert hate_v1["positives"] >= 20
    assert f"{hate_v1['precision']:.1%} [{hate_v1['precision_low']:.1%}, {hate_v1['precision_high']:.1%}]" in page

    # Most hate decisions turn out to be spam: five positives are left, and the page will not judge on them.
    keep = list(Decision.objects.filter(policy=world.hate).values_list("pk", flat=True)[:5])
    Decision.objects.filter(policy=world.hate).exclude(pk__in=keep).update(policy=world.spam)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    rows = classifier_summary_table(PERIOD).rows
    few = next(r for r in rows if (r["category"], r["model_version"]) == ("hate", "v1"))
    assert few["positives"] < 20
    page = http.get("/analytics/classifiers/", {"start": PERIOD.start, "end": PERIOD.end}).content.decode()
    assert f"too few to judge ({few['positives']:,.0f} positives)" in page


def test_pr_curve_and_calibration_show_intervals_or_too_few(world: World) -> None:
    """Each point's precision rests on its flagged items, recall on the positives, a bin's observed rate on its
    items: Wilson intervals that hold the figure, AUPRC a bootstrap's; from too few, "too few to judge"."""
    generate(world)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)

    pr = classifier_pr_table(PERIOD)
    columns = {c.key: c for c in pr.columns}
    hate = [r for r in pr.rows if r["category"] == "hate"]
    assert hate
    for row in hate:
        assert row["precision_low"] - 1e-9 <= row["precision"] <= row["precision_high"] + 1e-9
        assert row["flagged"] == row["tp"] + row["fp"]
        text = cell_text(row, columns["precision"])
        if row["flagged"] < 30:
            assert text == f"too few to judge ({row['flagged']:,.0f} item{'' if row['flagged'] == 1 else 's'})"
        else:
            assert text == f"{row['precision']:.1%} [{row['precision_low']:.1%}, {row['precision_high']:.1%}]"
        assert row["auprc_low"] <= row["auprc"] <= row["auprc_high"]
    assert any(r["flagged"] < 30 for r in hate)
    assert any(r["flagged"] >= 30 for r in hate)
    assert columns["precision_low"].hidden
    assert columns["auprc_high"].hidden

    calibration = classifier_calibration_table(PERIOD)
    columns = {c.key: c for c in calibration.columns}
    for row in calibration.rows:
        text = cell_text(row, columns["observed_rate"])
        if row["observed_rate"] is None:
            assert text == "—"
        elif row["n"] < 30:
            assert text.startswith("too few to judge")
        else:
            assert row["observed_low"] - 1e-9 <= row["observed_rate"] <= row["observed_high"] + 1e-9
            assert text.endswith(f"[{row['observed_low']:.1%}, {row['observed_high']:.1%}]")


def test_figures_are_computed_once_per_rewrite_of_the_rollups_and_a_rewrite_is_seen(
    world: World, django_assert_max_num_queries
) -> None:
    generate(world, n=300, seed=5)
    classifier_rollups_refresh()
    first = classifier_summary(PERIOD)
    curve = classifier_pr_curve(PERIOD, category="hate", backend="local", model_version="v1")
    # Read again with nothing rewritten: from the cache, one query each (the rollups' generation).
    with django_assert_max_num_queries(2):
        assert classifier_summary(PERIOD) == first
        assert classifier_pr_curve(PERIOD, category="hate", backend="local", model_version="v1") == curve
    # A later decision flips an item of the first week: the rollups are rewritten, the next read sees it.
    week1_item = next(pk for pk, w in zip(world.items, world.weeks, strict=True) if w == MONDAY)
    current = Decision.objects.get(item_id=week1_item)
    Decision.objects.create(
        item_id=week1_item,
        reviewer=world.reviewer,
        is_violation=not current.is_violation,
        policy=None if current.is_violation else world.hate,
        decided_at=at(MONDAY + timedelta(days=1), 15),
        supersedes=current,
    )
    classifier_rollups_refresh()
    after = classifier_summary(PERIOD)
    assert after != first
    assert after == classifier_summary.__wrapped__(PERIOD)  # what an uncached read computes
    # The thresholds are part of what the figures depend on.
    with override_settings(ANALYTICS_CLASSIFIER_THRESHOLDS={"default": 0.9}):
        assert classifier_summary(PERIOD) == classifier_summary.__wrapped__(PERIOD)
        assert classifier_summary(PERIOD) != after
