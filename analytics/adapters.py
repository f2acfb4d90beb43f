"""Turn the area selectors' results into dashboard Tables: column kinds, labels and the drill-down links.

The operations and vendor selectors return ``analytics.selectors.operations.Table`` (plain tuples, with the
metric and key columns that say which items a row counts); classifier selectors return dataclass rows; alerts
are model rows. Pages, CSV and the JSON API all want ``analytics.tables.Table``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date
from typing import Any

from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from analytics.alerts import alerts_recent
from analytics.filters import MetricFilter
from analytics.models import ClassifierView, TruthSource
from analytics.models.operations import BacklogAge
from analytics.selectors import classifiers as clf
from analytics.selectors.alerts import alert_reading
from analytics.selectors.operations import Table as OpsTable
from analytics.tables import Column, Kind, Table
from analytics.tables import items_url as _items_url
from ops_platform.core.errors import ApplicationError
from ops_platform.core.figures import MIN_ITEMS, MIN_POSITIVES
from ops_platform.core.models import Policy
from ops_platform.core.params import MAX_INT, id_parse, param_int
from ops_platform.core.templatetags.units import slice_words

# Cell keys the operations drill-down understands, and which of them are ids.
OPS_CELL_KEYS = (
    "day",
    "queue_id",
    "policy_id",
    "vendor_id",
    "priority_id",
    "priority",
    "source",
    "surface",
    "kind",
    "age_bucket",
    "reviewer_id",
    "week_start",
)
NONE = "none"  # a cell key given as None: in-house, no policy
PRIORITY_KEYS = ("priority", "priority_id")  # tables split by priority name their key column priority_id


def kind_of(column: str) -> Kind:
    # A measure's target and week-on-week change are in the measure's own unit (issue 19: 0.90 vs 94.6%).
    for suffix in ("_target", "_delta"):
        if column.endswith(suffix):
            return kind_of(column.removesuffix(suffix))
    if column in ("day", "week_start", "week"):
        return Kind.DATE if column != "week" else Kind.TEXT
    if column.endswith(("_rate", "_attainment", "occupancy", "_share")) or column in (
        "sla_attainment",
        "precision",
        "recall",
        "fpr",
        "f1",
        "prevalence",
        "auprc",
        "quality_score",
        "golden_accuracy",
        "observed",
        "mean_predicted",
    ):
        return Kind.PERCENT
    if column.endswith(("_seconds", "_p50", "_p90", "_p95")):
        return Kind.SECONDS
    if column.endswith("_id"):
        return Kind.INT
    return Kind.TEXT


def inferred(column: str, rows: list[dict[str, Any]]) -> Kind:
    """The column's kind by its name, else by its first value (numbers chart as numbers)."""
    kind = kind_of(column)
    if kind != Kind.TEXT:
        return kind
    value = next((row.get(column) for row in rows if row.get(column) is not None), None)
    if isinstance(value, bool):
        return Kind.TEXT
    if isinstance(value, int):
        return Kind.INT
    if isinstance(value, float):
        return Kind.FLOAT
    if isinstance(value, date):
        return Kind.DATE
    return Kind.TEXT


# Column headers in words (issue 19: "Sla counted", "Aht seconds"); a column not named here reads as its key.
LABELS = {
    "age_bucket": "Age since received",
    "aht_seconds": "Average handle time",
    "appeal_rate": "Appeal rate",
    "automation_rate": "Automation rate",
    "auto_actioned": "Closed by a rule",
    "backtest_mape": "Backtest error (MAPE)",
    "baseline_mape": "Seasonal-naive error (MAPE)",
    "cost_per_correct_decision": "Cost per correct decision",
    "cost_per_decision": "Cost per decision",
    "decisions_per_productive_hour": "Decisions per productive hour",
    "decided": "Decided",
    "due_within_hour": "Due within the hour (not yet overdue)",
    "overdue": "Overdue (past the SLA due time)",
    "escalation_rate": "Escalation rate",
    "golden_accuracy": "Golden-set accuracy",
    "handled": "Decisions with a handle time",
    "items": "Items",
    "occupancy": "Occupancy",
    "overturn_rate": "Overturn rate",
    "peak_required": "Peak reviewers required",
    "productive_seconds": "Productive time",
    "quality_score": "Quality score",
    "sla_attainment": "SLA attainment",
    "sla_counted": "Decisions with an SLA",
    "within_sla": "Decided within the SLA",
    "turnaround_p90_seconds": "Turnaround, 90th percentile",
    "volume_per_day": "Volume per day",
    "week_start": "Week of",
}
SUFFIX_WORDS = {"_p50": ", median", "_p90": ", 90th percentile", "_p95": ", 95th percentile", "_seconds": ""}


