"""Alerts with causes: a false-positive or overturn rate rising over its trailing baseline, SLA at risk, backlog
growth; each alert names the slices that explain most of the change, is listed in the app and sent by webhook.

- ``observations``: the metrics, read from raw rows with one set-based query per period;
- ``causes``: the slices that explain a change (the mix-and-rate decomposition is explained there);
- ``evaluation``: rules read against their thresholds, alerts opened, updated and resolved;
- ``services``: delivery (payload, webhooks, lists) and people's changes to alerts and rules, audited.

Callers import from this package; the modules above are its parts.
"""

from analytics.alerts.causes import rate_change_causes, slice_contributions
from analytics.alerts.evaluation import Evaluation, EvaluationRun, alert_rule_evaluate, alerts_evaluate
from analytics.alerts.observations import DIMENSIONS, appeal_observations, qa_observations
from analytics.alerts.services import (
    MAX_RULE_SPAN,
    OPEN_STATES,
    alert_acknowledge,
    alert_payload,
    alert_resolve,
    alert_rule_save,
    alert_rules_may_edit,
    alerts_open,
    alerts_recent,
)

__all__ = [
    "DIMENSIONS",
    "MAX_RULE_SPAN",
    "OPEN_STATES",
    "Evaluation",
    "EvaluationRun",
    "alert_acknowledge",
    "alert_payload",
    "alert_resolve",
    "alert_rule_evaluate",
    "alert_rule_save",
    "alert_rules_may_edit",
    "alerts_evaluate",
    "alerts_open",
    "alerts_recent",
    "appeal_observations",
    "qa_observations",
    "rate_change_causes",
    "slice_contributions",
]
