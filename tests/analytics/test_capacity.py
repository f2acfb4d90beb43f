"""Capacity planning: Erlang C against hand-worked and textbook numbers, the workload model, the daily forecast."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analytics.capacity import (
    agents_for_service_level,
    average_speed_of_answer,
    backtest,
    daily_volume,
    erlang_c,
    forecast_daily,
    reviewers_required_backlog,
    reviewers_required_realtime,
    service_level,
    staffing_gap,
)
from ops_platform.core.errors import ApplicationError

# 100 items per 30 minutes at 3 minutes each is 10 erlangs of traffic.
HAND_WORKED = {"arrivals": 100, "interval_seconds": 1800, "handle_seconds": 180}
WEEKLY = np.array([100, 110, 105, 100, 95, 40, 30], dtype=float)  # Monday first: quiet weekends


def erlang_c_by_the_textbook(a: float, n: int) -> float:
    top = a**n / math.factorial(n) * n / (n - a)
    return top / (sum(a**k / math.factorial(k) for k in range(n)) + top)


def synthetic(days: int, *, start: str = "2025-01-06", trend: float = 0.8, noise: float = 5.0) -> pd.Series:
    t = np.arange(days)
    y = WEEKLY[t % 7] + trend * t + np.random.default_rng(42).normal(0, noise, days)
    return pd.Series(y, index=pd.date_range(start, periods=days, freq="D"))


def test_hand_worked_case_needs_14_reviewers_at_service_level_0_888():
    result = agents_for_service_level(**HAND_WORKED, target_service_level=0.8, target_seconds=20)

    assert result.agents == 14
    assert round(result.service_level, 3) == 0.888
    assert result.occupancy == pytest.approx(10 / 14)
    assert result.asa == pytest.approx(average_speed_of_answer(**HAND_WORKED, agents=14))
    assert service_level(**HAND_WORKED, agents=13, target_seconds=20) < 0.8


@pytest.mark.parametrize(("traffic", "agents"), [(10, 14), (10, 11), (2.5, 4), (0.5, 1), (50, 58), (100, 110)])
def test_erlang_c_matches_the_textbook_sum(traffic, agents):
    assert erlang_c(traffic, agents) == pytest.approx(erlang_c_by_the_textbook(traffic, agents), rel=1e-9)


def test_erlang_c_stays_finite_where_the_textbook_sum_overflows():
    with pytest.raises(OverflowError):
        erlang_c_by_the_textbook(1000.0, 1050)

    assert 0 < erlang_c(1000.0, 1050) < 1


def test_too_few_agents_means_everyone_waits_for_ever():
    assert erlang_c(10, 10) == 1.0
    assert service_level(**HAND_WORKED, agents=9, target_seconds=20) == 0.0
    assert average_speed_of_answer(**HAND_WORKED, agents=10) == math.inf


def test_occupancy_cap_adds_agents_beyond_the_service_level():
    result = agents_for_service_level(**HAND_WORKED, target_service_level=0.8, target_seconds=20, max_occupancy=0.65)

    assert result.agents == 16  # 10 / 15 is still above 0.65
    assert result.occupancy <= 0.65


def test_unreachable_service_level_is_refused():
    with pytest.raises(ApplicationError) as refused:
        agents_for_service_level(**HAND_WORKED, target_service_level=1.0, target_seconds=20)

    assert refused.value.field == "target_service_level"


def test_realtime_queue_open_two_shifts_rosters_both_with_shrinkage():
    # 3200 a day over 16 open hours is the hand-worked 100 per half hour: 14 seats, two 8-hour shifts, 30% away.
    need = reviewers_required_realtime(
        volume_per_day=3200,
        hours_open_per_day=16,
        handle_seconds=180,
        sla_seconds=20,
        target_service_level=0.8,
        shrinkage=0.3,
    )

    assert need.staffing is not None
    assert need.staffing.agents == 14
    assert need.reviewers == 40  # 14 * 2 / 0.7
    assert need.workload_hours == pytest.approx(160)


def test_backlog_queue_shares_the_backlog_over_the_sla_days():
    # (1200 + 480 / 2 days) * 120 s = 48 h of work; one reviewer handles 8 h * 0.8 * (1 - 0.25) = 4.8 h.
    need = reviewers_required_backlog(
        volume_per_day=1200, handle_seconds=120, shift_hours=8, occupancy=0.8, shrinkage=0.25, sla_hours=48, backlog=480
    )

    assert need.workload_hours == pytest.approx(48)
    assert need.reviewers == 10  # not 11: 48 / 4.8 is 9.999999999999998 in floats
    assert need.staffing is None


def test_backlog_with_an_sla_under_a_day_is_cleared_today():
    need = reviewers_required_backlog(
        volume_per_day=1200, handle_seconds=120, shift_hours=8, occupancy=0.8, shrinkage=0.25, sla_hours=4, backlog=480
    )

    assert need.workload_hours == pytest.approx(56)
    assert need.reviewers == 12  # 56 / 4.8 = 11.7


def test_staffing_gap_counts_a_day_without_a_roster_as_nobody():
    days = pd.date_range("2025-03-03", periods=3, freq="D")
    gap = staffing_gap(pd.Series([10, 12, 8], index=days), pd.Series([11, 9], index=days[:2]))

    assert gap.tolist() == [-1, 3, 8]


def test_forecast_recovers_weekly_pattern_and_trend():
    history = synthetic(84)
    truth = WEEKLY[np.arange(84, 98) % 7] + 0.8 * np.arange(84, 98)

    forecast = forecast_daily(history)

    assert forecast.method == "holt_winters"
    assert forecast.values.index[0] == pd.Timestamp("2025-03-31")
    assert len(forecast.values) == 14
    assert np.abs(forecast.values.to_numpy() - truth).max() < 12
    # The weekday shape, with the level taken out, is the one the series was built from.
    shape = forecast.values.to_numpy()[:7] - forecast.values.to_numpy()[:7].mean()
    assert np.abs(shape - (WEEKLY - WEEKLY.mean())).max() < 5
    assert (forecast.lower <= forecast.values).all()
    assert (forecast.values <= forecast.upper).all()


def test_forecast_backtest_beats_the_mean_and_the_seasonal_naive_baseline():
    history = synthetic(84)
    held_out = history.to_numpy()[-14:]
    mean_mae = np.abs(history.to_numpy()[:-14].mean() - held_out).mean()

    scored = forecast_daily(history).backtest

    assert scored is not None
    assert scored == backtest(history)
    assert scored.method == "holt_winters"
    assert scored.mae < mean_mae / 3
    assert scored.mae < scored.baseline_mae
    assert scored.mape < 0.1
    assert 0 <= scored.smape < 0.1


def test_missing_days_are_zero_volume():
    history = synthetic(84, trend=0)
    worked = history[history.index.day_of_week != 6]  # nothing ever arrives on Sundays

    filled = daily_volume(worked)
    assert len(filled) == 83  # the series now ends on the last Saturday
    assert filled[filled.index.day_of_week == 6].eq(0).all()
    forecast = forecast_daily(worked)
    assert forecast.values[forecast.values.index.day_of_week == 6].max() < 10


def test_short_history_falls_back_to_last_week_repeated():
    history = synthetic(10)

    forecast = forecast_daily(history)

    assert forecast.method == "seasonal_naive"
    assert "10 days" in forecast.reason
    assert forecast.backtest is None
    assert forecast.values.tolist() == pytest.approx(np.resize(history.to_numpy()[-7:], 14).tolist())


def test_a_few_days_of_history_falls_back_to_the_mean():
    forecast = forecast_daily(synthetic(3))

    assert forecast.method == "mean"
    assert forecast.values.nunique() == 1


def test_falling_volume_never_forecasts_below_zero():
    history = pd.Series(np.maximum(0, 60 - 1.5 * np.arange(42)), index=pd.date_range("2025-01-06", periods=42))

    forecast = forecast_daily(history)

    assert (forecast.values >= 0).all()
    assert (forecast.lower >= 0).all()


def test_backtest_needs_more_history_than_its_horizon():
    with pytest.raises(ApplicationError):
        backtest(synthetic(14), horizon=14)
    with pytest.raises(ApplicationError):
        forecast_daily(pd.Series([], dtype=float))


def test_the_verdict_says_when_a_forecast_is_not_one_to_staff_from():
    from analytics.selectors.capacity import MAX_MAPE_TO_STAFF, forecast_verdict

    assert forecast_verdict(0, None) == (False, "No data in the period: nothing to forecast from.")
    short = forecast_daily(synthetic(10))
    fit, why = forecast_verdict(10, short)
    assert not fit
    assert "History too short: 10 days" in why
    good = forecast_daily(synthetic(56, noise=2.0))
    assert good.backtest is not None
    assert good.backtest.mape <= MAX_MAPE_TO_STAFF
    fit, why = forecast_verdict(56, good)
    assert fit, why
    assert f"backtest error {good.backtest.mape:.0%}, seasonal naive {good.backtest.baseline_mape:.0%}" in why
    wild = pd.Series(
        np.random.default_rng(3).choice([0.0, 5.0, 400.0], 42), index=pd.date_range("2025-01-06", periods=42)
    )
    noisy = forecast_daily(wild)
    fit, why = forecast_verdict(42, noisy)
    assert not fit
    assert "Error too high to staff from" in why or "Worse than repeating last week" in why


@pytest.mark.django_db
def test_capacity_history_starts_at_the_first_day_with_data():
    from datetime import timedelta

    from django.utils import timezone

    from analytics.filters import MetricFilter
    from analytics.models import OpsQueueDaily
    from analytics.selectors.capacity import capacity_plan_table
    from queues.models import Queue

    queue = Queue.objects.create(slug="general", name="General", sla=timedelta(hours=24))
    today = timezone.localdate()
    for k in range(1, 6):  # data on the last five days only, of a 28-day period
        OpsQueueDaily.objects.create(day=today - timedelta(days=k), queue=queue, entered=10 * k)

    (row,) = capacity_plan_table(MetricFilter.last_days(28, today=today), memo=False).rows

    assert row["history_days"] == 5
    assert row["history_mean"] == pytest.approx(30.0)  # (10 + 20 + 30 + 40 + 50) / 5, not / 27
    assert row["entered"] == 150
    assert row["verdict"].startswith("History too short: 5 days")