MEASURE_SUFFIXES = {"_target": ": target", "_status": ": status", "_delta": ": change on the week before"}


def _label(column: str) -> str:
    if column in LABELS:
        return LABELS[column]
    for suffix, words in MEASURE_SUFFIXES.items():
        if column.endswith(suffix):
            return _label(column.removesuffix(suffix)) + words
    for suffix, words in SUFFIX_WORDS.items():
        if column.endswith(suffix):
            return column.removesuffix(suffix).replace("_", " ").capitalize() + words
    return column.replace("_", " ").capitalize()


def ops_drill_url(f: MetricFilter, metric: str, keys: dict[str, Any]) -> str:
    params: dict[str, Any] = {"metric": metric}
    for key, value in keys.items():
        if key == "day":
            params["day"] = value
        else:
            params[f"cell_{key}"] = NONE if value is None else value
    return _items_url(f, **params)


def from_ops(table: OpsTable, f: MetricFilter) -> Table:
    """An operations/vendor table for the dashboard; each row drills to the items its count is made of."""
    rows = table.as_dicts()
    hidden = {c for c in table.columns if c.endswith("_id") and c[:-3] in table.columns}
    columns = [Column(c, _label(c), inferred(c, rows)) for c in table.columns if c not in hidden]

    def drill(row: dict[str, Any]) -> str | None:
        if not table.metric or not table.keys:
            return None
        keys = {k: row.get(k) for k in table.keys}
        if table.drill_at is not None:  # a live count lists its items as they were when it counted
            keys["at"] = table.drill_at.isoformat()
        return ops_drill_url(f, table.metric, keys)

    return Table(title=table.title, columns=columns, rows=rows, drill=drill, notes=list(table.notes))


def ops_panel(selector: Callable[..., OpsTable], **kwargs: Any) -> Callable[[MetricFilter], Table]:
    def build(f: MetricFilter) -> Table:
        return from_ops(selector(f, **kwargs), f)

    return build


def ops_cell(params: Any) -> tuple[str, dict[str, Any]] | None:
    """The operations drill-down requested by a page's query string, or None."""
    metric = params.get("metric")
    if not metric:
        return None
    cell: dict[str, Any] = {}
    if params.get("day") or (params.get("start") and params.get("start") == params.get("end")):
        name = "day" if params.get("day") else "start"
        try:
            cell["day"] = date.fromisoformat(params.get(name))
        except ValueError:
            raise ApplicationError(f"{name}: a date is written YYYY-MM-DD.", field=name) from None
    if params.get("cell_at"):
        try:
            at = parse_datetime(params.get("cell_at"))
        except ValueError:
            at = None
        if at is None or timezone.is_naive(at):
            message = "cell_at: a moment is written as an ISO 8601 date-time with its offset."
            raise ApplicationError(message, field="cell_at")
        cell["at"] = at
    for key in OPS_CELL_KEYS:
        name = f"cell_{key}"
        raw = params.get(name)
        if raw is None:
            continue
        if key == "week_start":
            try:
                cell[key] = date.fromisoformat(raw)
            except ValueError:
                raise ApplicationError(f"{name}: a date is written YYYY-MM-DD.", field=name) from None
        elif raw == NONE:
            cell[key] = None
        elif key == "age_bucket" and raw not in BacklogAge.values:
            raise ApplicationError(f"{name}: one of {', '.join(BacklogAge.values)}.", field=name)
        elif key in PRIORITY_KEYS:  # a priority, which may be 0 or negative
            cell[key] = param_int(params, name, minimum=-MAX_INT, maximum=MAX_INT)
        elif key.endswith("_id"):
            cell[key] = id_parse(raw, field=name)
        else:
            cell[key] = raw
    return metric, cell


# --- classifiers ------------------------------------------------------------------------------------------


