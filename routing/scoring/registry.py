"""The local-model registry and the local backend: register a trained version, promote it only when it
is not worse than the active one (an audited act), and score with whichever version is active."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from ops_platform.core.errors import NotPermitted
from ops_platform.core.models import Policy, User
from ops_platform.core.services import audit_record
from routing.scoring.base import BackendError, BatchScores, ItemScores, TextToScore
from routing.scoring.local_model import ALGORITHM, LocalClassifier, loaded, sha256
from routing.scoring.models import Backend, CallOutcome, ModelStatus, ModelVersion

LOCAL = "local"
LEARNED = "categories_learned"


def model_active(name: str = LOCAL) -> ModelVersion | None:
    return ModelVersion.objects.filter(name=name, status=ModelStatus.ACTIVE).defer("artifact").first()


def model_register(
    *,
    model: LocalClassifier,
    training_data: dict[str, Any],
    metrics: dict[str, Any],
    thresholds: dict[str, float],
    known_limits: str,
    trained_by: str,
    name: str = LOCAL,
) -> ModelVersion:
    artifact = model.dumps()
    with transaction.atomic():
        last = ModelVersion.objects.select_for_update().filter(name=name).order_by("-version").first()
        return ModelVersion.objects.create(
            name=name,
            version=(last.version + 1) if last else 1,
            artifact=artifact,
            artifact_sha256=sha256(artifact),
            algorithm=ALGORITHM,
            # What the artifact learned, read without loading it: the coverage the rule editor and the
            # child-safety guard check (``routing.scoring.coverage``).
            training_data={**training_data, LEARNED: model.categories},
            metrics=metrics,
            thresholds=thresholds,
            known_limits=known_limits,
            trained_by=trained_by,
        )


def promotion_verdict(candidate: ModelVersion) -> tuple[bool, str]:
    """Not worse than the active version on the same held-out set, category by category on average.

    Training scores the active version on the candidate's held-out set (``training_data['baseline']``),
    so both figures come from the same examples.
    """
    active = model_active(candidate.name)
    if active is None:
        return True, "no active version"
    baseline: dict[str, Any] = candidate.training_data.get("baseline", {})
    if baseline.get("version") != active.label:
        return (
            False,
            f"the held-out comparison was made against {baseline.get('version')}, not the active {active.label}",
        )
    shared = [c for c, m in candidate.metrics.items() if m.get("auprc") is not None and c in baseline["auprc"]]
    if not shared:
        return False, "no category was measured for both versions"
    new = sum(candidate.metrics[c]["auprc"] for c in shared) / len(shared)
    old = sum(baseline["auprc"][c] for c in shared) / len(shared)
    if new < old:
        return False, f"held-out AUPRC {new:.3f} is worse than the active {active.label}'s {old:.3f}"
    return True, f"held-out AUPRC {new:.3f} >= {old:.3f} of {active.label} over {len(shared)} categories"


def model_promote(*, candidate: ModelVersion, actor: User | str, reason: str = "") -> ModelVersion:
    """Make ``candidate`` the active version; refused (and marked rejected) when it is worse."""
    with transaction.atomic():
        candidate = ModelVersion.objects.select_for_update().defer("artifact").get(pk=candidate.pk)
        if candidate.status == ModelStatus.ACTIVE:
            return candidate
        ok, why = promotion_verdict(candidate)
        if not ok:
            candidate.status = ModelStatus.REJECTED
            candidate.save(update_fields=["status"])
            audit_record(actor=actor, action="model.promotion_refused", target=candidate, reason=why)
        else:
            previous = model_active(candidate.name)
            if previous is not None:
                ModelVersion.objects.filter(pk=previous.pk).update(status=ModelStatus.RETIRED)
            candidate.status = ModelStatus.ACTIVE
            candidate.promoted_at = timezone.now()
            candidate.promoted_by = actor.get_username() if isinstance(actor, User) else str(actor)
            candidate.save(update_fields=["status", "promoted_at", "promoted_by"])
            audit_record(
                actor=actor,
                action="model.promote",
                target=candidate,
                before={"active": previous.label if previous else None},
                after={"active": candidate.label, "metrics": candidate.metrics},
                reason=reason or why,
            )
    # Raised after the block, so the refusal (status and audit entry) is committed, not rolled back.
    if not ok:
        raise NotPermitted(f"{candidate.label} was not promoted: {why}.")
    # What the new version covers opens or resolves the child-safety coverage incident at once. Imported here:
    # coverage reads the backends, which include this module's LocalModel.
    from routing.scoring.coverage import coverage_incident_sync

    coverage_incident_sync()
    return candidate


def classifier_load(version: ModelVersion) -> LocalClassifier:
    return loaded.get(
        (version.pk, version.artifact_sha256),
        lambda: bytes(ModelVersion.objects.values_list("artifact", flat=True).get(pk=version.pk)),
    )


def model_categories(version: ModelVersion) -> frozenset[str]:
    """The categories ``version``'s artifact has a model for: recorded at registration, or (for a version
    registered before that was recorded) read from the artifact itself."""
    learned = version.training_data.get(LEARNED)
    if isinstance(learned, list):
        return frozenset(str(c) for c in learned)
    return frozenset(classifier_load(version).categories)


class LocalModel:
    """The active registry version; no active version means 'unavailable' and the chain moves on."""

    name: str = Backend.LOCAL
    external = False
    max_batch = 5000

    def current_version(self) -> ModelVersion:
        version = model_active()
        if version is None:
            raise BackendError(CallOutcome.UNAVAILABLE, "no active local model: run manage.py classifier_train")
        return version

    def scored_as(self, policies: Sequence[Policy]) -> tuple[str | None, str | None]:
        return self.current_version().label, None

    def configured(self) -> str:
        return "" if model_active() is not None else "not configured: no active local model"

    def produces(self, policies: Sequence[Policy]) -> frozenset[str]:
        version = model_active()
        return frozenset() if version is None else model_categories(version)

    def score(self, texts: Sequence[TextToScore], *, policies: Sequence[Policy]) -> BatchScores:
        version = self.current_version()
        try:
            model = classifier_load(version)
        except TypeError as exc:
            raise BackendError(CallOutcome.UNAVAILABLE, f"{version.label}: {exc}") from exc
        probabilities = model.predict([t.text for t in texts])
        categories = list(probabilities)
        columns = [np.round(probabilities[c], 6).tolist() for c in categories]
        items = [
            ItemScores(t.item_id, dict(zip(categories, row, strict=True)))
            for t, row in zip(texts, zip(*columns, strict=True), strict=True)
        ]
        return BatchScores(model=version.name, model_version=version.label, items=items)
