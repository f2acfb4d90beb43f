"""Every dashboard panel, read from the rollups, against the same figure computed directly over the raw rows of a
small seeded world (tests/support/dashboard_world.py, the one bench/dashboard.py times at scale).

The direct computations read raw rows through the ORM with the rollups' own definitions (``deciding_decisions``
and friends) and aggregate them with pandas: percentiles as PostgreSQL's ``percentile_disc`` (the inverted-CDF
order statistic the histograms approximate, within their documented tolerance), rates as plain counts, productive
time from consecutive events, classifier figures from scores joined to final decisions (AUPRC by scikit-learn).
Everything else must be exact.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from analytics.filters import MetricFilter
from analytics.rollups import (
    BACKLOG_AGES,
    ENTERING_EVENTS,
    PERCENTILE_TOLERANCE,
    VENDOR_OF_REVIEWER,
    auto_actioned_exists,
    backlog_items,
    backlog_snapshot_take,
    classifier_rollups_rebuild,
    current_final_decisions,
    deciding_decisions,
    escalated_exists,
    intake_items,
    policy_in_force,
    rollups_rebuild,
    week_bounds,
    week_start,
)
from analytics.selectors.capacity import forecast_cached, history_days
from analytics.selectors.classifiers import active_threshold, threshold_edge
from analytics.selectors.vendors import MEASURES, iso_weeks
from ops_platform.core.models import Policy
from qa.selectors import QaFilter, slice_stats
from queues.models import Decision, ItemEvent, ItemKind, Queue, ReviewItem
from queues.wellness import BREAK_GAP
from routing.models import ClassifierScore
from tests.support import dashboard_world as dw

pytestmark = pytest.mark.django_db

DAYS = 30
# Richer than production's shares, so a few thousand rows still hold appeals, QA samples and escalations.
SHARES = dw.SHARES | {"appeal": 0.05, "qa": 0.1, "escalated": 0.1, "bulk": 0.05}
Figures = dict[Any, tuple[Any, ...]]


# --- raw rows ------------------------------------------------------------------------------------------------------


def rows(qs: Any, *names: str, **expressions: Any) -> pd.DataFrame:
    return pd.DataFrame(list(qs.values(*names, **expressions)), columns=[*names, *expressions])


def seconds(values: pd.Series) -> pd.Series:
    return pd.to_timedelta(values).dt.total_seconds()


def key(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def disc(values: pd.Series, qs: tuple[float, ...] = (0.5, 0.9, 0.95)) -> tuple[Any, ...]:
    """``percentile_disc``: the smallest value with at least q of them at or below it; NULLs left out."""
    present = values.dropna().to_numpy(dtype=float)
    if not len(present):
        return (None,) * len(qs)
    return tuple(float(v) for v in np.percentile(present, [q * 100 for q in qs], method="inverted_cdf"))


def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def monday(at: pd.Series) -> pd.Series:
    days = at.dt.tz_convert(UTC).dt.date
    return days.map(lambda d: d - timedelta(days=d.weekday()))


def deciding(f: MetricFilter) -> pd.DataFrame:
    """Every deciding decision in the period, with its item's fields, as the rollups define them."""
    qs = (
        deciding_decisions()
        .filter(decided_at__gte=f.start_at, decided_at__lt=f.end_at)
        .annotate(final_policy=policy_in_force(), was_escalated=escalated_exists())
    )
    d = rows(
        qs,
        "decided_at",
        "claimed_at",
        "handle_time",
        q=F("queue_id"),
        p=F("final_policy"),
        v=F(VENDOR_OF_REVIEWER),
        prio=F("item__priority"),
        received=F("item__received_at"),
        due=F("item__due_at"),
        esc=F("was_escalated"),
    )
    d["turnaround"] = seconds(d["decided_at"] - d["received"])
    d["wait"] = seconds(d["claimed_at"] - d["received"])
    d["handle"] = seconds(d["handle_time"])
    d["within"] = d["due"].notna() & (d["decided_at"] <= d["due"])
    return d


