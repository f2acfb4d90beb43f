"""Operations rollups and selectors against direct computations over the same raw rows (pandas, numpy
percentiles), incremental refresh against a full rebuild, and drill-down to the items behind a number."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.db.models import F, Sum
from django.utils import timezone

from analytics.filters import MetricFilter
from analytics.models import (
    OpsAppealDaily,
    OpsBacklogSnapshot,
    OpsDecisionDaily,
    OpsIntakeDaily,
    OpsLatencyDaily,
    OpsReviewerDaily,
    RollupCursor,
)
from analytics.rollups import (
    PERCENTILE_TOLERANCE,
    backlog_snapshot_take,
    bucket_value,
    buckets_of,
    hist_percentile,
    latency_rollups_rebuild,
    rollups_rebuild,
    rollups_refresh,
)
from analytics.selectors.operations import (
    appeal_rates,
    automation_rate,
    backlog,
    escalation_rate,
    intake_volume,
    items_behind,
    latency_percentiles,
    reviewer_productivity,
    sla_attainment,
)
from analytics.tasks import backlog_snapshot_task, rollups_nightly_task, rollups_refresh_task
from ops_platform.core.models import User, Vendor
from queues.models import Decision, ItemState, Queue, ReviewItem
from queues.wellness import BREAK_GAP
from tests.analytics.opsworld import World, items_add, local_day, world_create

START = datetime(2025, 3, 3, tzinfo=timezone.get_fixed_timezone(0))  # a Monday
PERIOD = MetricFilter(start=START.date() - timedelta(days=1), end=START.date() + timedelta(days=12))


@pytest.fixture
def world(vendor_a: Vendor, vendor_b: Vendor, settings: Any) -> World:
    # Local days differ from UTC days: items near midnight UTC land on the previous local day.
    settings.TIME_ZONE = "America/New_York"
    w = world_create(vendors=[vendor_a, vendor_b], start=START)
    items_add(w, 360)
    return w


def decided_frame(w: World, f: MetricFilter = PERIOD) -> pd.DataFrame:
    df = pd.DataFrame(w.decided)
    df["day"] = [local_day(t) for t in df["decided_at"]]
    df = df[(df["day"] >= f.start) & (df["day"] <= f.end)].copy()
    df["turnaround"] = [(d - r).total_seconds() for d, r in zip(df["decided_at"], df["received_at"], strict=True)]
    df["wait"] = [
        (c - r).total_seconds() if c is not None else np.nan
        for c, r in zip(df["claimed_at"], df["received_at"], strict=True)
    ]
    df["within"] = [d <= due for d, due in zip(df["decided_at"], df["due_at"], strict=True)]
    df["handle"] = df["handle"].astype(float)
    return df


def by_key(table: Any, key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in table.as_dicts()}


def _none(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def test_histogram_percentile_is_within_its_documented_tolerance_of_numpy() -> None:
    rng = np.random.default_rng(1)
    values = rng.lognormal(6, 2, 5_000) + 1
    b = buckets_of(values)
    hist = dict(zip(*np.unique(b, return_counts=True), strict=True))
    for q in (0.5, 0.9, 0.95, 0.99):
        exact = float(np.percentile(values, q * 100, method="inverted_cdf"))
        assert hist_percentile(hist, q) == pytest.approx(exact, rel=PERCENTILE_TOLERANCE + 1e-9)
    assert PERCENTILE_TOLERANCE < 0.01
    assert bucket_value(0) == 0.5
    assert buckets_of(np.array([np.nan, 0.2, 1e9]))[0] == -1


def test_turnaround_wait_and_handle_percentiles_match_numpy(world: World) -> None:
    rollups_refresh()
    df = decided_frame(world)
    for by in ("queue", "policy", "priority", "vendor"):
        table = by_key(latency_percentiles(PERIOD, by=by), f"{by}_id")
        groups = df.groupby(df[by].map(_none).astype(object).where(df[by].notna(), None), dropna=False)
        assert set(table) == {_none(k) for k in groups.groups}
        for key, g in groups:
            row = table[_none(key)]
            assert row["decided"] == len(g)
            for name in ("turnaround", "wait", "handle"):
                values = g[name].dropna().to_numpy()
                for q in (50, 90, 95):
                    got = row[f"{name}_p{q}"]
                    if len(values) == 0:
                        assert got is None
                        continue
                    exact = float(np.percentile(values, q, method="inverted_cdf"))
                    assert got == pytest.approx(exact, rel=PERCENTILE_TOLERANCE + 1e-9), (by, key, name, q)


def test_latency_from_the_per_dimension_rollup_equals_the_decision_rollup(world: World) -> None:
    # Unfiltered panels read OpsLatencyDaily; a filter reads the matching decision rows. Both must agree, and
    # latency_rollups_rebuild (an upgrade's backfill) writes what the refresh wrote.
    rollups_refresh()
    for by, key in (("queue", world.queues[0].pk), ("vendor", world.vendors[0].pk), ("policy", world.policies[0].pk)):
        unfiltered = {r[0]: r for r in latency_percentiles(PERIOD, by=by).rows}  # type: ignore[arg-type]
        filtered = latency_percentiles(replace(PERIOD, **{f"{by}_id": key}), by=by).rows  # type: ignore[arg-type]
        assert filtered == [unfiltered[key]]
    fields = ("day", "dimension", "key", "decided", "turnaround_hist", "wait_hist", "handle_hist")
    stored = sorted(OpsLatencyDaily.objects.values_list(*fields), key=repr)
    assert stored
    OpsLatencyDaily.objects.all().delete()
    latency_rollups_rebuild(PERIOD.start, PERIOD.end)
    assert sorted(OpsLatencyDaily.objects.values_list(*fields), key=repr) == stored


def test_sla_attainment_and_escalation_rate_match_direct_counts(world: World) -> None:
    rollups_refresh()
    df = decided_frame(world)
    for by in ("queue", "vendor"):
        table = by_key(sla_attainment(PERIOD, by=by), f"{by}_id")
        keys = df[by].map(_none)
        for key, g in df.groupby(keys.astype(object).where(keys.notna(), None), dropna=False):
            row = table[_none(key)]
            assert (row["decided"], row["within_sla"]) == (len(g), int(g["within"].sum()))
            assert row["sla_attainment"] == g["within"].sum() / len(g)
    escalation = by_key(escalation_rate(PERIOD, by="queue"), "queue_id")
    for key, g in df.groupby("queue"):
        assert escalation[key]["escalated"] == int(g["escalated"].sum())
        assert escalation[key]["escalation_rate"] == g["escalated"].sum() / len(g)


def test_filters_narrow_to_a_vendor_and_a_policy(world: World, vendor_a: Vendor) -> None:
    rollups_refresh()
    policy = world.policies[0].pk
    f = MetricFilter(start=PERIOD.start, end=PERIOD.end, vendor_id=vendor_a.pk, policy_id=policy)
    df = decided_frame(world)
    g = df[(df["vendor"] == vendor_a.pk) & (df["policy"] == policy)]
    rows = sla_attainment(f, by="queue").as_dicts()
    assert sum(r["decided"] for r in rows) == len(g)
    assert sum(r["within_sla"] for r in rows) == int(g["within"].sum())


def test_intake_volume_and_automation_rate_match_direct_counts(world: World) -> None:
    rollups_refresh()
    df = pd.DataFrame(world.intake)
    df["day"] = [local_day(t) for t in df["received_at"]]
    got = {(r["day"], r["source"]): r for r in intake_volume(PERIOD, by="source").as_dicts()}
    expected = df.groupby(["day", "source"]).agg(n=("pk", "size"), auto=("auto", "sum"), routed=("routed", "sum"))
    assert set(got) == set(expected.index)
    for key, e in expected.iterrows():
        assert (got[key]["received"], got[key]["auto_actioned"], got[key]["routed_to_review"]) == (
            e.n,
            e.auto,
            e.routed,
        )
    rates = {r["day"]: r["automation_rate"] for r in automation_rate(PERIOD).as_dicts()}
    for day, g in df.groupby("day"):
        assert rates[day] == g["auto"].sum() / len(g)
    by_policy = intake_volume(PERIOD, by="policy").as_dicts()
    for policy in world.policies:
        assert sum(r["received"] for r in by_policy if r["policy_id"] == policy.pk) == (df["policy"] == policy.pk).sum()


def test_appeal_and_overturn_rates_match_direct_counts(world: World) -> None:
    rollups_refresh()
    decided = decided_frame(world)
    appeals = pd.DataFrame(world.appeals)
    table = by_key(appeal_rates(PERIOD, by="vendor"), "vendor_id")
    for vendor in [None, *(v.pk for v in world.vendors)]:
        mine = appeals[appeals["vendor"].map(_none) == vendor] if vendor else appeals[appeals["vendor"].isna()]
        row = table[vendor]
        assert row["appeals_received"] == len(mine)
        assert row["overturned"] == (mine["outcome"] == "overturned").sum()
        assert row["upheld"] == (mine["outcome"] == "upheld").sum()
        assert row["overturn_rate"] == (mine["outcome"] == "overturned").sum() / len(mine)
        assert row["decisions_appealed"] == mine["original"].nunique()
        in_vendor = decided[decided["vendor"].map(_none) == vendor] if vendor else decided[decided["vendor"].isna()]
        assert row["decided"] == len(in_vendor)
        assert row["appeal_rate"] == len(mine) / len(in_vendor)


def reference_productive(events: list[dict[str, Any]]) -> dict[int, float]:
    """The documented rule, written out plainly: per reviewer and local day, gaps under BREAK_GAP between
    consecutive acts, and a claim up to the next act on the same item."""
    total: dict[int, float] = {}
    per: dict[tuple[int, Any], list[dict[str, Any]]] = {}
    for e in events:
        per.setdefault((e["actor"], local_day(e["at"])), []).append(e)
    for (actor, _), acts in per.items():
        acts.sort(key=lambda e: e["at"])
        total.setdefault(actor, 0.0)
        for prev, cur in itertools.pairwise(acts):
            gap = cur["at"] - prev["at"]
            if gap < BREAK_GAP or (prev["event"] == "claimed" and prev["item"] == cur["item"]):
                total[actor] += gap.total_seconds()
    return total


def test_reviewer_throughput_aht_and_occupancy_match_direct_computation(world: World) -> None:
    rollups_refresh()
    productive = reference_productive(world.events)
    decisions = pd.DataFrame(world.decisions)
    table = by_key(reviewer_productivity(PERIOD), "reviewer_id")
    for reviewer in world.reviewers:
        mine = decisions[decisions["reviewer"] == reviewer.pk]
        handles = [h.total_seconds() for h in mine["handle"] if h is not None and not pd.isna(h)]
        row = table[reviewer.pk]
        assert row["decisions"] == len(mine)
        assert row["aht_seconds"] == pytest.approx(np.mean(handles))
        assert row["productive_hours"] == pytest.approx(productive[reviewer.pk] / 3600)
        assert row["decisions_per_productive_hour"] == pytest.approx(len(mine) / (productive[reviewer.pk] / 3600))
        assert row["occupancy"] == pytest.approx(sum(handles) / productive[reviewer.pk])


def test_backlog_snapshot_counts_open_items_by_queue_and_age(world: World) -> None:
    now = START + timedelta(days=6)
    backlog_snapshot_take(now=now)
    expected: dict[tuple[int, str], list[int]] = {}
    for item in world.open_items:
        hours = (now - item["received_at"]).total_seconds() / 3600
        if hours < 0:
            continue
        bucket = (
            "lt1h"
            if hours < 1
            else "1-4h"
            if hours < 4
            else "4-24h"
            if hours < 24
            else "1-3d"
            if hours < 72
            else "gt3d"
        )
        counts = expected.setdefault((item["queue"], bucket), [0, 0, 0])
        counts[0] += 1
        counts[1] += item["due_at"] <= now  # overdue: its own count, never "due within the hour"
        counts[2] += now < item["due_at"] <= now + timedelta(hours=1)
    got = {
        (r["queue_id"], r["age_bucket"]): [r["items"], r["overdue"], r["due_within_hour"]]
        for r in backlog(PERIOD, at=now).as_dicts()
    }
    # Items received after ``now`` are not open yet at ``now``; the snapshot counts them in the first bucket.
    late = [i for i in world.open_items if i["received_at"] > now]
    for item in late:
        counts = expected.setdefault((item["queue"], "lt1h"), [0, 0, 0])
        counts[0] += 1
        counts[1] += item["due_at"] <= now
        counts[2] += now < item["due_at"] <= now + timedelta(hours=1)
    assert got == expected
    queue, bucket = next(iter(expected))
    behind = items_behind("backlog", PERIOD, queue_id=queue, age_bucket=bucket, at=now)
    assert behind.count() == expected[(queue, bucket)][0]


def test_items_behind_a_cell_are_the_items_it_counts(world: World) -> None:
    rollups_refresh()
    df = decided_frame(world)
    queue = world.queues[1].pk
    expected = set(df[(df["queue"] == queue) & df["within"]]["pk"])
    assert set(items_behind("within_sla", PERIOD, queue_id=queue).values_list("pk", flat=True)) == expected
    in_house = set(df[df["vendor"].isna() & df["escalated"]]["pk"])
    assert set(items_behind("escalated", PERIOD, vendor_id=None).values_list("pk", flat=True)) == in_house
    table = latency_percentiles(PERIOD, by="priority")
    row = table.rows[0]
    assert items_behind(table.metric, PERIOD, **table.cell_keys(row)).count() == row[2]
    appeals = pd.DataFrame(world.appeals)
    overturned = items_behind("overturned", PERIOD)
    assert overturned.count() == (appeals["outcome"] == "overturned").sum()


def _rollup_contents() -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for model in (OpsDecisionDaily, OpsIntakeDaily, OpsReviewerDaily, OpsAppealDaily):
        fields = [f.attname for f in model._meta.concrete_fields if f.name != "id"]
        rows = [tuple(str(v) if isinstance(v, dict) else v for v in r) for r in model.objects.values_list(*fields)]
        out[model.__name__] = sorted(rows, key=repr)
    return out


def test_incremental_refresh_equals_a_full_rebuild_and_reruns_change_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No overlap: the refresh must find the touched days from the new rows alone.
    monkeypatch.setattr("analytics.rollups.operations.CURSOR_OVERLAP", 0)
    assert rollups_refresh()  # the first run builds every day with data
    # More work arrives, some of it late: items received days ago, and a correction of a first-day item.
    items_add(world, 80, days=3, offset=timedelta(days=2))
    old = min(world.decided, key=lambda r: r["decided_at"])
    in_force = Decision.objects.filter(item_id=old["pk"], is_final=True, superseded_by__isnull=True).get()
    new_policy = next(p for p in world.policies if p.pk != in_force.policy_id)
    Decision.objects.create(
        item_id=old["pk"],
        reviewer=world.reviewers[1],
        queue_id=old["queue"],
        policy=new_policy,
        is_violation=True,
        decided_at=START + timedelta(days=5),
        supersedes=in_force,
    )
    days = rollups_refresh()
    assert local_day(old["decided_at"]) in days
    incremental = _rollup_contents()
    assert rollups_refresh() == []  # nothing new: nothing recomputed
    rollups_rebuild(PERIOD.start, PERIOD.end)  # recomputing changes nothing either
    assert _rollup_contents() == incremental
    for model in (OpsDecisionDaily, OpsIntakeDaily, OpsReviewerDaily, OpsAppealDaily):
        model.objects.all().delete()
    rollups_rebuild(PERIOD.start, PERIOD.end)
    assert _rollup_contents() == incremental


def test_tasks_refresh_rollups_and_take_a_snapshot(world: World) -> None:
    assert rollups_refresh_task() > 0
    assert OpsDecisionDaily.objects.exists()
    assert backlog_snapshot_task() > 0
    assert OpsBacklogSnapshot.objects.exists()


def test_the_nightly_task_catches_rows_committed_behind_the_cursor_and_purges_old_snapshots(
    intake_queue: Queue, reviewer: User, settings: Any
) -> None:
    rollups_refresh()
    now = timezone.now()
    item = ReviewItem.objects.create(
        source="late",
        external_id="1",
        received_at=now - timedelta(minutes=5),
        queue=intake_queue,
        state=ItemState.DECIDED,
        decided_at=now,
    )
    Decision.objects.create(item=item, reviewer=reviewer, queue=intake_queue, is_violation=False, decided_at=now)
    # A transaction that committed after the refresh had read past its ids (beyond the overlap): unseen.
    RollupCursor.objects.filter(name="operations").update(
        last_decision_id=F("last_decision_id") + 10**6, last_event_id=10**9, last_item_id=10**9
    )
    rollups_refresh()
    assert not OpsDecisionDaily.objects.filter(queue=intake_queue).exists()
    old = OpsBacklogSnapshot.objects.create(
        taken_at=now - settings.ANALYTICS_BACKLOG_RETENTION - timedelta(hours=1),
        queue=intake_queue,
        age_bucket="lt1h",
        count=3,
    )
    recent = OpsBacklogSnapshot.objects.create(
        taken_at=now - timedelta(days=2), queue=intake_queue, age_bucket="lt1h", count=3
    )

    done = rollups_nightly_task()

    assert done["snapshots_purged"] == 1
    assert OpsDecisionDaily.objects.filter(queue=intake_queue).aggregate(n=Sum("decided"))["n"] == 1
    assert not OpsBacklogSnapshot.objects.filter(pk=old.pk).exists()
    assert OpsBacklogSnapshot.objects.filter(pk=recent.pk).exists()
