"""Which policies may be auto-actioned: checked when a rule is saved and again when it acts."""

from __future__ import annotations

from ops_platform.core.models import ClassifierCategory, Policy, Severity


def auto_action_refusal(policy: Policy) -> str | None:
    """Why a policy may never be auto-actioned, or None. The most severe harms always go to people."""
    if policy.human_review_only:
        return f"Policy '{policy.slug}' is human-review only: its items always go to people."
    if ClassifierCategory.SEXUAL_MINORS in (policy.classifier_categories or []):
        return f"Policy '{policy.slug}' covers sexual content involving minors: it is never auto-actioned."
    if policy.severity >= Severity.CRITICAL:
        return f"Policy '{policy.slug}' is of critical severity: it is never auto-actioned."
    return None