def _rows(items: Iterable[Any]) -> list[dict[str, Any]]:
    return [item.as_row() for item in items]


def _table(
    title: str,
    rows: list[dict[str, Any]],
    *,
    notes: list[str] | None = None,
    drill: Callable[[dict[str, Any]], str | None] | None = None,
) -> Table:
    keys = list(rows[0]) if rows else []
    return Table(
        title=title,
        columns=[Column(k, _label(k), inferred(k, rows)) for k in keys],
        rows=rows,
        drill=drill,
        notes=notes or [],
    )


def _summary(f: MetricFilter) -> list[clf.ClassifierSummaryRow]:
    """The summary rows of the filter's truth source and view: per category, or the binary ``any`` rows."""
    return clf.classifier_summary(f, truth=f.truth, view=f.view)


def _main_model(f: MetricFilter) -> tuple[str, str, str] | None:
    """The (backend, model version, category) the curve panels show: the summary row with the most items."""
    rows = _summary(f)
    if not rows:
        return None
    top = max(rows, key=lambda r: r.n)
    return top.backend, top.model_version, top.category


def _truth_words(f: MetricFilter) -> str:
    words = TruthSource(f.truth).label
    return words if f.view != ClassifierView.ANY else f"{words}; any violation vs any category flagged"


def classifier_summary_table(f: MetricFilter) -> Table:
    rows = _rows(_summary(f))

    def drill(row: dict[str, Any]) -> str | None:
        return _items_url(
            f,
            clf_category=row["category"],
            clf_backend=row["backend"],
            clf_model=row["model_version"],
            clf_cell="fp",
            clf_truth=f.truth,
        )

    table = _table(
        f"Precision, recall, FPR and F1 at the active thresholds ({_truth_words(f)})",
        rows,
        drill=drill,
        notes=[
            "Each row drills to its false positives at the threshold (fp). Precision, recall and AUPRC carry their "
            f"95% interval; from fewer than {MIN_POSITIVES} positives or {MIN_ITEMS} items they are too few to judge."
        ],
    )
    table.columns = [_judged(c) for c in table.columns]
    return table


def _judged(column: Column) -> Column:
    """Precision, recall and AUPRC shown with their intervals and the small-number rule; the bounds ride along."""
    if column.key in ("precision", "recall", "auprc"):
        return replace(column, interval=(f"{column.key}_low", f"{column.key}_high"), positives="positives", items="n")
    if column.key == "observed_rate":
        return replace(column, interval=("observed_low", "observed_high"), items="n")
    if column.key.endswith(("_low", "_high")):
        return replace(column, hidden=True)
    return column


def _judged_point(column: Column) -> Column:
    """A PR curve point's ratios: precision rests on the items flagged at its threshold, recall and AUPRC on the
    positives (the small-number rule per point, not per category)."""
    if column.key == "precision":
        return replace(column, interval=("precision_low", "precision_high"), items="flagged")
    if column.key in ("recall", "auprc"):
        return replace(column, interval=(f"{column.key}_low", f"{column.key}_high"), positives="positives")
    return _judged(column)


def _curve_table(
    f: MetricFilter, title: str, build: Callable[[str, str, str], list[dict[str, Any]]], *, judged: bool = False
) -> Table:
    model = _main_model(f)
    if model is None:
        return _table(title, [])
    backend, version, category = model
    rows = build(backend, version, category)
    table = _table(f"{title}: {category}, {backend} {version} ({_truth_words(f)})", rows)
    if judged:
        table.columns = [_judged(c) for c in table.columns]
    return table


