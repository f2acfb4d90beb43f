"""What ``/metrics`` serves: one small row per part of the Prometheus exposition, written by the periodic
``metrics_refresh_task`` (``analytics.exporter.refresh``) and read whole by each scrape (no other SQL per scrape).

``counters`` holds the cumulative counters and histograms (items received/triaged/decided, decision times,
classifier calls, webhook deliveries): a settled part up to a cut-off the job moves forward, plus the rows of the
last few minutes counted again on each run. ``gauges`` holds the live figures of the last run (queue depth, the
oldest waiting item, the triage backlog, the webhook backlog). Both are plain JSON: the exporter's own format.
"""

from __future__ import annotations

from django.db import models

__all__ = ["MetricsSnapshot"]


class MetricsSnapshot(models.Model):
    name = models.CharField(max_length=40, primary_key=True)
    data = models.JSONField(default=dict)
    taken_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"metrics {self.name} at {self.taken_at:%H:%M:%S}"
