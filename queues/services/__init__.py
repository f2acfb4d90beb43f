"""Writes on items, by step of their path: ``placement`` (into a queue, or closed by a rule), ``claims`` (who
holds an item: claims, leases, skips, reservations), ``escalation``, ``decisions`` (and the ``decision.final``
payload) and ``appeals``. Each records history. The names other apps use are re-exported here."""

from queues.services.appeals import AppealOutcomeRequired, appeal_contested, appeal_decide, appeal_outcome_required
from queues.services.claims import (
    DEFAULT_LEASE,
    LeaseExpired,
    claimable,
    item_claim,
    item_claim_next,
    item_release,
    item_reservation_release,
    lease_check,
    lease_renew,
    leases_expire,
    reservations_expire,
    reviewer_may_work,
    reviewer_may_work_item,
    skips_purge,
)
from queues.services.decisions import (
    DecisionResult,
    decision_correct,
    decision_final_payload,
    decision_record,
    decision_scope_validate,
    decision_validate,
)
from queues.services.escalation import item_escalate
from queues.services.placement import (
    Enqueue,
    item_move,
    items_auto_action,
    items_enqueue,
    items_enqueue_many,
    queue_default_intake,
    received_locked,
)

__all__ = [
    "DEFAULT_LEASE",
    "AppealOutcomeRequired",
    "DecisionResult",
    "Enqueue",
    "LeaseExpired",
    "appeal_contested",
    "appeal_decide",
    "appeal_outcome_required",
    "claimable",
    "decision_correct",
    "decision_final_payload",
    "decision_record",
    "decision_scope_validate",
    "decision_validate",
    "item_claim",
    "item_claim_next",
    "item_escalate",
    "item_move",
    "item_release",
    "item_reservation_release",
    "items_auto_action",
    "items_enqueue",
    "items_enqueue_many",
    "lease_check",
    "lease_renew",
    "leases_expire",
    "queue_default_intake",
    "received_locked",
    "reservations_expire",
    "reviewer_may_work",
    "reviewer_may_work_item",
    "skips_purge",
]
