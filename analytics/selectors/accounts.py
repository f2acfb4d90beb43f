"""Account figures (docs/accounts.md): the repeat-offender rate, strikes issued, expired and removed per day, and
account actions by policy with the share whose decisions an appeal overturned. Read live from the account tables
(they are small beside items: one row per strike or action). The period and policy filter apply; queue and
vendor slices do not (a strike belongs to an account, not to a queue)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import date

from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import TruncDate

from analytics.filters import MetricFilter, days_through
from analytics.tables import Column, Kind, Row, Table, items_url
from ops_platform.core.figures import wilson_interval
from ops_platform.core.models import Policy
from queues.models import AccountAction, AppealOutcome, Decision, ItemKind, ReviewItem, Strike

SCOPE_NOTE = "Queue and vendor slices do not apply: strikes and actions belong to accounts."


def _rate_row(row: Row, key: str, positives: int, n: int) -> None:
    row[key] = positives / n if n else None
    row[f"{key}_low"], row[f"{key}_high"] = wilson_interval(positives, n)


def _rate_columns(key: str, label: str, items: str) -> list[Column]:
    return [
        Column(key, label, Kind.PERCENT, interval=(f"{key}_low", f"{key}_high"), items=items),
        Column(f"{key}_low", f"{label}, 95% low", Kind.PERCENT, hidden=True),
        Column(f"{key}_high", f"{label}, 95% high", Kind.PERCENT, hidden=True),
    ]


def _strikes(f: MetricFilter) -> QuerySet[Strike]:
    strikes = Strike.objects.all()
    if f.policy_id is not None:
        strikes = strikes.filter(policy_id=f.policy_id)
    return strikes


def repeat_offenders(f: MetricFilter) -> Table:
    """Per strike family: accounts struck in the period, and how many of them were struck at least twice up to the
    period's end (strikes people took back do not count). The rate is judged like every rate: its interval, or
    "too few to judge" under 30 accounts."""
    strikes = _strikes(f).filter(removed_at__isnull=True)
    struck = (
        strikes.filter(issued_at__gte=f.start_at, issued_at__lt=f.end_at).values_list("family", "account_id").distinct()
    )
    by_family: dict[str, set[int]] = defaultdict(set)
    for family, account_id in struck:
        by_family[family].add(account_id)
    counts = {
        (r["family"], r["account_id"]): r["n"]
        for r in strikes.filter(issued_at__lt=f.end_at, account_id__in={a for ids in by_family.values() for a in ids})
        .values("family", "account_id")
        .annotate(n=Count("pk"))
    }
    rows: list[Row] = []
    for family in sorted(by_family):
        accounts = by_family[family]
        repeat = sum(1 for a in accounts if counts.get((family, a), 0) >= 2)
        row: Row = {"family": family, "accounts": len(accounts), "repeat": repeat}
        _rate_row(row, "repeat_rate", repeat, len(accounts))
        rows.append(row)
    return Table(
        title="Repeat offenders by strike family",
        columns=[
            Column("family", "Strike family"),
            Column("accounts", "Accounts struck in the period", Kind.INT, drill=True),
            Column("repeat", "Of them struck twice or more", Kind.INT),
            *_rate_columns("repeat_rate", "Repeat-offender rate", "accounts"),
        ],
        rows=rows,
        drill=lambda row: items_url(f, on="decided", state="decided"),
        notes=[SCOPE_NOTE, "The drill-down lists the items decided in the period (under the policy filter)."],
    )


def strikes_by_day(f: MetricFilter) -> Table:
    """Strikes issued, expired (reached their expiry while still standing) and removed (an appeal, a correction
    or a person) per local day of the period."""
    strikes = _strikes(f)
    period = {"__gte": f.start_at, "__lt": f.end_at}

    def per_day(field: str, qs: QuerySet[Strike]) -> dict[date, int]:
        return {
            r["d"]: r["n"]
            for r in qs.filter(**{f"{field}{k}": v for k, v in period.items()})
            .annotate(d=TruncDate(field))
            .values("d")
            .annotate(n=Count("pk"))
            .order_by()
        }

    issued = per_day("issued_at", strikes)
    expired = per_day("expires_at", strikes.filter(Q(removed_at__isnull=True) | Q(removed_at__gt=F("expires_at"))))
    removed = per_day("removed_at", strikes.filter(removed_at__isnull=False))
    rows = [
        {
            "day": day,
            "issued": issued.get(day, 0),
            "expired": expired.get(day, 0),
            "removed": removed.get(day, 0),
        }
        for day in days_through(f.start, f.end)
    ]
    return Table(
        title="Strikes issued, expired and removed per day",
        columns=[
            Column("day", "Day", Kind.DATE),
            Column("issued", "Issued", Kind.INT, drill=True),
            Column("expired", "Expired", Kind.INT),
            Column("removed", "Removed", Kind.INT),
        ],
        rows=rows,
        drill=lambda row: items_url(f, on="decided", state="decided", day=row["day"]),
        notes=[SCOPE_NOTE, "Issued drills down to the items decided that day (under the policy filter)."],
    )


def _overturned_decisions(decision_ids: set[int]) -> set[int]:
    """Of ``decision_ids``, those whose item an appeal overturned."""
    items = dict(Decision.objects.filter(pk__in=decision_ids).values_list("pk", "item_id"))
    overturned_items = set(
        ReviewItem.objects.filter(
            kind=ItemKind.APPEAL,
            appeal_of_id__in=set(items.values()),
            decisions__appeal_outcome=AppealOutcome.OVERTURNED,
        ).values_list("appeal_of_id", flat=True)
    )
    return {d for d, item in items.items() if item in overturned_items}


def account_actions_by_policy(f: MetricFilter) -> Table:
    """Account actions that took effect in the period, by policy and kind: how many were reversed, and the share
    whose decisions an appeal overturned (its interval, or "too few to judge" under 30 actions)."""
    actions = AccountAction.objects.filter(effective_at__gte=f.start_at, effective_at__lt=f.end_at)
    if f.policy_id is not None:
        actions = actions.filter(policy_id=f.policy_id)
    listed = list(actions.values("pk", "policy_id", "kind", "custom_action", "state", "decision_ids"))
    overturned = _overturned_decisions({d for a in listed for d in (a["decision_ids"] or [])})
    groups: dict[tuple[int | None, str], list[tuple[str, set[int]]]] = defaultdict(list)
    for a in listed:
        name = a["custom_action"] if a["kind"] == "custom" else a["kind"]
        groups[(a["policy_id"], str(name))].append((a["state"], set(a["decision_ids"] or [])))
    policies = dict(Policy.objects.filter(pk__in={p for p, _ in groups if p}).values_list("pk", "slug"))
    rows: list[Row] = []
    for (policy_id, name), group in sorted(groups.items(), key=lambda kv: (policies.get(kv[0][0] or 0, ""), kv[0][1])):
        hit = sum(1 for _, decisions in group if overturned & decisions)
        row: Row = {
            "policy_id": policy_id,
            "policy": policies.get(policy_id or 0, "(none)"),
            "action": name,
            "actions": len(group),
            "reversed": sum(1 for state, _ in group if state == "reversed"),
            "overturned": hit,
        }
        _rate_row(row, "overturn_rate", hit, len(group))
        rows.append(row)

    def drill(row: Row) -> str | None:
        if row["policy_id"] is None:
            return None
        return items_url(replace(f, policy_id=row["policy_id"]), on="decided", state="decided")

    return Table(
        title="Account actions by policy, and how often an appeal overturned the decisions behind them",
        columns=[
            Column("policy", "Policy"),
            Column("action", "Action"),
            Column("actions", "Took effect", Kind.INT, drill=True),
            Column("reversed", "Reversed since", Kind.INT),
            Column("overturned", "A decision behind it overturned on appeal", Kind.INT),
            *_rate_columns("overturn_rate", "Appeal overturn rate", "actions"),
        ],
        rows=rows,
        drill=drill,
        notes=[SCOPE_NOTE, "The drill-down lists the items decided under the row's policy in the period."],
    )
