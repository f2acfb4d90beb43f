"""Capacity plan per queue: daily volume history → 14-day forecast → reviewers required, against current staff.

History is items entering the queue per day (the ``OpsQueueDaily`` rollup: ``queued`` and ``escalated`` item
events, golden items included since they take a reviewer's time like any other). The period of the filter is
the history; a period ending today stops at yesterday (today is not over) and the forecast starts today.

A forecast is a function of its history alone, so fits are cached under a digest of the history (start day and
daily volumes): a page never shows a stale forecast, and ``capacity_forecasts_warm`` (every 30 minutes, the
``analytics`` queue) fits the dashboard's preset periods ahead of the page. A custom period is fitted on its
first request (0.1-1 s per queue) and cached too.

Real-time queues (SLA ≤ 1 hour) are staffed with Erlang C, backlog queues with the workload model, both from
``analytics.capacity`` with the ``ANALYTICS_*`` settings. Average handle time is the mean handle time of the
items the queue decided in the period (the ``OpsDecisionDaily`` rollup); a queue without one has no
requirement (it is not guessed).

Current staff is an approximation: active users holding ``core.review_items`` whose profile
``Queue.may_be_worked_by`` accepts, each counted in full for every queue they may work (a reviewer eligible
for three queues counts in all three), with no knowledge of shifts, leave or part-time hours. With a vendor
in the filter, only that vendor's reviewers count.
"""

from __future__ import annotations

import hashlib
import threading
import time as clock
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Sum
from django.utils import timezone

from analytics import capacity
from analytics.charts import Chart, band_line
from analytics.filters import PRESET_DAYS, MetricFilter
from analytics.models import OpsDecisionDaily, OpsQueueDaily, RollupCursor
from analytics.rollups import CURSOR_NAME
from analytics.tables import Column, Kind, Row, Table, items_url
from ops_platform.core.models import ReviewerProfile, User
from queues.models import ItemState, Queue, ReviewItem

HORIZON = 14
REALTIME_SLA = timedelta(hours=1)

PLAN_NOTE = (
    "Erlang C for queues with an SLA of an hour or less, the workload model for the others; shrinkage, occupancy "
    "and shift hours from settings. Current staff counts every reviewer who may work the queue, in full, in every "
    "queue they may work: an upper bound, not a roster."
)
FORECAST_NOTE = (
    "Holt-Winters with a weekly season when there are two weeks of history, simpler methods otherwise. History starts "
    "at each queue's first day with data: days before it are not zero volume, they are no data."
)
# A forecast whose backtest error (MAPE over the held-out 14 days) is above this is not one to staff from.
MAX_MAPE_TO_STAFF = 0.25


def forecast_verdict(history_days: int, forecast: capacity.Forecast | None) -> tuple[bool, str]:
    """Whether the forecast is one to staff from, and why, in words: too little history to fit or to backtest,
    an error too high, or worse than repeating last week (the seasonal-naive baseline)."""
    if forecast is None or history_days == 0:
        return False, "No data in the period: nothing to forecast from."
    bt = forecast.backtest
    if bt is None:
        return False, (
            f"History too short: {history_days} days, and a backtest needs more than {HORIZON}; the error of this "
            "forecast is unknown. Do not staff from it."
        )
    if bt.mape != bt.mape:  # NaN: no volume on the held-out days
        return False, "No volume on the backtest days: the error cannot be measured."
    versus = f"backtest error {bt.mape:.0%}, seasonal naive {bt.baseline_mape:.0%}"
    if bt.mape > MAX_MAPE_TO_STAFF:
        return False, f"Error too high to staff from ({versus}; the limit is {MAX_MAPE_TO_STAFF:.0%})."
    if bt.baseline_mape == bt.baseline_mape and bt.mape > bt.baseline_mape:
        return False, f"Worse than repeating last week ({versus}): plan from the seasonal-naive baseline instead."
    return True, f"Fit to plan from ({versus})."


@dataclass
class QueuePlan:
    queue: Queue
    realtime: bool
    history: pd.Series  # items entering per day, from the queue's first day with data in the period
    forecast: capacity.Forecast | None
    handle_seconds: float | None
    decisions: int  # decisions the handle time is averaged over
    backlog: int
    current_staff: int
    required: list[capacity.ReviewerRequirement | None] = field(default_factory=list)

    @property
    def verdict(self) -> tuple[bool, str]:
        return forecast_verdict(len(self.history), self.forecast)

    @property
    def peak_required(self) -> int | None:
        values = [r.reviewers for r in self.required if r is not None]
        return max(values) if values else None


def history_days(f: MetricFilter, today: date | None = None) -> list[date]:
    today = today or timezone.localdate()
    return [d for d in f.days if d < today] or f.days


