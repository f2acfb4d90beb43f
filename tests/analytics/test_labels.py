"""Truthful labels (issue 19): durations in words, headers in words, targets in their measure's unit, alert
readings with units, duration axes in hours or minutes, age buckets in age order and legends whole."""

from __future__ import annotations

from datetime import timedelta

from analytics.adapters import _label, kind_of
from analytics.charts import AGE_LABELS, stacked_bar
from analytics.models import AlertMetric
from analytics.selectors.alerts import alert_reading
from analytics.tables import Column, Kind, Table
from ops_platform.core.templatetags.units import duration_words, slice_words


def test_durations_read_in_their_two_largest_units():
    assert duration_words(timedelta(days=1)) == "1 day"
    assert duration_words(86_400.0) == "1 day"
    assert duration_words(73_000) == "20 h 16 min"
    assert duration_words(timedelta(days=2, hours=4, minutes=3)) == "2 days 4 h"
    assert duration_words(200) == "3 min 20 s"
    assert duration_words(0) == "0 s"
    assert duration_words(None) == "—"


def test_headers_are_words_and_targets_share_their_measures_unit():
    assert _label("sla_counted") == "Decisions with an SLA"
    assert _label("aht_seconds") == "Average handle time"
    assert _label("turnaround_p90_seconds_target") == "Turnaround, 90th percentile: target"
    assert kind_of("sla_attainment_target") == kind_of("sla_attainment") == Kind.PERCENT
    assert kind_of("turnaround_p90_seconds_target") == Kind.SECONDS


def test_alert_readings_say_what_the_numbers_are():
    rate = alert_reading(AlertMetric.FALSE_POSITIVE_RATE, 0.08, 0.02, timedelta(days=1), timedelta(days=7))
    assert (
        rate
        == "8.0% of QA-sampled decisions were false positives in the last 1 day, against 2.0% in the 7 days before."
    )
    sla = alert_reading(AlertMetric.SLA_AT_RISK, 716.0, 2.994, timedelta(days=1), timedelta(days=7))
    assert sla.startswith("716 items will miss their SLA")
    assert "about 3 items in that time" in sla
    assert slice_words({"queue": "general", "vendor": "vendor-a"}) == "queue general · vendor vendor-a"


def test_duration_axes_are_in_hours_and_age_buckets_in_age_order():
    table = Table(
        "t",
        [Column("queue", "Queue"), Column("age_bucket", "Age"), Column("turnaround_seconds", "T", Kind.SECONDS)],
        [
            {"queue": "q", "age_bucket": bucket, "turnaround_seconds": 60_000.0}
            for bucket in ("gt3d", "lt1h", "1-3d", "4-24h", "1-4h")
        ],
    )
    spec = stacked_bar(table, x="queue", y="turnaround_seconds", color="age_bucket").spec
    assert spec["encoding"]["y"]["title"] == "T (hours)"
    assert {round(v["turnaround_seconds"], 2) for v in spec["data"]["values"]} == {16.67}
    assert spec["encoding"]["color"]["sort"] == list(AGE_LABELS.values())
    assert spec["config"]["legend"]["labelLimit"] == 0
