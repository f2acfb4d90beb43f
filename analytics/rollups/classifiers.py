"""Keeps ``ClassifierRollup`` up to date: scores of human-labelled items, bucketed and summed per week.

Which items count, and as what (the exact rules the selectors and their drill-down rely on):

- ``decision`` truth: the item's current final human decision, i.e. its latest (``decided_at``, id)
  decision with ``is_final`` that no later decision superseded. Positive for a category when that
  decision found a violation under a policy whose ``classifier_categories`` include the category;
  negative otherwise (non-violations, and violations of other policies). Left out: items without a final
  human decision, golden items, items a rule auto-actioned (their only human decisions come from
  appeals, a sample of the rule's mistakes) and appeal items (the verdict lands on the appealed item as
  a correction). Weight 1; week of that decision.
- ``qa`` truth: items with a QA sample and QA ground truth (``GroundTruth``, the latest per item by
  ``recorded_at``, id, as ``queues.selectors.ground_truth_latest`` defines it). Same positive rule, applied
  to the ground truth's verdict and policy. Weight 1/inclusion probability of the item's latest sample, week
  of the sampled decision (``original_decided_at``), queue and vendor of the sampled decision. Auto-actioned
  items QA sampled count here: QA is the unbiased view of what rules close. Golden and appeal items are left out.
- ``imported`` truth: items with a label QA imported from elsewhere (``GroundTruth`` of origin ``imported``, the
  latest such per item by ``recorded_at``, id). Same positive rule. Weight 1; week of the item's arrival
  (``received_at``: a golden set is labelled long after, and judges the model that scored it then); the item's
  queue, no vendor. Golden and appeal items are left out.
- ``any`` (the binary view, a pseudo-category): the item's highest score over the categories above (so flagged
  at t when any category reaches t), positive when the label is a violation under any policy.
- Scores: each item's ``ClassifierScore`` rows except the ``unscored`` backend, the latest row per
  (backend, model version) when several prompt versions scored it; one rollup entry per category key
  present in the scores (per-policy ``policy:<slug>`` keys of the LLM are not categories and are skipped).
- Bucket: ``floor(score * 100)`` (with a 1e-9 tolerance, so 0.29 is bucket 29), 1.0 in bucket 99.

Weeks are ISO weeks (Monday start) in the site's time zone. The refresh recomputes whole weeks: any
week that holds a decision, ground truth, score or sample of an item touched since the cursor.
After changing a policy's ``classifier_categories``, rebuild: the mapping is read when a week is computed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.db import transaction
from django.db.models import Exists, F, FloatField, Max, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from analytics.models import ANY_VIOLATION, BUCKETS, ClassifierRollup, ClassifierRollupCursor, TruthSource
from ops_platform.core.localday import day_start
from ops_platform.core.models import ClassifierCategory, Policy
from qa.models import QaSample
from queues.models import Decision, GroundTruth, GroundTruthOrigin, ItemKind, ItemState, ReviewItem
from routing.models import Backend, ClassifierScore

logger = logging.getLogger(__name__)

CATEGORIES: tuple[str, ...] = tuple(ClassifierCategory.values)
# Below float noise, above any real gap between hundredths: 0.29 * 100 = 28.999999999999996 is bucket 29.
BUCKET_EPSILON = 1e-9
_CHUNK = 20_000
# Ids per IN list: well under PostgreSQL's 65,535 bind parameters.
_ID_CHUNK = 10_000


# --- weeks ------------------------------------------------------------------------------------------


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def week_bounds(week: date) -> tuple[datetime, datetime]:
    """The first instant of the week and of the next one, in the site's time zone."""
    return day_start(week), day_start(week + timedelta(days=7))