# --- the direct computations ---------------------------------------------------------------------------------------


def naive_latency(f: MetricFilter, by: str) -> Figures:
    d = deciding(f)
    column = {"queue": "q", "policy": "p", "vendor": "v", "priority": "prio"}[by]
    return {
        key(k): (len(g), *disc(g["turnaround"]), *disc(g["wait"]), *disc(g["handle"]))
        for k, g in d.groupby(column, dropna=False)
    }


def naive_sla(f: MetricFilter, by: str) -> Figures:
    d = deciding(f)
    out = {}
    for k, g in d.groupby({"queue": "q", "vendor": "v"}[by], dropna=False):
        counted, within = int(g["due"].notna().sum()), int(g["within"].sum())
        out[key(k)] = (len(g), counted, within, ratio(within, counted))
    return out


def naive_escalation(f: MetricFilter) -> Figures:
    return {key(k): (len(g), int(g["esc"].sum()), g["esc"].sum() / len(g)) for k, g in deciding(f).groupby("q")}


def naive_intake(f: MetricFilter, *, by_source: bool) -> Figures:
    keys = ("day", "source") if by_source else ("day",)
    grouped = (
        intake_items()
        .filter(received_at__gte=f.start_at, received_at__lt=f.end_at)
        .annotate(day=TruncDate("received_at"), was_auto=auto_actioned_exists())
        .values(*keys)
        .annotate(
            n=Count("pk"),
            auto=Count("pk", filter=Q(was_auto=True)),
            routed=Count("pk", filter=Q(queued_at__isnull=False)),
        )
        .order_by()
    )
    return {tuple(r[k] for k in keys): (r["n"], r["auto"], r["routed"]) for r in grouped}


def naive_backlog(at: datetime) -> Figures:
    items = rows(backlog_items(), "queue_id", "received_at", "due_at")
    bucket = pd.Series(str(BACKLOG_AGES[-1][0]), index=items.index)
    for name, upper in reversed(BACKLOG_AGES[:-1]):
        bucket[items["received_at"] > at - upper] = str(name)
    items["bucket"] = bucket
    items["over"] = items["due_at"].notna() & (items["due_at"] <= at)
    items["soon"] = items["due_at"].notna() & (items["due_at"] > at) & (items["due_at"] <= at + timedelta(hours=1))
    return {
        (q, b): (len(g), int(g["over"].sum()), int(g["soon"].sum()))
        for (q, b), g in items.groupby(["queue_id", "bucket"])
    }


def naive_appeals(f: MetricFilter) -> Figures:
    def contested_queue(ref: str) -> Subquery:
        return Subquery(deciding_decisions().filter(item=OuterRef(ref)).values("queue_id")[:1])

    period = {"decided_at__gte": f.start_at, "decided_at__lt": f.end_at}
    counted = deciding_decisions().filter(**period).values("queue_id").annotate(n=Count("pk"))
    decided = dict(counted.values_list("queue_id", "n").order_by())
    received = dict(
        ReviewItem.objects.filter(
            kind=ItemKind.APPEAL, is_golden=False, received_at__gte=f.start_at, received_at__lt=f.end_at
        )
        .annotate(q=contested_queue("appeal_of"))
        .values("q")
        .annotate(n=Count("pk"))
        .values_list("q", "n")
        .order_by()
    )
    outcomes = {
        r["q"]: r
        for r in Decision.objects.filter(**period, item__is_golden=False)
        .exclude(appeal_outcome="")
        .annotate(q=contested_queue("item__appeal_of"))
        .values("q")
        .annotate(
            up=Count("pk", filter=Q(appeal_outcome="upheld")), over=Count("pk", filter=Q(appeal_outcome="overturned"))
        )
        .order_by()
    }
    appealed = dict(
        deciding_decisions()
        .filter(**period)
        .filter(Exists(ReviewItem.objects.filter(appeal_of=OuterRef("item"), kind=ItemKind.APPEAL)))
        .values("queue_id")
        .annotate(n=Count("pk"))
        .values_list("queue_id", "n")
        .order_by()
    )
    out = {}
    for k in set(decided) | set(received) | set(outcomes) | set(appealed):
        up, over = (outcomes[k]["up"], outcomes[k]["over"]) if k in outcomes else (0, 0)
        out[k] = (decided.get(k, 0), received.get(k, 0), appealed.get(k, 0), up, over, ratio(over, up + over))
    return out


