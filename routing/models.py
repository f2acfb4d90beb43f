"""Where Django finds the routing app's models. Each part of routing defines its own (app label ``routing``,
tables ``routing_*``): intake in ``routing/intake/models.py``, scoring in ``routing/scoring/models.py``, rules
in ``routing/rules/models.py``. Code inside routing imports them from there; other apps may import them here."""

from routing.intake.models import DeadLetter, IdempotencyRecord
from routing.rules.models import (
    AutoActionTally,
    Backtest,
    BacktestStatus,
    RoutingDecision,
    Rule,
    RuleAction,
    RuleIncident,
    RuleSet,
    RuleSetEditor,
    RuleSetKind,
    RuleSetStatus,
)
from routing.scoring.media.models import BankHash, HashBank, HashKind, MediaAsset, MediaMatch, MediaStatus
from routing.scoring.models import (
    Backend,
    CallOutcome,
    ClassifierCall,
    ClassifierScore,
    IncidentKind,
    LabeledExample,
    ModelStatus,
    ModelVersion,
    ScoringIncident,
)

__all__ = [
    "AutoActionTally",
    "Backend",
    "Backtest",
    "BacktestStatus",
    "BankHash",
    "CallOutcome",
    "ClassifierCall",
    "ClassifierScore",
    "DeadLetter",
    "HashBank",
    "HashKind",
    "IdempotencyRecord",
    "IncidentKind",
    "LabeledExample",
    "MediaAsset",
    "MediaMatch",
    "MediaStatus",
    "ModelStatus",
    "ModelVersion",
    "RoutingDecision",
    "Rule",
    "RuleAction",
    "RuleIncident",
    "RuleSet",
    "RuleSetEditor",
    "RuleSetKind",
    "RuleSetStatus",
    "ScoringIncident",
]