def weeks_between(start: date, end: date) -> list[date]:
    first, last = week_start(start), week_start(end)
    return [first + timedelta(days=7 * n) for n in range((last - first).days // 7 + 1)]


def score_buckets(scores: np.ndarray) -> np.ndarray:
    """floor(score x 100) clipped to 0..99 (so 1.0 is 99)."""
    return np.clip(np.floor(scores * BUCKETS + BUCKET_EPSILON), 0, BUCKETS - 1).astype(np.int16)


def category_policies() -> dict[str, set[int]]:
    """Category -> ids of the policies that map to it (a violation of one is a positive)."""
    mapping: dict[str, set[int]] = {category: set() for category in CATEGORIES}
    for pk, categories in Policy.objects.values_list("pk", "classifier_categories"):
        for category in categories or []:
            mapping.setdefault(category, set()).add(pk)
    return mapping


# --- the labelled population (shared with the drill-down) ------------------------------------------


def current_final_decisions() -> QuerySet[Decision]:
    """Every item's current final human decision, for the items the ``decision`` truth counts."""
    later = Decision.objects.filter(item_id=OuterRef("item_id"), is_final=True, superseded_by__isnull=True).filter(
        Q(decided_at__gt=OuterRef("decided_at")) | Q(decided_at=OuterRef("decided_at"), pk__gt=OuterRef("pk"))
    )
    return (
        Decision.objects.filter(is_final=True, superseded_by__isnull=True, item__is_golden=False)
        .exclude(item__state=ItemState.AUTO_ACTIONED)
        .exclude(item__kind=ItemKind.APPEAL)
        .exclude(Exists(later))
    )


def latest_qa_samples() -> QuerySet[QaSample]:
    """Every item's latest QA sample, for the items the ``qa`` truth may count (ground truth is checked later)."""
    later = QaSample.objects.filter(item_id=OuterRef("item_id")).filter(
        Q(sampled_at__gt=OuterRef("sampled_at")) | Q(sampled_at=OuterRef("sampled_at"), pk__gt=OuterRef("pk"))
    )
    return QaSample.objects.filter(item__is_golden=False).exclude(item__kind=ItemKind.APPEAL).exclude(Exists(later))


def latest_imported_labels() -> QuerySet[GroundTruth]:
    """Every item's latest imported label, for the items the ``imported`` truth counts."""
    later = GroundTruth.objects.filter(item_id=OuterRef("item_id"), origin=GroundTruthOrigin.IMPORTED).filter(
        Q(recorded_at__gt=OuterRef("recorded_at")) | Q(recorded_at=OuterRef("recorded_at"), pk__gt=OuterRef("pk"))
    )
    return (
        GroundTruth.objects.filter(origin=GroundTruthOrigin.IMPORTED, item__is_golden=False)
        .exclude(item__kind=ItemKind.APPEAL)
        .exclude(Exists(later))
    )


def score_value(category: str) -> Cast:
    """The score of one category out of a ``ClassifierScore.scores`` document, as a float (null if absent)."""
    return Cast(KeyTextTransform(category, "scores"), FloatField())


# --- one week ---------------------------------------------------------------------------------------

_LABEL_COLUMNS = ["item_id", "is_violation", "policy_id", "queue_id", "vendor_id", "weight"]


def _frame(rows: Iterable[tuple[Any, ...]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(list(rows), columns=columns)


def _decision_labels(start: datetime, end: datetime) -> pd.DataFrame:
    decisions = current_final_decisions().filter(decided_at__gte=start, decided_at__lt=end)
    rows = decisions.values_list("item_id", "is_violation", "policy_id", "queue_id", "vendor_id").iterator(
        chunk_size=_CHUNK
    )
    frame = _frame(rows, _LABEL_COLUMNS[:-1])
    frame["weight"] = 1.0
    return frame


def _qa_labels(start: datetime, end: datetime) -> pd.DataFrame:
    samples = latest_qa_samples().filter(original_decided_at__gte=start, original_decided_at__lt=end)
    sampled = _frame(
        samples.values_list("item_id", "inclusion_probability", "original_queue_id", "original_vendor_id").iterator(
            chunk_size=_CHUNK
        ),
        ["item_id", "probability", "queue_id", "vendor_id"],
    )
    truth = _frame(
        GroundTruth.objects.filter(item_id__in=samples.values("item_id"))
        .order_by("item_id", "recorded_at", "pk")
        .values_list("item_id", "is_violation", "policy_id")
        .iterator(chunk_size=_CHUNK),
        ["item_id", "is_violation", "policy_id"],
    ).drop_duplicates("item_id", keep="last")
    frame = sampled.merge(truth, on="item_id", how="inner")
    frame = frame[frame["probability"] > 0]
    frame["weight"] = 1.0 / frame["probability"].astype(float)
    return frame[_LABEL_COLUMNS]


def _imported_labels(start: datetime, end: datetime) -> pd.DataFrame:
    labels = latest_imported_labels().filter(item__received_at__gte=start, item__received_at__lt=end)
    rows = labels.values_list("item_id", "is_violation", "policy_id", "item__queue_id").iterator(chunk_size=_CHUNK)
    frame = _frame(rows, _LABEL_COLUMNS[:4])
    frame["vendor_id"] = None
    frame["weight"] = 1.0
    return frame


def _scores(item_ids: np.ndarray) -> pd.DataFrame:
    """Latest score row per (item, backend, model version), one float column per category (NaN if absent).

    The ids go in chunks of ``_ID_CHUNK``, not as a subquery: see docs/performance.md, "QA and analytics".
    """
    names = [f"c{n}" for n in range(len(CATEGORIES))]
    scores = (
        ClassifierScore.objects.exclude(backend=Backend.UNSCORED)
        .annotate(**{name: score_value(category) for name, category in zip(names, CATEGORIES, strict=True)})
        .order_by()
    )
    ids = np.unique(item_ids.astype(np.int64))
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK].tolist()
        rows += scores.filter(item_id__in=chunk).values_list("pk", "item_id", "backend", "model_version", *names)
    frame = _frame(rows, ["pk", "item_id", "backend", "model_version", *names]).sort_values("pk")
    return frame.drop_duplicates(["item_id", "backend", "model_version"], keep="last")


def _rollup_rows(
    week: date, truth: str, labels: pd.DataFrame, scores: pd.DataFrame, policies: dict[str, set[int]]
) -> list[ClassifierRollup]:
    if labels.empty or scores.empty:
        return []
    joined = scores.merge(labels, on="item_id", how="inner")
    if joined.empty:
        return []
    violation = joined["is_violation"].to_numpy(dtype=bool)
    policy = joined["policy_id"].to_numpy(dtype=float)  # NaN for no policy
    weight = joined["weight"].to_numpy(dtype=float)
    # Null queue/vendor kept as -1 through the group-by.
    queue = joined["queue_id"].fillna(-1).to_numpy(dtype=np.int64)
    vendor = joined["vendor_id"].fillna(-1).to_numpy(dtype=np.int64)
    models = joined.groupby(["backend", "model_version"], sort=True)
    codes = models.ngroup().to_numpy()
    parts = []
    every = joined[[f"c{n}" for n in range(len(CATEGORIES))]].to_numpy(dtype=float)
    for n, category in enumerate((*CATEGORIES, ANY_VIOLATION)):
        if category == ANY_VIOLATION:
            present = ~np.isnan(every).all(axis=1)
            score = np.where(present, np.nanmax(np.where(np.isnan(every), -1.0, every), axis=1), np.nan)
            positive = violation
        else:
            score = joined[f"c{n}"].to_numpy(dtype=float)
            present = ~np.isnan(score)
            mapped = np.array(sorted(policies.get(category, ())), dtype=float)
            positive = violation & np.isin(policy, mapped)
        if not present.any():
            continue
        w = weight[present]
        pos = positive[present]
        parts.append(
            pd.DataFrame(
                {
                    "model": codes[present],
                    "category": n,
                    "queue": queue[present],
                    "vendor": vendor[present],
                    "bucket": score_buckets(score[present]),
                    "positive": np.where(pos, w, 0.0),
                    "negative": np.where(pos, 0.0, w),
                    "score_sum": w * score[present],
                    "n": 1,
                }
            )
        )
    if not parts:
        return []
    sums = pd.concat(parts).groupby(["model", "category", "queue", "vendor", "bucket"], sort=False).sum()
    keys = list(models.groups)  # (backend, model version) in ngroup order
    return [
        ClassifierRollup(
            week=week,
            backend=keys[m][0],
            model_version=keys[m][1],
            category=(*CATEGORIES, ANY_VIOLATION)[c],
            truth=truth,
            queue_id=None if q < 0 else int(q),
            vendor_id=None if v < 0 else int(v),
            bucket=int(b),
            positive=float(p),
            negative=float(ng),
            score_sum=float(s),
            n=int(k),
        )
        for (m, c, q, v, b), p, ng, s, k in zip(
            sums.index, sums["positive"], sums["negative"], sums["score_sum"], sums["n"], strict=True
        )
    ]


def week_rollups(week: date, *, policies: dict[str, set[int]] | None = None) -> list[ClassifierRollup]:
    """The rollup rows of one week, computed from the raw tables (unsaved)."""
    policies = category_policies() if policies is None else policies
    start, end = week_bounds(week)
    rows: list[ClassifierRollup] = []
    decision_labels = _decision_labels(start, end)
    if not decision_labels.empty:
        scores = _scores(decision_labels["item_id"].to_numpy())
        rows += _rollup_rows(week, TruthSource.DECISION, decision_labels, scores, policies)
    qa_labels = _qa_labels(start, end)
    if not qa_labels.empty:
        scores = _scores(qa_labels["item_id"].to_numpy())
        rows += _rollup_rows(week, TruthSource.QA, qa_labels, scores, policies)
    imported = _imported_labels(start, end)
    if not imported.empty:
        scores = _scores(imported["item_id"].to_numpy())
        rows += _rollup_rows(week, TruthSource.IMPORTED, imported, scores, policies)
    return rows


def _cursor_locked() -> ClassifierRollupCursor:
    """Every writer takes this row lock first, so two refreshes never interleave on one week."""
    ClassifierRollupCursor.objects.get_or_create(name="classifier")
    return ClassifierRollupCursor.objects.select_for_update().get(name="classifier")


def week_replace(week: date, *, policies: dict[str, set[int]] | None = None) -> int:
    """Delete and re-insert one week's rollups in one transaction; returns the rows written."""
    with transaction.atomic():
        cursor = _cursor_locked()
        rows = week_rollups(week, policies=policies)
        ClassifierRollup.objects.filter(week=week).delete()
        ClassifierRollup.objects.bulk_create(rows, batch_size=5_000)
        # Under the lock: the figures cached from the rollups (keyed by the generation) are recomputed on next read.
        ClassifierRollupCursor.objects.filter(pk=cursor.pk).update(generation=F("generation") + 1)
    return len(rows)


# --- refresh and rebuild ----------------------------------------------------------------------------


def classifier_rollups_rebuild(start: date, end: date) -> list[date]:
    """Recompute every week from the one holding ``start`` to the one holding ``end``."""
    policies = category_policies()
    weeks = weeks_between(start, end)
    for week in weeks:
        week_replace(week, policies=policies)
    return weeks


def _max_id(queryset: QuerySet[Any]) -> int:
    return int(queryset.aggregate(top=Max("pk"))["top"] or 0)


def touched_weeks(
    *, decisions: tuple[int, int], ground_truth: tuple[int, int], scores: tuple[int, int], samples: tuple[int, int]
) -> list[date]:
    """Weeks holding any rollup entry of an item with a decision, ground truth, score or sample in the id ranges.

    An item's weeks are those of all its final decisions (a superseding decision moves it out of the
    superseded one's week, so both change), of its QA samples and, with an imported label, of its arrival.
    """
    items = (
        Q(pk__in=Decision.objects.filter(pk__gt=decisions[0], pk__lte=decisions[1]).values("item_id"))
        | Q(pk__in=GroundTruth.objects.filter(pk__gt=ground_truth[0], pk__lte=ground_truth[1]).values("item_id"))
        | Q(pk__in=ClassifierScore.objects.filter(pk__gt=scores[0], pk__lte=scores[1]).values("item_id"))
        | Q(pk__in=QaSample.objects.filter(pk__gt=samples[0], pk__lte=samples[1]).values("item_id"))
    )
    touched = ReviewItem.objects.filter(items).values("pk")
    weeks = set(Decision.objects.filter(is_final=True, item_id__in=touched).dates("decided_at", "week"))
    weeks |= set(QaSample.objects.filter(item_id__in=touched).dates("original_decided_at", "week"))
    imported = GroundTruth.objects.filter(origin=GroundTruthOrigin.IMPORTED, item_id__in=touched)
    weeks |= set(ReviewItem.objects.filter(pk__in=imported.values("item_id")).dates("received_at", "week"))
    return sorted(weeks)


def classifier_rollups_refresh(*, now: datetime | None = None) -> list[date]:
    """Recompute the weeks touched since the cursor, then move the cursor; returns those weeks.

    Idempotent: a second run with nothing new recomputes nothing, and recomputing a week twice writes
    the same rows. Rows are found by id, so back-dated decisions are seen; a row whose transaction
    commits after a later id was read is not (``analytics.tasks.rollups_nightly_task`` rebuilds the last
    weeks every night for that).
    """
    now = now or timezone.now()
    with transaction.atomic():
        cursor = _cursor_locked()
        lows = (cursor.last_decision_id, cursor.last_ground_truth_id, cursor.last_score_id, cursor.last_sample_id)
    highs = (
        _max_id(Decision.objects.all()),
        _max_id(GroundTruth.objects.all()),
        _max_id(ClassifierScore.objects.all()),
        _max_id(QaSample.objects.all()),
    )
    if all(hi <= lo for lo, hi in zip(lows, highs, strict=True)):
        return []
    weeks = touched_weeks(
        decisions=(lows[0], highs[0]),
        ground_truth=(lows[1], highs[1]),
        scores=(lows[2], highs[2]),
        samples=(lows[3], highs[3]),
    )
    policies = category_policies()
    for week in weeks:
        week_replace(week, policies=policies)
    with transaction.atomic():
        cursor = _cursor_locked()
        cursor.last_decision_id = max(cursor.last_decision_id, highs[0])
        cursor.last_ground_truth_id = max(cursor.last_ground_truth_id, highs[1])
        cursor.last_score_id = max(cursor.last_score_id, highs[2])
        cursor.last_sample_id = max(cursor.last_sample_id, highs[3])
        cursor.refreshed_at = now
        cursor.save()
    logger.info("classifier rollups refreshed: %d weeks", len(weeks))
    return weeks


def classifier_rollups_refresh_job() -> dict[str, object]:
    """The periodic task's body (wired as ``analytics.tasks.classifier_rollups_refresh_task``): JSON out."""
    weeks = classifier_rollups_refresh()
    return {"weeks": [week.isoformat() for week in weeks]}
