"""Capacity planning: daily volume forecasts per queue and the reviewers they need (pure functions, no DB).

Real-time queues (SLA in minutes or seconds) are staffed with Erlang C: items arrive at random and wait for the
next free reviewer, like calls in a contact centre. Backlog queues (SLA in hours) are staffed with a workload
model: the day's hours of work divided by what one rostered reviewer actually handles in a day.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from ops_platform.core.errors import ApplicationError

WEEK = 7
# Ratios such as 48 h / 4.8 h land on 10.000000000000002; without the slack that rounds up to one extra reviewer.
_CEIL_SLACK = 1e-9


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ApplicationError(message, field=field)


def _ceil(x: float) -> int:
    return math.ceil(x - _CEIL_SLACK)


# --- Erlang C ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffingResult:
    agents: int
    service_level: float  # share of items picked up within the target time
    occupancy: float  # share of the agents' time spent handling items
    asa: float  # average speed of answer (mean wait), seconds


def erlang_b(traffic_erlangs: float, agents: int) -> float:
    """Blocking probability, by the recursion B(k) = A·B(k-1) / (k + A·B(k-1)), B(0) = 1."""
    _require(traffic_erlangs >= 0, "traffic_erlangs", "Traffic cannot be negative.")
    _require(agents >= 0, "agents", "Agents cannot be negative.")
    # The recursion stays in [0, 1]; the textbook A^N/N! sum overflows floats for a few hundred agents.
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic_erlangs * b / (k + traffic_erlangs * b)
    return b


def erlang_c(traffic_erlangs: float, agents: int) -> float:
    """Probability that an item waits: C = N·B / (N - A·(1 - B)); 1 when N ≤ A (the queue grows without end)."""
    if traffic_erlangs == 0:
        return 0.0
    if agents <= traffic_erlangs:
        return 1.0
    b = erlang_b(traffic_erlangs, agents)
    return agents * b / (agents - traffic_erlangs * (1 - b))


def _traffic(arrivals: float, interval_seconds: float, handle_seconds: float) -> float:
    _require(arrivals >= 0, "arrivals", "Arrivals cannot be negative.")
    _require(interval_seconds > 0, "interval_seconds", "The interval must be positive.")
    _require(handle_seconds > 0, "handle_seconds", "Handle time must be positive.")
    return arrivals * handle_seconds / interval_seconds


def service_level(
    *, arrivals: float, interval_seconds: float, handle_seconds: float, agents: int, target_seconds: float
) -> float:
    """Share picked up within ``target_seconds``: SL = 1 - C·exp(-(N - A)·t / h)."""
    a = _traffic(arrivals, interval_seconds, handle_seconds)
    if a == 0:
        return 1.0
    if agents <= a:
        return 0.0
    return 1 - erlang_c(a, agents) * math.exp(-(agents - a) * target_seconds / handle_seconds)


def average_speed_of_answer(*, arrivals: float, interval_seconds: float, handle_seconds: float, agents: int) -> float:
    """Mean wait in seconds: ASA = C·h / (N - A); infinite when N ≤ A."""
    a = _traffic(arrivals, interval_seconds, handle_seconds)
    if a == 0:
        return 0.0
    if agents <= a:
        return math.inf
    return erlang_c(a, agents) * handle_seconds / (agents - a)


def agents_for_service_level(
    *,
    arrivals: float,
    interval_seconds: float,
    handle_seconds: float,
    target_service_level: float,
    target_seconds: float,
    max_occupancy: float | None = None,
) -> StaffingResult:
    """Fewest agents meeting the service level (and the occupancy cap, when given)."""
    _require(0 < target_service_level < 1, "target_service_level", "The target service level must be in (0, 1).")
    _require(max_occupancy is None or 0 < max_occupancy <= 1, "max_occupancy", "Occupancy must be in (0, 1].")
    a = _traffic(arrivals, interval_seconds, handle_seconds)
    # Fewer than A agents can never keep up, so the search starts just above the traffic.
    agents = max(1, math.floor(a) + 1)
    while True:
        sl = service_level(
            arrivals=arrivals,
            interval_seconds=interval_seconds,
            handle_seconds=handle_seconds,
            agents=agents,
            target_seconds=target_seconds,
        )
        occupancy = a / agents
        if sl >= target_service_level and (max_occupancy is None or occupancy <= max_occupancy):
            asa = average_speed_of_answer(
                arrivals=arrivals, interval_seconds=interval_seconds, handle_seconds=handle_seconds, agents=agents
            )
            return StaffingResult(agents=agents, service_level=sl, occupancy=occupancy, asa=asa)
        agents += 1


# --- Reviewers per queue and day ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewerRequirement:
    reviewers: int  # rostered headcount for the day, rounded up
    fte: float  # the same before rounding
    workload_hours: float  # hours of handling the day carries
    staffing: StaffingResult | None = None  # the Erlang C interval detail, real-time queues only


def reviewers_required_realtime(
    *,
    volume_per_day: float,
    hours_open_per_day: float,
    handle_seconds: float,
    sla_seconds: float,
    target_service_level: float,
    shrinkage: float,
    shift_hours: float = 8.0,
    interval_minutes: int = 30,
    max_occupancy: float | None = None,
) -> ReviewerRequirement:
    """Rostered reviewers = ceil(N · max(1, open hours / shift hours) / (1 - shrinkage)).

    N comes from Erlang C for one interval, with the day's volume spread evenly over the open hours (a flat
    intraday profile: peaks need a per-interval forecast). A queue open longer than one shift needs N seats
    covered by several shifts; shrinkage (leave, training, meetings) removes rostered people from the floor.
    """
    _require(hours_open_per_day > 0, "hours_open_per_day", "Open hours must be positive.")
    _require(0 <= shrinkage < 1, "shrinkage", "Shrinkage must be in [0, 1).")
    _require(shift_hours > 0, "shift_hours", "Shift hours must be positive.")
    intervals = hours_open_per_day * 60 / interval_minutes
    staffing = agents_for_service_level(
        arrivals=volume_per_day / intervals,
        interval_seconds=interval_minutes * 60,
        handle_seconds=handle_seconds,
        target_service_level=target_service_level,
        target_seconds=sla_seconds,
        max_occupancy=max_occupancy,
    )
    fte = staffing.agents * max(1.0, hours_open_per_day / shift_hours) / (1 - shrinkage)
    workload = volume_per_day * handle_seconds / 3600
    return ReviewerRequirement(reviewers=_ceil(fte), fte=fte, workload_hours=workload, staffing=staffing)


def reviewers_required_backlog(
    *,
    volume_per_day: float,
    handle_seconds: float,
    shift_hours: float,
    occupancy: float,
    shrinkage: float,
    sla_hours: float,
    backlog: float = 0,
) -> ReviewerRequirement:
    """Rostered reviewers = ceil(W / (shift hours · occupancy · (1 - shrinkage))), where the day's work is
    W = (volume + backlog / D) · handle / 3600 hours and D = max(1, sla_hours / 24) days to clear the backlog.

    The backlog is shared evenly over the SLA horizon; a daily plan cannot schedule finer than a day, so an SLA
    under 24 hours clears it today. Occupancy below 1 leaves room for the gaps between items.
    """
    _require(volume_per_day >= 0 and backlog >= 0, "volume_per_day", "Volume and backlog cannot be negative.")
    _require(handle_seconds > 0, "handle_seconds", "Handle time must be positive.")
    _require(shift_hours > 0, "shift_hours", "Shift hours must be positive.")
    _require(0 < occupancy <= 1, "occupancy", "Occupancy must be in (0, 1].")
    _require(0 <= shrinkage < 1, "shrinkage", "Shrinkage must be in [0, 1).")
    _require(sla_hours > 0, "sla_hours", "The SLA must be positive.")
    days_to_clear = max(1.0, sla_hours / 24)
    workload = (volume_per_day + backlog / days_to_clear) * handle_seconds / 3600
    fte = workload / (shift_hours * occupancy * (1 - shrinkage))
    return ReviewerRequirement(reviewers=_ceil(fte), fte=fte, workload_hours=workload)


def staffing_gap(required: pd.Series, current: pd.Series) -> pd.Series:
    """Reviewers short (positive) or spare (negative) per day; a day missing from ``current`` has nobody."""
    return required.sub(current.reindex(required.index, fill_value=0), fill_value=0)


# --- Forecast ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backtest:
    method: str
    mae: float
    mape: float  # over days with volume; NaN when every actual is zero
    smape: float
    baseline_mae: float  # seasonal naive (last week repeated), the forecast to beat
    baseline_mape: float
    baseline_smape: float


@dataclass(frozen=True)
class Forecast:
    values: pd.Series  # predicted volume per day, never negative
    lower: pd.Series
    upper: pd.Series
    level: float  # coverage of the interval
    method: str  # "holt_winters", "seasonal_naive" or "mean"
    reason: str  # why this method was used
    backtest: Backtest | None  # None when history is too short to hold out a horizon
    notes: tuple[str, ...] = ()  # fit warnings, such as an optimizer that did not converge


def daily_volume(series: pd.Series) -> pd.Series:
    """One float per calendar day, oldest first; a day with no items is zero volume, not missing."""
    _require(len(series) > 0, "series", "A forecast needs at least one day of history.")
    s = series.groupby(pd.DatetimeIndex(series.index).normalize()).sum().astype(float)
    days = pd.date_range(s.index.min(), s.index.max(), freq="D")
    return s.reindex(days, fill_value=0.0)


def _seasonal_naive(y: pd.Series, horizon: int) -> np.ndarray:
    return np.resize(y.to_numpy()[-WEEK:], horizon)


@dataclass(frozen=True)
class _Fit:
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    method: str
    reason: str
    notes: tuple[str, ...] = ()


def _fit_predict(y: pd.Series, horizon: int, level: float) -> _Fit:
    z = float(norm.ppf(0.5 + level / 2))
    n = len(y)
    if n >= 2 * WEEK and y.nunique() > 1:
        with warnings.catch_warnings():
            # A fit whose optimizer stopped early is still usable; the backtest says how good it is, and the
            # note below reaches the report, where a warning in a worker log would not.
            warnings.simplefilter("ignore", ConvergenceWarning)
            # Additive, not multiplicative, season: queues have zero-volume days. Damping keeps a short-lived
            # trend from being extrapolated linearly for two weeks.
            fit = ExponentialSmoothing(y, trend="add", damped_trend=True, seasonal="add", seasonal_periods=WEEK).fit()
        converged = bool(getattr(fit.mle_retvals, "success", True))
        notes = () if converged else ("The Holt-Winters optimizer did not converge; parameters are its last step.",)
        mean = np.asarray(fit.forecast(horizon), dtype=float)
        # Simulated paths widen with the horizon as the model's own uncertainty does; seeded so reports repeat.
        paths = np.asarray(fit.simulate(horizon, repetitions=500, anchor="end", rng=np.random.default_rng(0)))
        lower, upper = np.quantile(paths, [0.5 - level / 2, 0.5 + level / 2], axis=1)
        return _Fit(mean, lower, upper, "holt_winters", f"{n} days of history: weekly season and damped trend", notes)
    if n >= WEEK:
        mean = _seasonal_naive(y, horizon)
        # The interval is the spread of week-on-week changes; with a single week, the spread of the days.
        changes = y.to_numpy()[WEEK:] - y.to_numpy()[:-WEEK] if n > WEEK else y.to_numpy()
        spread = z * float(np.std(changes))
        short = "fewer than two weeks" if n < 2 * WEEK else "the same volume every day"
        why = f"{n} days of history, {short}: last week repeated"
        return _Fit(mean, mean - spread, mean + spread, "seasonal_naive", why)
    mean = np.full(horizon, float(y.mean()))
    spread = z * float(y.std(ddof=0))
    why = f"{n} days of history, less than a week: the mean"
    return _Fit(mean, mean - spread, mean + spread, "mean", why)


def _errors(forecast: np.ndarray, actual: np.ndarray) -> tuple[float, float, float]:
    """MAE, MAPE and sMAPE as fractions. MAPE skips zero-volume days, where it is undefined."""
    err = np.abs(forecast - actual)
    nonzero = actual != 0
    mape = float(np.mean(err[nonzero] / np.abs(actual[nonzero]))) if nonzero.any() else math.nan
    denom = np.abs(forecast) + np.abs(actual)
    smape = float(np.mean(np.divide(2 * err, denom, out=np.zeros_like(err), where=denom > 0)))
    return float(np.mean(err)), mape, smape


def backtest(series: pd.Series, horizon: int = 14) -> Backtest:
    """Fit on all but the last ``horizon`` days, forecast them, and score against the actuals."""
    y = daily_volume(series)
    _require(len(y) > horizon, "series", f"A backtest needs more than {horizon} days of history.")
    train, actual = y.iloc[:-horizon], y.to_numpy()[-horizon:]
    fit = _fit_predict(train, horizon, level=0.9)
    mae, mape, smape = _errors(np.clip(fit.mean, 0, None), actual)
    baseline = _seasonal_naive(train, horizon) if len(train) >= WEEK else np.full(horizon, float(train.mean()))
    b_mae, b_mape, b_smape = _errors(baseline, actual)
    return Backtest(fit.method, mae, mape, smape, b_mae, b_mape, b_smape)


def forecast_daily(series: pd.Series, horizon: int = 14, level: float = 0.9) -> Forecast:
    """Daily volume for the ``horizon`` days after the last day in ``series``, with a ``level`` interval."""
    _require(horizon > 0, "horizon", "The horizon must be at least one day.")
    _require(0 < level < 1, "level", "The interval level must be in (0, 1).")
    y = daily_volume(series)
    fit = _fit_predict(y, horizon, level)
    days = pd.date_range(y.index[-1] + pd.Timedelta(days=1), periods=horizon, freq="D")

    # Volume cannot be negative; a trend heading down or a wide interval would otherwise say so.
    def clip(a: np.ndarray) -> pd.Series:
        return pd.Series(np.clip(a, 0, None), index=days)

    scored = backtest(y, horizon) if len(y) > horizon else None
    return Forecast(clip(fit.mean), clip(fit.lower), clip(fit.upper), level, fit.method, fit.reason, scored, fit.notes)
