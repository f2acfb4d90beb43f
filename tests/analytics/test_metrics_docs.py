"""The shipped Grafana dashboard and Prometheus rules read only metrics the exporter serves, in valid files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from analytics.exporter.collector import metrics_exposition
from analytics.exporter.refresh import metrics_snapshot_refresh
from tests.conftest import ROOT

DOCS = ROOT / "docs"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def served(settings: Any, broker: str) -> set[str]:
    settings.CELERY_BROKER_URL, settings.CELERY_TASK_ALWAYS_EAGER = broker, False
    metrics_snapshot_refresh()
    families = text_string_to_metric_families(metrics_exposition().decode())
    return {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}


def names_in(expression: str) -> set[str]:
    return set(re.findall(r"\bops_[a-z_]+\b", expression))


@pytest.mark.django_db
def test_the_dashboard_and_the_alerts_name_only_served_metrics(settings: Any, shared_redis_url: str) -> None:
    names = served(settings, shared_redis_url)
    assert {"ops_queue_depth", "ops_celery_queue_length", "ops_items_received_total"} <= names

    dashboard = json.loads(Path(DOCS / "grafana-dashboard.json").read_text())
    assert dashboard["title"]
    assert dashboard["uid"]
    assert dashboard["schemaVersion"] >= 30
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used = set()
    for panel in dashboard["panels"]:
        assert panel["type"] == "timeseries"
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        for target in panel["targets"]:
            used |= names_in(target["expr"])
    assert used
    assert used <= names, used - names

    rules = yaml.safe_load(Path(DOCS / "prometheus-alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"OpsQueueOldestItemOverSla", "OpsTriageLagging", "OpsWebhookFailures", "OpsClassifierCircuitOpen"} <= set(
        alerts
    )
    for rule in alerts.values():
        assert rule["expr"].count("(") == rule["expr"].count(")")
        assert names_in(rule["expr"])
        assert names_in(rule["expr"]) <= names, names_in(rule["expr"]) - names
        assert rule["labels"]["severity"] in {"page", "warn"}