def naive_productivity(f: MetricFilter) -> Figures:
    """Decisions and mean handle time per reviewer; productive hours: each gap between a reviewer's consecutive
    actions on one local day, when shorter than a break or spent on the item they had claimed."""
    decided = {
        r["reviewer"]: r
        for r in Decision.objects.filter(decided_at__gte=f.start_at, decided_at__lt=f.end_at, item__is_golden=False)
        .values("reviewer")
        .annotate(n=Count("pk"), handle=Sum("handle_time"), hn=Count("handle_time"))
        .order_by()
    }
    events = ItemEvent.objects.filter(actor__isnull=False, item__is_golden=False, at__gte=f.start_at, at__lt=f.end_at)
    e = rows(events, "id", "actor_id", "at", "event", "item_id")
    e["day"] = e["at"].map(lambda at: timezone.localtime(at).date())
    e = e.sort_values(["actor_id", "day", "at", "id"])
    by = e.groupby(["actor_id", "day"])
    e["prev_at"], e["prev_event"], e["prev_item"] = by["at"].shift(), by["event"].shift(), by["item_id"].shift()
    gap = e["at"] - e["prev_at"]
    counts = e["prev_at"].notna() & (
        (gap < BREAK_GAP) | ((e["prev_event"] == "claimed") & (e["prev_item"] == e["item_id"]))
    )
    productive = seconds(gap[counts]).groupby(e["actor_id"][counts]).sum().to_dict()
    out = {}
    for reviewer in set(decided) | set(productive):
        r = decided.get(reviewer, {})
        handle = r.get("handle")
        aht = handle.total_seconds() / r["hn"] if handle and r["hn"] else None
        out[reviewer] = (r.get("n", 0), float(productive.get(reviewer, 0.0)) / 3600, aht)
    return out


def naive_vendor_weeks(f: MetricFilter) -> Figures:
    """Volume, SLA attainment, turnaround p90 and AHT per vendor and ISO week from the raw decisions; quality score
    and agreement from the raw QA samples through ``qa.selectors.slice_stats`` (point estimates)."""
    weeks = iso_weeks(f)
    d = deciding(MetricFilter(weeks[0] - timedelta(days=7), weeks[-1] + timedelta(days=6)))
    d = d[d["v"].notna()]
    d["week"] = monday(d["decided_at"])
    out: Figures = {}
    for (v, week), g in d.groupby(["v", "week"]):
        if week not in weeks:  # the week before the period: the scorecards' trend needs it, the table shows none
            continue
        start = datetime.combine(week, datetime.min.time(), tzinfo=UTC)
        qa = slice_stats(
            QaFilter(vendor_id=int(v), start=start, end=min(start + timedelta(days=7), f.end_at)), n_resamples=0
        )
        counted, handled = int(g["due"].notna().sum()), int(g["handle"].notna().sum())
        out[(int(v), week)] = (
            len(g),
            ratio(int(g["within"].sum()), counted),
            disc(g["turnaround"], (0.9,))[0],
            ratio(g["handle"].sum(), handled),
            qa.quality.value if qa.quality else None,
            qa.kappa.value if qa.kappa else None,
        )
    return out


