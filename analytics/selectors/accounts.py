"""Account figures (docs/accounts.md): the repeat-offender rate, strikes issued, expired and removed per day, and
account actions by policy with the share whose decisions an appeal overturned. Read live from the account tables
(they are small beside items: one row per strike or action). The period and policy filter apply; queue and
vendor slices do not (a strike belongs to an account, not to a queue)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import TruncDate
from django.urls import reverse

from analytics.filters import MetricFilter, days_through
from analytics.tables import Column, Kind, Row, Table, filter_params
from ops_platform.core.errors import ApplicationError
from ops_platform.core.figures import wilson_interval
from ops_platform.core.models import Policy
from queues.models import Account, AccountAction, AppealOutcome, Decision, ItemKind, ReviewItem, Strike

SCOPE_NOTE = "Queue and vendor slices do not apply: strikes and actions belong to accounts."
DRILL_NOTE = "Each linked figure drills down to the strikes, accounts or actions it counts."
# The drill-down metrics (``account_rows``): what each lists, and the cell parameters it needs.
STRIKE_METRICS = ("strikes_issued", "strikes_expired", "strikes_removed")
ACCOUNT_METRICS = ("struck_accounts", "repeat_offenders")
ACTION_METRICS = ("account_actions", "actions_reversed", "actions_overturned")


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


def _standing(f: MetricFilter) -> QuerySet[Strike]:
    return _strikes(f).filter(removed_at__isnull=True)  # strikes people took back do not count


def _struck(f: MetricFilter) -> QuerySet[Strike]:
    return _standing(f).filter(issued_at__gte=f.start_at, issued_at__lt=f.end_at)


def repeat_offenders(f: MetricFilter) -> Table:
    """Per strike family: accounts struck in the period, and how many of them were struck at least twice up to the
    period's end (strikes people took back do not count). The rate is judged like every rate: its interval, or
    "too few to judge" under 30 accounts."""
    by_family: dict[str, set[int]] = defaultdict(set)
    for family, account_id in _struck(f).values_list("family", "account_id").distinct():
        by_family[family].add(account_id)
    counts = {
        (r["family"], r["account_id"]): r["n"]
        for r in _standing(f)
        .filter(issued_at__lt=f.end_at, account_id__in={a for ids in by_family.values() for a in ids})
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
            Column("repeat", "Of them struck twice or more", Kind.INT, drill=True, drill_metric="repeat_offenders"),
            *_rate_columns("repeat_rate", "Repeat-offender rate", "accounts"),
        ],
        rows=rows,
        drill=lambda row: rows_url(f, "struck_accounts", family=row["family"]),
        notes=[SCOPE_NOTE, DRILL_NOTE],
    )


def strikes_by_day(f: MetricFilter) -> Table:
    """Strikes issued, expired (reached their expiry while still standing) and removed (an appeal, a correction
    or a person) per local day of the period."""

    def per_day(field: str, metric: str) -> dict[date, int]:
        return {
            r["d"]: r["n"]
            for r in _strike_rows(f, metric).annotate(d=TruncDate(field)).values("d").annotate(n=Count("pk")).order_by()
        }

    issued, expired, removed = (per_day(fd, m) for fd, m in zip(STRIKE_FIELDS, STRIKE_METRICS, strict=True))
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
            Column("expired", "Expired", Kind.INT, drill=True, drill_metric="strikes_expired"),
            Column("removed", "Removed", Kind.INT, drill=True, drill_metric="strikes_removed"),
        ],
        rows=rows,
        drill=lambda row: rows_url(f, "strikes_issued", day=row["day"]),
        notes=[SCOPE_NOTE, DRILL_NOTE],
    )


STRIKE_FIELDS = ("issued_at", "expires_at", "removed_at")


def _strike_rows(f: MetricFilter, metric: str) -> QuerySet[Strike]:
    """Strikes issued, expired (reached their expiry while still standing) or removed in the period."""
    strikes = _strikes(f)
    if metric == "strikes_expired":
        strikes = strikes.filter(Q(removed_at__isnull=True) | Q(removed_at__gt=F("expires_at")))
    elif metric == "strikes_removed":
        strikes = strikes.filter(removed_at__isnull=False)
    field = STRIKE_FIELDS[STRIKE_METRICS.index(metric)]
    return strikes.filter(**{f"{field}__gte": f.start_at, f"{field}__lt": f.end_at})


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
    listed = list(_actions(f).values("pk", "policy_id", "kind", "custom_action", "state", "decision_ids"))
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

    def drill(row: Row) -> str:
        policy = "none" if row["policy_id"] is None else row["policy_id"]
        return rows_url(f, "account_actions", policy=policy, action=row["action"])

    return Table(
        title="Account actions by policy, and how often an appeal overturned the decisions behind them",
        columns=[
            Column("policy", "Policy"),
            Column("action", "Action"),
            Column("actions", "Took effect", Kind.INT, drill=True),
            Column("reversed", "Reversed since", Kind.INT, drill=True, drill_metric="actions_reversed"),
            Column(
                "overturned",
                "A decision behind it overturned on appeal",
                Kind.INT,
                drill=True,
                drill_metric="actions_overturned",
            ),
            *_rate_columns("overturn_rate", "Appeal overturn rate", "actions"),
        ],
        rows=rows,
        drill=drill,
        notes=[SCOPE_NOTE, DRILL_NOTE],
    )


def _actions(f: MetricFilter) -> QuerySet[AccountAction]:
    actions = AccountAction.objects.filter(effective_at__gte=f.start_at, effective_at__lt=f.end_at)
    return actions if f.policy_id is None else actions.filter(policy_id=f.policy_id)


# --- drill-downs: the rows behind each figure, by the same querysets -------------------------------------------


def rows_url(f: MetricFilter, metric: str, *, day: date | None = None, **cell: Any) -> str:
    """The drill-down page listing the rows behind an account figure: the filter, the metric and the cell."""
    query = filter_params(f)
    if day is not None:
        query["start"] = query["end"] = day.isoformat()
    query |= {"metric": metric, **{f"cell_{k}": str(v) for k, v in cell.items()}}
    return f"{reverse('analytics-account-rows')}?{urlencode(query)}"


def _cell(params: Mapping[str, str], name: str) -> str:
    value = params.get(f"cell_{name}", "")
    if not value or len(value) > 100:
        raise ApplicationError(f"The drill-down needs its {name}.", field=f"cell_{name}")
    return value


def account_rows(metric: str, f: MetricFilter, params: Mapping[str, str]) -> QuerySet[Any]:
    """The strikes, accounts or actions behind a figure of the account panels, by the querysets the figure counts:
    a strikes-per-day cell (the filter narrowed to its day), a family's struck accounts and repeat offenders, or a
    policy and action's actions (all, reversed, overturned on appeal). Unknown metric or cell: a 400 naming it."""
    if metric in STRIKE_METRICS:
        return _strike_rows(f, metric).select_related("account", "policy").order_by("-pk")
    if metric in ACCOUNT_METRICS:
        family = _cell(params, "family")
        struck = Account.objects.filter(pk__in=_struck(f).filter(family=family).values("account_id"))
        if metric == "repeat_offenders":
            twice = (
                _standing(f)
                .filter(family=family, issued_at__lt=f.end_at)
                .values("account_id")
                .annotate(n=Count("pk"))
                .filter(n__gte=2)
                .values("account_id")
            )
            struck = struck.filter(pk__in=twice)
        return struck.order_by("-pk")
    if metric in ACTION_METRICS:
        policy, name = _cell(params, "policy"), _cell(params, "action")
        if policy != "none" and not (policy.isascii() and policy.isdigit()):
            raise ApplicationError("The drill-down's policy is an id or 'none'.", field="cell_policy")
        actions = _actions(f)
        actions = actions.filter(policy__isnull=True) if policy == "none" else actions.filter(policy_id=int(policy))
        actions = actions.filter(Q(kind="custom", custom_action=name) | (Q(kind=name) & ~Q(kind="custom")))
        if metric == "actions_reversed":
            actions = actions.filter(state="reversed")
        elif metric == "actions_overturned":
            listed = list(actions.values_list("pk", "decision_ids"))
            overturned = _overturned_decisions({d for _, ids in listed for d in (ids or [])})
            actions = actions.filter(pk__in=[pk for pk, ids in listed if overturned & set(ids or [])])
        return actions.select_related("account", "policy").order_by("-pk")
    raise ApplicationError(f"Unknown account drill-down '{metric[:50]}'.", field="metric")