def _queues(f: MetricFilter) -> list[Queue]:
    queues = Queue.objects.filter(is_active=True).order_by("name")
    if f.queue_id is not None:
        queues = queues.filter(pk=f.queue_id)
    if f.policy_id is not None:
        queues = queues.filter(policies=f.policy_id)
    return list(queues.prefetch_related("allowed_teams", "allowed_vendors", "required_skills"))


def _volumes(queue_ids: list[int], days: list[date]) -> dict[int, dict[date, int]]:
    rows = OpsQueueDaily.objects.filter(queue_id__in=queue_ids, day__gte=days[0], day__lte=days[-1])
    out: dict[int, dict[date, int]] = defaultdict(dict)
    for queue_id, day, n in rows.values_list("queue_id", "day", "entered"):
        out[queue_id][day] = n
    return out


def _handle_times(queue_ids: list[int], f: MetricFilter) -> dict[int, tuple[float, int]]:
    rows = (
        OpsDecisionDaily.objects.filter(queue_id__in=queue_ids, day__gte=f.start, day__lte=f.end)
        .values("queue_id")
        .annotate(seconds=Sum("handle_seconds"), n=Sum("handle_count"))
        .order_by()
    )
    return {r["queue_id"]: (r["seconds"] / r["n"], r["n"]) for r in rows if r["n"]}


FORECAST_CACHE_SECONDS = 2 * 24 * 3600


def forecast_cached(history: pd.Series) -> capacity.Forecast:
    """``capacity.forecast_daily`` of the history, from the cache when this exact history was fitted before."""
    digest = hashlib.sha256(
        f"{history.index[0]:%Y-%m-%d}:{HORIZON}:".encode() + history.to_numpy(dtype=float).tobytes()
    ).hexdigest()
    key = f"analytics:forecast:{digest}"
    forecast = cache.get(key)
    if forecast is None:
        forecast = capacity.forecast_daily(history, horizon=HORIZON)
        cache.set(key, forecast, FORECAST_CACHE_SECONDS)
    return forecast


def _backlogs(queue_ids: list[int]) -> dict[int, int]:
    rows = (
        ReviewItem.objects.filter(queue_id__in=queue_ids, state__in=[ItemState.QUEUED, ItemState.CLAIMED])
        .values("queue_id")
        .annotate(n=Count("id"))
    )
    return {r["queue_id"]: r["n"] for r in rows}


def _staff(queues: list[Queue], vendor_id: int | None) -> dict[int, int]:
    """Reviewers per queue, asking ``may_be_worked_by`` once per distinct (team, skills) rather than per person."""
    # Permissions come from ModelBackend; naming it is required once django-axes' backend is also configured.
    reviewers = User.objects.with_perm("core.review_items", backend="django.contrib.auth.backends.ModelBackend").filter(
        is_active=True
    )
    profiles = ReviewerProfile.objects.filter(user__in=reviewers, team__isnull=False).select_related("team")
    if vendor_id is not None:
        profiles = profiles.filter(team__vendor_id=vendor_id)
    skills: dict[int, set[int]] = defaultdict(set)
    for profile_id, skill_id in ReviewerProfile.skills.through.objects.filter(reviewerprofile__in=profiles).values_list(
        "reviewerprofile_id", "skill_id"
    ):
        skills[profile_id].add(skill_id)
    groups: dict[tuple[int, frozenset[int]], list[ReviewerProfile]] = defaultdict(list)
    for p in profiles:
        assert p.team_id is not None
        groups[(p.team_id, frozenset(skills[p.pk]))].append(p)
    counts = {}
    for q in queues:
        counts[q.pk] = sum(len(members) for members in groups.values() if q.may_be_worked_by(members[0]))
    return counts


def _required(plan: QueuePlan, today: date) -> list[capacity.ReviewerRequirement | None]:
    if plan.forecast is None or plan.handle_seconds is None or plan.handle_seconds <= 0:
        return [None] * HORIZON
    out: list[capacity.ReviewerRequirement | None] = []
    sla = plan.queue.sla.total_seconds()
    for day, volume in plan.forecast.values.items():
        if plan.realtime:
            out.append(
                capacity.reviewers_required_realtime(
                    volume_per_day=float(volume),
                    hours_open_per_day=settings.ANALYTICS_HOURS_OPEN,
                    handle_seconds=plan.handle_seconds,
                    sla_seconds=sla,
                    target_service_level=settings.ANALYTICS_SERVICE_LEVEL,
                    shrinkage=settings.ANALYTICS_SHRINKAGE,
                    shift_hours=settings.ANALYTICS_SHIFT_HOURS,
                    max_occupancy=settings.ANALYTICS_OCCUPANCY,
                )
            )
        else:
            # Today's backlog is work for the first forecast day, when that day is today.
            backlog = plan.backlog if day.date() == today else 0
            out.append(
                capacity.reviewers_required_backlog(
                    volume_per_day=float(volume),
                    handle_seconds=plan.handle_seconds,
                    shift_hours=settings.ANALYTICS_SHIFT_HOURS,
                    occupancy=settings.ANALYTICS_OCCUPANCY,
                    shrinkage=settings.ANALYTICS_SHRINKAGE,
                    sla_hours=sla / 3600,
                    backlog=backlog,
                )
            )
    return out