def naive_capacity(f: MetricFilter) -> Figures:
    """Per active queue: items that entered it in the history days from its first day with any (raw
    'queued'/'escalated' events), the mean
    handle time of the items it decided, and the mean of the 14-day forecast of that history (``forecast_cached``:
    the panel fitted the same history just before, unless its history differs)."""
    days = history_days(f)
    start = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    entered = ItemEvent.objects.filter(event__in=ENTERING_EVENTS, at__gte=start, at__lt=end, queue__isnull=False)
    e = rows(entered, "queue_id", "at")
    volumes = e.groupby([e["queue_id"], e["at"].dt.tz_convert(UTC).dt.date]).size().to_dict()
    d = deciding(f)
    handle = {q: g["handle"].sum() / g["handle"].count() for q, g in d.groupby("q") if g["handle"].count()}
    out: Figures = {}
    for queue_id in Queue.objects.filter(is_active=True).values_list("pk", flat=True):
        # History starts at the queue's first day with an item entering it: before that there is no data.
        first = min((day for q, day in volumes if q == queue_id), default=None)
        mine = [day for day in days if first is not None and day >= first]
        history = pd.Series([float(volumes.get((queue_id, day), 0)) for day in mine], index=pd.DatetimeIndex(mine))
        forecast = forecast_cached(history) if len(history) else None
        out[queue_id] = (int(history.sum()), handle.get(queue_id), float(forecast.values.mean()) if forecast else None)
    return out


def labelled_scores(f: MetricFilter) -> pd.DataFrame:
    """(week, bucket, positive, score) of every scored item the ``decision`` truth counts in the filter's weeks:
    the latest local score of each model version, joined to the item's current final decision."""
    start, end = week_bounds(week_start(f.start))[0], week_bounds(week_start(f.end))[1]
    decisions = current_final_decisions().filter(decided_at__gte=start, decided_at__lt=end)
    d = rows(decisions, "item_id", "is_violation", "policy_id", "decided_at")
    scored = ClassifierScore.objects.filter(backend="local", item_id__in=list(d["item_id"]))
    s = rows(scored, "id", "item_id", "model_version", "scores").sort_values("id")
    s = s.drop_duplicates(["item_id", "model_version"], keep="last")
    s["score"] = s["scores"].map(lambda scores: scores.get(dw.CATEGORY))
    joined = d.merge(s[s["score"].notna()], on="item_id")
    mapped = [
        pk for pk, cats in Policy.objects.values_list("pk", "classifier_categories") if dw.CATEGORY in (cats or [])
    ]
    joined["score"] = joined["score"].astype(float)
    joined["bucket"] = np.clip(np.floor(joined["score"] * 100 + 1e-9), 0, 99).astype(int)
    joined["positive"] = joined["is_violation"] & joined["policy_id"].isin(mapped)
    joined["week"] = monday(joined["decided_at"])
    return joined


def buckets(f: MetricFilter, *, weekly: bool = False) -> list[tuple[Any, ...]]:
    """(week or None, bucket, positives, negatives, sum of scores) per bucket."""
    x = labelled_scores(f)
    out = []
    for keys, g in x.groupby(["week", "bucket"] if weekly else ["bucket"]):
        week, bucket = keys if weekly else (None, keys[0])
        out.append((week, bucket, int(g["positive"].sum()), int((~g["positive"]).sum()), g["score"].sum()))
    return out


def auprc(found: list[tuple[Any, ...]]) -> float | None:
    """scikit-learn's average precision of the bucketed scores (what the selector's AUPRC must equal)."""
    from sklearn.metrics import average_precision_score

    if not sum(p for _, _, p, _, _ in found):
        return None
    y = [label for _ in found for label in (1, 0)]
    s = [b / 100 for _, b, _, _, _ in found for _ in (0, 1)]
    weight = [n for _, _, pos, neg, _ in found for n in (pos, neg)]
    return float(average_precision_score(y, s, sample_weight=weight))


def naive_classifier_at(f: MetricFilter, threshold: float) -> Figures:
    edge = threshold_edge(threshold)
    x = labelled_scores(f)
    flagged = x["bucket"] >= edge
    tp, fp = int((x["positive"] & flagged).sum()), int((~x["positive"] & flagged).sum())
    fn, tn = int((x["positive"] & ~flagged).sum()), int((~x["positive"] & ~flagged).sum())
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"all": (tp, fp, fn, tn, precision, recall, fp / (fp + tn), 2 * precision * recall / (precision + recall))}


