"""Try a condition on pasted text: score it with the active classifiers, then evaluate the condition and the
active rule set on it. Nothing is stored; external backends get the text redacted, as in the pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from ops_platform.core.models import ClassifierCategory, Policy
from queues.accounts.selectors import ACCOUNT_FEATURE_DEFAULTS
from routing.rules.engine import RuleFailures, error_text, program_for, vocabulary_for
from routing.rules.features import media_fields, raw_score_keys
from routing.rules.language import RuleLanguageError, interpret, parse
from routing.rules.models import RuleSet, RuleSetStatus
from routing.scoring.base import BackendError, TextToScore
from routing.scoring.pipeline import backend_get
from routing.scoring.redaction import redact

MAX_TRIAL_TEXT = 10_000


@dataclass
class Trial:
    backend: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    holds: bool | None = None
    problems: list[str] = field(default_factory=list)
    active_outcome: str = ""
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # active rules that raised on this text, as triage skips them


def condition_try(*, kind: str, condition: str, text: str, fields: dict[str, Any]) -> Trial:
    trial = Trial()
    text = text[:MAX_TRIAL_TEXT]
    policies = list(Policy.objects.filter(is_active=True))
    for name in settings.SCORING_DEFAULT_CHAIN:
        backend = backend_get(name)
        to_send = redact(text).text if backend.external else text
        try:
            batch = backend.score([TextToScore(0, to_send, fields.get("language", ""))], policies=policies)
        except BackendError as exc:
            trial.errors.append(f"{name}: {exc.outcome}")
            continue
        trial.backend = f"{name} {batch.model_version}".strip()
        trial.scores = batch.items[0].scores if batch.items else {}
        break
    row: dict[str, Any] = {
        "kind": fields.get("kind", "content"),
        "source": fields.get("source", ""),
        "surface": fields.get("surface", ""),
        "language": fields.get("language", ""),
        "text": text,
        "report_count": float(fields.get("report_count", 0)),
        "media_count": 0.0,
        **media_fields(None),
        "scored": bool(trial.scores),
        "author.prior_violations": float(fields.get("prior_violations", 0)),
        "author.prior_reviews": 0.0,
        **ACCOUNT_FEATURE_DEFAULTS,
    }
    for name, raw in raw_score_keys().items():
        value = trial.scores.get(raw)
        row[name] = float(value) if isinstance(value, int | float) else math.nan
    if condition.strip():
        try:
            node = parse(condition, vocabulary_for(kind))
        except RuleLanguageError as exc:
            trial.problems = [str(p) for p in exc.problems]
        else:
            try:
                trial.holds = interpret(node, row) is True
            except Exception as exc:  # shown, as triage would skip the rule, instead of a failed page
                trial.problems = [f"evaluating the condition failed: {error_text(exc)}"]
    active = RuleSet.objects.filter(kind=kind, status=RuleSetStatus.ACTIVE).first()
    if active is not None:
        failures: RuleFailures = {}
        outcome = program_for(active).decide_each([row], failures)[0]
        trial.active_outcome = f"v{active.version}: {outcome.matched}"
        trial.skipped = [f"rule '{f.rule.name}' failed and was skipped: {f.error}" for f in failures.values()]
    trial.scores = {k: v for k, v in trial.scores.items() if k in ClassifierCategory.values or k.startswith("policy:")}
    return trial