def capacity_plans(f: MetricFilter, *, today: date | None = None) -> list[QueuePlan]:
    today = today or timezone.localdate()
    queues = _queues(f)
    if not queues:
        return []
    ids = [q.pk for q in queues]
    days = history_days(f, today)
    volumes = _volumes(ids, days)
    handle = _handle_times(ids, f)
    backlogs = _backlogs(ids)
    staff = _staff(queues, f.vendor_id)
    index = pd.DatetimeIndex(days)
    plans = []
    for q in queues:
        history = pd.Series([float(volumes[q.pk].get(d, 0)) for d in days], index=index)
        # Days before the queue's first rollup row are days without data, not days without items.
        first = min(volumes[q.pk], default=None)
        history = history[history.index >= pd.Timestamp(first)] if first is not None else history.iloc[:0]
        aht, n = handle.get(q.pk, (None, 0))
        plan = QueuePlan(
            queue=q,
            realtime=q.sla <= REALTIME_SLA,
            history=history,
            forecast=forecast_cached(history) if len(history) else None,
            handle_seconds=aht,
            decisions=n,
            backlog=backlogs.get(q.pk, 0),
            current_staff=staff.get(q.pk, 0),
        )
        plan.required = _required(plan, today)
        plans.append(plan)
    return plans


# The plan panel and the forecast panel of one page share a computation; a memo of a minute keyed by the filter
# and the rollups' last refresh serves both (the backlog it shows may be that minute old).
_MEMO: dict[tuple[object, ...], tuple[float, list[QueuePlan]]] = {}
_MEMO_LOCK = threading.Lock()
_MEMO_SECONDS = 60


def capacity_plans_cached(f: MetricFilter) -> list[QueuePlan]:
    version = (
        RollupCursor.objects.filter(name=CURSOR_NAME).values_list("refreshed_at", flat=True).first(),
        timezone.localdate(),
    )
    key = (f, *version)
    now = clock.monotonic()
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
        if hit and now - hit[0] < _MEMO_SECONDS:
            return hit[1]
    plans = capacity_plans(f)
    with _MEMO_LOCK:
        for k in [k for k, (at, _) in _MEMO.items() if now - at >= _MEMO_SECONDS]:
            del _MEMO[k]
        _MEMO[key] = (now, plans)
    return plans


def capacity_forecasts_warm(periods: tuple[int, ...] = PRESET_DAYS) -> int:
    """Fit (or find cached) every active queue's forecast for the preset periods ending today, so the capacity
    page reads them from the cache; returns the number of queue plans computed."""
    return sum(len(capacity_plans(MetricFilter.last_days(days))) for days in periods)


def _model(plan: QueuePlan) -> str:
    return "Erlang C" if plan.realtime else "workload"