def naive_calibration(f: MetricFilter) -> Figures:
    out: dict[Any, list[float]] = {}
    for _, bucket, pos, neg, total in buckets(f):
        b = out.setdefault(bucket // 10, [0.0, 0.0, 0.0])
        b[0], b[1], b[2] = b[0] + pos, b[1] + neg, b[2] + total
    return {k / 10: (v[2] / (v[0] + v[1]), v[0] / (v[0] + v[1])) for k, v in out.items()}


def naive_drift(f: MetricFilter, threshold: float) -> Figures:
    edge = threshold_edge(threshold)
    weeks: dict[date, list[tuple[Any, ...]]] = {}
    for row in buckets(f, weekly=True):
        weeks.setdefault(row[0], []).append(row)
    out = {}
    for week, found in weeks.items():
        tp = sum(r[2] for r in found if r[1] >= edge)
        fp = sum(r[3] for r in found if r[1] >= edge)
        pos, total = sum(r[2] for r in found), sum(r[2] + r[3] for r in found)
        out[week] = (ratio(tp, tp + fp), ratio(tp, pos), auprc(found), sum(float(r[4]) for r in found) / total)
    return out


# --- the panels' figures, keyed like the direct ones -------------------------------------------------------------


def by_key(table: Any, keys: str | tuple[str, ...], values: tuple[str, ...]) -> Figures:
    return {
        tuple(d[c] for c in keys) if isinstance(keys, tuple) else d[keys]: tuple(d[v] for v in values)
        for d in table.as_dicts()
    }


LATENCY = ("decided", *(f"{m}_p{p}" for m in ("turnaround", "wait", "handle") for p in (50, 90, 95)))
SCORECARD = ("volume", "sla_attainment", "turnaround_p90_seconds", "aht_seconds", "quality_score", "agreement")


def expectations(snapshot_at: datetime) -> dict[str, tuple[Any, Any, tuple[int, ...]]]:
    """Per panel name: the direct computation, the panel's figures keyed alike, the positions compared within the
    histograms' tolerance."""
    threshold = active_threshold(dw.CATEGORY)
    assert {m for m, _ in MEASURES} >= set(SCORECARD)
    out: dict[str, tuple[Any, Any, tuple[int, ...]]] = {
        "intake volume by source": (
            lambda f: naive_intake(f, by_source=True),
            lambda t: by_key(t, ("day", "source"), ("received", "auto_actioned", "routed_to_review")),
            (),
        ),
        "automation rate": (
            lambda f: naive_intake(f, by_source=False),
            lambda t: by_key(t, ("day",), ("received", "auto_actioned", "routed_to_review")),
            (),
        ),
        "backlog by queue x age": (
            lambda f: naive_backlog(snapshot_at),
            lambda t: by_key(t, ("queue_id", "age_bucket"), ("items", "overdue", "due_within_hour")),
            (),
        ),
        "escalation rate by queue": (
            naive_escalation,
            lambda t: by_key(t, "queue_id", ("decided", "escalated", "escalation_rate")),
            (),
        ),
        "appeal and overturn rates by queue": (
            naive_appeals,
            lambda t: by_key(
                t,
                "queue_id",
                ("decided", "appeals_received", "decisions_appealed", "upheld", "overturned", "overturn_rate"),
            ),
            (),
        ),
        "reviewer productivity": (
            naive_productivity,
            lambda t: by_key(t, "reviewer_id", ("decisions", "productive_hours", "aht_seconds")),
            (),
        ),
        "vendor weekly scorecard": (
            naive_vendor_weeks,
            lambda t: {
                (d["vendor_id"], d["week_start"]): tuple(d[m] for m in SCORECARD) for d in t.as_dicts() if d["volume"]
            },
            (2,),
        ),
        "capacity plan (forecasts precomputed)": (
            naive_capacity,
            lambda t: {r["queue_id"]: (r["entered"], r["handle_seconds"], r["forecast_mean"]) for r in t.rows},
            (),
        ),
        f"classifier metrics at {threshold:g} ({dw.CATEGORY})": (
            lambda f: naive_classifier_at(f, threshold),
            lambda m: {"all": (m.tp, m.fp, m.fn, m.tn, m.precision, m.recall, m.fpr, m.f1)},
            (),
        ),
        "PR curve / AUPRC": (lambda f: {"all": (auprc(buckets(f)),)}, lambda c: {"all": (c.auprc,)}, ()),
        "calibration": (
            naive_calibration,
            lambda bins: {b.lower: (b.mean_predicted, b.observed_rate) for b in bins if b.weight},
            (),
        ),
        "weekly drift": (
            lambda f: naive_drift(f, threshold),
            lambda weeks: {w.week: (w.precision, w.recall, w.auprc, w.mean_score) for w in weeks if w.n},
            (),
        ),
    }
    for by in dw.LATENCY_BY:
        figures = partial(by_key, keys=f"{by}_id", values=LATENCY)
        out[f"turnaround/wait/handle p50/p90/p95 by {by}"] = (
            partial(naive_latency, by=by),
            figures,
            tuple(range(1, 10)),
        )
    for by in ("queue", "vendor"):
        figures = partial(by_key, keys=f"{by}_id", values=("decided", "sla_counted", "within_sla", "sla_attainment"))
        out[f"SLA attainment by {by}"] = (partial(naive_sla, by=by), figures, ())
    return out


def mismatches(got: Figures, want: Figures, percentiles: tuple[int, ...]) -> list[str]:
    problems = []
    if set(got) != set(want):
        only_got, only_want = sorted(set(got) - set(want), key=str), sorted(set(want) - set(got), key=str)
        problems.append(f"keys differ: only the panel {only_got[:5]}, only the raw rows {only_want[:5]}")
    for k in sorted(set(got) & set(want), key=str):
        for i, (a, b) in enumerate(zip(got[k], want[k], strict=True)):
            if a is None or b is None:
                ok = a is None and b is None
            elif i in percentiles:
                ok = a == 0.5 if float(b) < 1 else abs(a / float(b) - 1) <= PERCENTILE_TOLERANCE + 1e-6
            else:
                ok = math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
            if not ok:
                problems.append(f"{k} column {i}: panel {a!r}, raw rows {b!r}")
    return problems


def test_every_panel_gives_the_figures_computed_over_raw_rows() -> None:
    now = timezone.now().replace(second=0, microsecond=0)
    world = dw.world_create()
    chunk = dw.chunk_generate(np.random.default_rng(7), 2500, world, dw.Ids(), now, days=DAYS, shares=SHARES)
    for model, frame in dw.framed(chunk):
        model.objects.bulk_create(dw.instances(model, frame), batch_size=500)
    start, end = (now - timedelta(days=DAYS + 1)).date(), now.date()
    rollups_rebuild(start, end)
    classifier_rollups_rebuild(start, end)
    backlog_snapshot_take(now=now)
    assert chunk.frames["sample"]["state"].eq("closed").sum() > 50, "the world has closed QA samples to compare"
    assert chunk.frames["item"]["kind"].eq("appeal").sum() > 20, "the world has appeals to compare"

    panels, expected = dw.panels(now=now), expectations(now)
    assert {p.name for p in panels} == set(expected), "every panel the bench times has a direct computation here"
    problems = []
    compared = 0
    for panel in panels:
        naive, figures, percentiles = expected[panel.name]
        # A forecast fit takes a second or two a queue: the capacity plan is compared over 28 days only.
        for days in (28,) if panel.name.startswith("capacity") else panel.periods:
            f = MetricFilter.last_days(days, today=now.date())
            got, want = figures(panel.read(f)), naive(f)
            compared += len(want)
            problems += [f"{panel.name}, {days} d: {p}" for p in mismatches(got, want, percentiles)]
    assert not problems, "\n".join(problems[:40])
    assert compared > 500
