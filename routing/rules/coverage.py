"""Coverage in the rule editor: which ``score.*`` names some active backend produces (and which one), the
warning on a condition that reads one nothing produces, and the acknowledgement approving or activating such a
version needs.

The checker still accepts every score of the taxonomy (a rule may be written before its model exists); what is
produced is decided by ``routing.scoring.coverage`` from the backends as configured now, never a fixed list.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import User
from ops_platform.core.services import audit_record
from routing.rules.engine import program_for, vocabulary_for
from routing.rules.features import raw_score_keys
from routing.rules.language import RuleLanguageError, names_used, parse
from routing.rules.models import RuleSet
from routing.scoring.coverage import Coverage, coverage_read


class ScoresNotProduced(ApplicationError):
    """A version reads scores no active backend produces, and the person did not acknowledge them."""

    code = "scores_not_produced"


def score_producers(coverage: Coverage | None = None) -> dict[str, tuple[str, ...]]:
    """Every score name rules may read (``score.self_harm``) -> the backends producing it now (empty: none)."""
    producers = (coverage or coverage_read()).producers
    return {name: producers.get(raw, ()) for name, raw in raw_score_keys().items()}


def scores_unproduced(names: Iterable[str], coverage: Coverage | None = None) -> list[str]:
    """The score names among ``names`` (row keys such as ``score.hate``) that no active backend produces."""
    wanted = sorted({n for n in names if n.startswith("score.")})
    if not wanted:
        return []
    producers = score_producers(coverage)
    return [name for name in wanted if not producers.get(name)]


def unproduced_warning(name: str) -> str:
    return f"{name}: no active backend produces it; the condition reads it as missing (false) for every item"


def condition_warnings(kind: str, condition: str) -> list[str]:
    """Warnings (not errors) for a condition that checks: each score it reads that nothing produces."""
    try:
        node = parse(condition, vocabulary_for(kind))
    except RuleLanguageError:
        return []
    return [unproduced_warning(name) for name in scores_unproduced(names_used(node))]


def ruleset_unproduced_scores(rule_set: RuleSet) -> list[str]:
    """The score names any rule of the version reads that no active backend produces."""
    names: set[str] = set()
    for condition in program_for(rule_set).conditions:
        names |= names_used(condition)
    return scores_unproduced(names)


def vocabulary_rows(kind: str) -> list[tuple[str, str, str]]:
    """The editor's reference panel: each name, its type and what it is; a score says which backend produces it
    for the active chains, or that none does."""
    producers = score_producers()
    rows = []
    for name, type_, text in vocabulary_for(kind).names():
        if name in producers:
            backends = producers[name]
            produced = f"produced by {', '.join(backends)}" if backends else "NOT PRODUCED by any active backend"
            text = f"{text}; {produced}"
        rows.append((name, type_, text))
    return rows


def coverage_acknowledge(*, actor: User, rule_set: RuleSet, step: str, acknowledged: Collection[str]) -> list[str]:
    """Refuse ``step`` (approve, activate) of a version reading unproduced scores unless every one of them is in
    ``acknowledged``; an acknowledgement is audited (who, when, which scores). Returns the acknowledged scores."""
    missing = ruleset_unproduced_scores(rule_set)
    if not missing:
        return []
    unacknowledged = [name for name in missing if name not in set(acknowledged)]
    if unacknowledged:
        raise ScoresNotProduced(
            f"{rule_set} reads {', '.join(unacknowledged)}, which no active backend produces: those conditions never "
            f"match. To {step} it anyway, acknowledge each of them.",
            field="acknowledge",
            extra={"scores": unacknowledged},
        )
    audit_record(
        actor=actor,
        action="ruleset.coverage_acknowledge",
        target=rule_set,
        after={"step": step, "scores": missing},
        reason=f"{step} with scores no active backend produces",
    )
    return missing
