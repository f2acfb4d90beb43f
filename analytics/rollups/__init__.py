"""The rollups analytics reads instead of raw rows, and the periodic upkeep that keeps them (``analytics.tasks``):

- ``operations``: what each daily operations row counts (decisions, latency, SLA, intake, queues, reviewers,
  appeals), the same definitions as querysets for the drill-down, the backlog snapshots, and the refresh that
  recomputes the days touched since its cursor;
- ``histograms``: the log-scale latency histograms those rows carry, and percentiles read from them;
- ``quality``: one day's closed QA samples and scored golden copies (recomputed with the operations day);
- ``classifiers``: classifier scores of human-labelled items, bucketed per week.

Callers import from this package; the modules above are its parts. The tables are in ``analytics.models``.
"""

from analytics.rollups.classifiers import (
    BUCKET_EPSILON,
    CATEGORIES,
    category_policies,
    classifier_rollups_rebuild,
    classifier_rollups_refresh,
    classifier_rollups_refresh_job,
    current_final_decisions,
    latest_imported_labels,
    latest_qa_samples,
    score_buckets,
    score_value,
    week_bounds,
    week_start,
)
from analytics.rollups.histograms import PERCENTILE_TOLERANCE, bucket_value, buckets_of, hist_percentile
from analytics.rollups.operations import (
    BACKLOG_AGES,
    CURSOR_NAME,
    ENTERING_EVENTS,
    VENDOR_OF_REVIEWER,
    age_bucket_range,
    auto_actioned_exists,
    backlog_counts,
    backlog_items,
    backlog_snapshot_take,
    backlog_snapshots_purge,
    deciding_decisions,
    escalated_exists,
    intake_items,
    latency_rollups_rebuild,
    policy_in_force,
    rollups_rebuild,
    rollups_refresh,
)
from analytics.rollups.quality import quality_rollups_rebuild

__all__ = [
    "BACKLOG_AGES",
    "BUCKET_EPSILON",
    "CATEGORIES",
    "CURSOR_NAME",
    "ENTERING_EVENTS",
    "PERCENTILE_TOLERANCE",
    "VENDOR_OF_REVIEWER",
    "age_bucket_range",
    "auto_actioned_exists",
    "backlog_counts",
    "backlog_items",
    "backlog_snapshot_take",
    "backlog_snapshots_purge",
    "bucket_value",
    "buckets_of",
    "category_policies",
    "classifier_rollups_rebuild",
    "classifier_rollups_refresh",
    "classifier_rollups_refresh_job",
    "current_final_decisions",
    "deciding_decisions",
    "escalated_exists",
    "hist_percentile",
    "intake_items",
    "latency_rollups_rebuild",
    "latest_imported_labels",
    "latest_qa_samples",
    "policy_in_force",
    "quality_rollups_rebuild",
    "rollups_rebuild",
    "rollups_refresh",
    "score_buckets",
    "score_value",
    "week_bounds",
    "week_start",
]
