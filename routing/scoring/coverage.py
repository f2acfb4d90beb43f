"""Which scores are actually produced, and by which backend: coverage as a contract.

Every policy's chain scores every item; the first backend of a chain that is configured (a key, an active model)
answers, and the others only stand in when it fails. So a score is *produced* when the first configured backend of
some chain gives it. Rules reading a score nothing produces are warned about and need an acknowledgement to go
live (``routing.rules.coverage``); when nothing produces ``sexual/minors`` the child-safety guard is blind, which
is a standing incident here until coverage returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

from django.db import transaction
from django.utils import timezone

from ops_platform.core.localday import today_start
from ops_platform.core.models import ClassifierCategory
from routing.scoring.models import Backend, IncidentKind, ScoringIncident
from routing.scoring.pipeline import backend_get, policy_chains

logger = logging.getLogger(__name__)

CHILD_SAFETY_CATEGORY = str(ClassifierCategory.SEXUAL_MINORS)


@dataclass(frozen=True)
class BackendCoverage:
    name: str
    label: str
    problem: str  # why it cannot score now; "" when configured
    produces: frozenset[str]
    answers: bool  # the chain's first configured backend: the one whose scores items get

    @property
    def scores(self) -> list[str]:
        return sorted(self.produces)


@dataclass(frozen=True)
class ChainCoverage:
    policies: tuple[str, ...]
    backends: tuple[BackendCoverage, ...]

    @property
    def answering(self) -> BackendCoverage | None:
        return next((b for b in self.backends if b.answers), None)


@dataclass(frozen=True)
class Coverage:
    chains: tuple[ChainCoverage, ...]

    @cached_property
    def producers(self) -> dict[str, tuple[str, ...]]:
        """Stored score key -> the backends that give it to every item (each chain's answering backend)."""
        found: dict[str, list[str]] = {}
        for chain in self.chains:
            answering = chain.answering
            if answering is None:
                continue
            for key in answering.produces:
                if answering.name not in found.setdefault(key, []):
                    found[key].append(answering.name)
        return {key: tuple(names) for key, names in found.items()}

    def produced(self, key: str) -> bool:
        return key in self.producers


def coverage_read() -> Coverage:
    """The coverage of the active chains as configured now (keys, the active model version, policies)."""
    chains = []
    for chain, policies in policy_chains().items():
        backends = []
        answered = False
        for name in chain:
            backend = backend_get(name)
            problem = backend.configured()
            backends.append(
                BackendCoverage(
                    name=name,
                    label=Backend(name).label,
                    problem=problem,
                    produces=frozenset() if problem else backend.produces(policies),
                    answers=not problem and not answered,
                )
            )
            answered = answered or not problem
        chains.append(ChainCoverage(tuple(p.slug for p in policies), tuple(backends)))
    return Coverage(tuple(chains))


def child_safety_gap(coverage: Coverage | None = None) -> str:
    """Why the child-safety guard cannot fire ("" when some active backend produces ``sexual/minors``)."""
    coverage = coverage or coverage_read()
    if coverage.produced(CHILD_SAFETY_CATEGORY):
        return ""
    answering = sorted({c.answering.name for c in coverage.chains if c.answering is not None})
    by = f"the active backends ({', '.join(answering)}) do not produce it" if answering else "no backend is configured"
    return (
        f"No active backend produces {CHILD_SAFETY_CATEGORY}: {by}. The child-safety guard cannot route anything to "
        "the child-safety queue by score; only rules and reports bring such items to people. Train a local model "
        "that covers it or configure a backend that does."
    )


def coverage_incidents_open() -> list[ScoringIncident]:
    return list(ScoringIncident.objects.filter(kind=IncidentKind.COVERAGE_GAP, resolved_at__isnull=True))


@transaction.atomic
def coverage_incident_sync(coverage: Coverage | None = None) -> ScoringIncident | None:
    """Open (or keep open) the standing incident while the child-safety guard has no score; resolve it when
    coverage returns. Returns the open incident, if any. Called by scoring and model promotion."""
    gap = child_safety_gap(coverage)
    now = timezone.now()
    open_incidents = ScoringIncident.objects.select_for_update().filter(
        kind=IncidentKind.COVERAGE_GAP, resolved_at__isnull=True
    )
    if not gap:
        if open_incidents.update(resolved_at=now):
            logger.warning("scoring incident %s resolved: %s is produced again", IncidentKind.COVERAGE_GAP, "guard")
        return None
    incident = open_incidents.first()
    if incident is not None:
        incident.last_seen_at, incident.message = now, gap
        incident.save(update_fields=["last_seen_at", "message"])
        return incident
    logger.warning("scoring incident %s: %s", IncidentKind.COVERAGE_GAP, gap)
    # A gap resolved earlier today and back again reopens today's row (one row per kind and day).
    incident, _ = ScoringIncident.objects.update_or_create(
        kind=IncidentKind.COVERAGE_GAP,
        backend="",
        day=today_start().date(),
        defaults={"message": gap, "resolved_at": None, "last_seen_at": now},
        create_defaults={"message": gap, "created_at": now, "last_seen_at": now},
    )
    return incident