def capacity_plan_table(f: MetricFilter, *, memo: bool = True) -> Table:
    """The plan per queue; ``memo=False`` computes it afresh (forecasts still come from their cache)."""
    rows: list[Row] = []
    plans = capacity_plans_cached(f) if memo else capacity_plans(f)
    for p in plans:
        bt = p.forecast.backtest if p.forecast else None
        peak = p.peak_required
        rows.append(
            {
                "queue": p.queue.name,
                "queue_id": p.queue.pk,
                "sla_seconds": p.queue.sla.total_seconds(),
                "model": _model(p),
                "entered": int(p.history.sum()),
                "history_days": len(p.history),
                "history_mean": float(p.history.mean()) if len(p.history) else None,
                "forecast_mean": float(p.forecast.values.mean()) if p.forecast else None,
                "forecast_lower": float(p.forecast.lower.mean()) if p.forecast else None,
                "forecast_upper": float(p.forecast.upper.mean()) if p.forecast else None,
                "method": p.forecast.method if p.forecast else "",
                "verdict": p.verdict[1],
                "backtest_mape": bt.mape if bt else None,
                "baseline_mape": bt.baseline_mape if bt else None,
                "backtest_mae": bt.mae if bt else None,
                "handle_seconds": p.handle_seconds,
                "decisions": p.decisions,
                "backlog": p.backlog,
                "peak_required": peak,
                "current_staff": p.current_staff,
                "gap": peak - p.current_staff if peak is not None else None,
            }
        )
    notes = [PLAN_NOTE]
    unfit = [
        r["queue"] for r, p in zip(rows, capacity_plans_cached(f) if memo else [], strict=False) if not p.verdict[0]
    ]
    if unfit:
        notes.append(f"Not fit to staff from (see the verdict column): {', '.join(unfit)}.")
    if any(r["handle_seconds"] is None for r in rows):
        notes.append("A queue without decisions in the period has no handle time, so no requirement is computed.")
    return Table(
        title="Reviewers required per queue, next 14 days",
        columns=[
            Column("queue", "Queue"),
            Column("sla_seconds", "SLA", Kind.SECONDS),
            Column("model", "Model"),
            Column("entered", "Entered (period)", Kind.INT, drill=True),
            Column("history_days", "Days with data", Kind.INT),
            Column("history_mean", "Per day, history (days with data)", Kind.FLOAT),
            Column("forecast_mean", "Per day, forecast", Kind.FLOAT),
            Column("forecast_lower", "Forecast 90% interval, low", Kind.FLOAT),
            Column("forecast_upper", "Forecast 90% interval, high", Kind.FLOAT),
            Column("method", "Forecast method"),
            Column("backtest_mape", "Backtest error (MAPE)", Kind.PERCENT),
            Column("baseline_mape", "Seasonal-naive error (MAPE)", Kind.PERCENT),
            Column("backtest_mae", "Backtest error (items per day)", Kind.FLOAT),
            Column("verdict", "Fit to staff from?"),
            Column("handle_seconds", "Avg handle time", Kind.SECONDS),
            Column("decisions", "Decisions", Kind.INT),
            Column("backlog", "Backlog now", Kind.INT),
            Column("peak_required", "Peak required", Kind.INT),
            Column("current_staff", "May work it", Kind.INT),
            Column("gap", "Short (+) / spare (-)", Kind.INT),
        ],
        rows=rows,
        drill=lambda row: items_url(f, queue=row["queue_id"], on="queued", golden="include"),
        notes=notes,
    )


def capacity_forecast_table(f: MetricFilter) -> Table:
    rows: list[Row] = []
    for p in capacity_plans_cached(f):
        for day, volume in p.history.items():
            rows.append(
                {
                    "queue": p.queue.name,
                    "queue_id": p.queue.pk,
                    "day": day.date(),
                    "series": "history",
                    "volume": volume,
                    "lower": None,
                    "upper": None,
                    "required": None,
                    "current_staff": None,
                }
            )
        if p.forecast is None:
            continue
        for i, day in enumerate(p.forecast.values.index):
            req = p.required[i] if i < len(p.required) else None
            rows.append(
                {
                    "queue": p.queue.name,
                    "queue_id": p.queue.pk,
                    "day": day.date(),
                    "series": "forecast",
                    "volume": float(p.forecast.values.iloc[i]),
                    "lower": float(p.forecast.lower.iloc[i]),
                    "upper": float(p.forecast.upper.iloc[i]),
                    "required": req.reviewers if req else None,
                    "current_staff": p.current_staff,
                }
            )

    def drill(row: Row) -> str | None:
        if row["series"] != "history":
            return None
        return items_url(f, queue=row["queue_id"], on="queued", golden="include", day=row["day"])

    return Table(
        title="Items entering each queue per day, and the forecast with its 90% interval",
        columns=[
            Column("queue", "Queue"),
            Column("day", "Day", Kind.DATE),
            Column("series", "Series"),
            Column("volume", "Volume", Kind.FLOAT, drill=True),
            Column("lower", "Lower", Kind.FLOAT),
            Column("upper", "Upper", Kind.FLOAT),
            Column("required", "Reviewers required", Kind.INT),
            Column("current_staff", "May work it", Kind.INT),
        ],
        rows=rows,
        drill=drill,
        notes=[FORECAST_NOTE],
    )


def forecast_charts(table: Table) -> list[Chart]:
    """One chart per queue with any volume: history and forecast lines with the forecast's interval shaded (a
    queue with no items in the period draws no flat line at zero; the table still lists it)."""
    by_queue: dict[str, list[Row]] = defaultdict(list)
    for row in table.rows:
        by_queue[row["queue"]].append(row)
    by_queue = {q: rows for q, rows in by_queue.items() if any((r["volume"] or 0) > 0 for r in rows)}
    return [
        band_line(
            Table(table.title, table.columns, rows),
            x="day",
            y="volume",
            lower="lower",
            upper="upper",
            series="series",
            title=f"{queue}: items per day",
        )
        for queue, rows in by_queue.items()
    ]