def classifier_pr_table(f: MetricFilter) -> Table:
    """The precision-recall curve of every category the main model scores (one line each: the chart's legend picks
    them apart), or of the filter's policy's categories when a policy is chosen: the curve's category picker. In
    the binary view, the one ``any`` curve."""
    model = _main_model(f)
    if model is None:
        return _table("Precision-recall curve", [])
    backend, version, _ = model
    categories = sorted({r.category for r in _summary(f) if r.backend == backend})
    if f.policy_id is not None and f.view != ClassifierView.ANY:
        wanted = set(
            Policy.objects.filter(pk=f.policy_id).values_list("classifier_categories", flat=True).first() or []
        )
        categories = [c for c in categories if c in wanted] or categories
    summary = {r.category: r for r in _summary(f) if (r.backend, r.model_version) == (backend, version)}
    rows = []
    for category in categories:
        curve = clf.classifier_pr_curve(f, category=category, backend=backend, model_version=version, truth=f.truth)
        whole = summary.get(category)
        positives = whole.positives if whole else 0.0
        # Each point carries its Wilson intervals (computed once per rollup refresh, vectorised, with the curve);
        # its positives are the same bucket counts' as the summary row's.
        for p in curve.points:
            rows.append(
                {
                    "category": category,
                    **p.as_row(),
                    "auprc": curve.auprc,
                    "n": whole.n if whole else 0,
                    "positives": positives,
                    "auprc_low": whole.auprc_low if whole else None,
                    "auprc_high": whole.auprc_high if whole else None,
                }
            )
    table = _table(
        f"Precision-recall curve: {backend} {version} ({_truth_words(f)})",
        rows,
        notes=["One curve per category; choose a policy in the filter to see only its categories."],
    )
    table.columns = [_judged_point(c) for c in table.columns]
    return table


def classifier_calibration_table(f: MetricFilter) -> Table:
    def build(backend: str, version: str, category: str) -> list[dict[str, Any]]:
        bins = clf.classifier_calibration(f, category=category, backend=backend, model_version=version, truth=f.truth)
        return _rows(bins)

    return _curve_table(f, "Calibration", build, judged=True)


def classifier_drift_table(f: MetricFilter) -> Table:
    def build(backend: str, version: str, category: str) -> list[dict[str, Any]]:
        weeks = _rows(clf.classifier_drift(f, category=category, backend=backend, model_version=version, truth=f.truth))
        return [{"week_start": date.fromisoformat(str(w.pop("week"))), **w} for w in weeks]

    return _curve_table(f, "Weekly drift", build, judged=True)


# The query parameter that carries each argument of ``classifier_items``: a refusal names the parameter.
CLASSIFIER_PARAMS = {
    "category": "clf_category",
    "backend": "clf_backend",
    "model_version": "clf_model",
    "cell": "clf_cell",
    "truth": "clf_truth",
}


def classifier_cell(params: Any, f: MetricFilter | None = None) -> dict[str, Any] | None:
    """The drill-down's cell; its truth source is ``clf_truth``, else the filter's."""
    if not params.get("clf_cell"):
        return None
    return {
        "category": params.get("clf_category", ""),
        "backend": params.get("clf_backend", ""),
        "model_version": params.get("clf_model") or None,
        "cell": params.get("clf_cell"),
        "truth": params.get("clf_truth") or (f.truth if f is not None else TruthSource.DECISION.value),
    }


# --- alerts -----------------------------------------------------------------------------------------------


def alerts_table(f: MetricFilter) -> Table:
    rows = []
    for alert in alerts_recent(f):
        top = (alert.causes or [{}])[0] if isinstance(alert.causes, list) else {}
        rows.append(
            {
                "id": alert.pk,
                "opened_at": alert.opened_at,
                "rule": alert.rule.name,
                "metric": alert.get_metric_display(),
                "state": alert.state,
                "reading": alert_reading(
                    alert.metric, alert.value, alert.baseline, alert.rule.window, alert.rule.baseline
                ),
                "value": alert.value,
                "baseline": alert.baseline,
                "volume": alert.volume,
                "top_cause": slice_words(top.get("slice")) or str(top.get("value") or ""),
            }
        )
    columns = [
        Column("opened_at", "Opened", Kind.DATETIME),
        Column("rule", "Rule"),
        Column("metric", "Metric"),
        Column("state", "State"),
        Column("reading", "What it found"),
        Column("value", "Value (a rate for rate rules, else items)", Kind.FLOAT),
        Column("baseline", "Baseline (the same unit)", Kind.FLOAT),
        Column("volume", "Evidence (samples, appeals or items)", Kind.INT),
        Column("top_cause", "Main cause"),
    ]
    return Table(
        title="Alerts opened in the period",
        columns=columns,
        rows=rows,
        drill=lambda row: reverse("analytics-alert", args=[row["id"]]),
        row_link_label="details",
        notes=[
            "Causes are the slices that explain most of the change; an alert's page lists them and is where it is "
            "acknowledged or resolved. Alert rules are under Alert rules."
        ],
    )
