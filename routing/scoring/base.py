"""The one interface every classifier backend implements, and the errors a backend may raise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from ops_platform.core.models import Policy
from routing.scoring.models import CallOutcome


@dataclass(frozen=True)
class TextToScore:
    """What a backend sees of an item: its id and text (already redacted for external backends)."""

    item_id: int
    text: str
    language: str = ""
    # The item's stored images as data: URLs, in position order, for backends that see images (``sees_images``).
    images: tuple[str, ...] = ()


@dataclass
class ItemScores:
    item_id: int
    # Category (or "policy:<slug>") -> probability in [0, 1].
    scores: dict[str, float]
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchScores:
    """A backend's answer for a batch, with what the call cost."""

    model: str
    model_version: str
    items: list[ItemScores]
    prompt_version: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)


class BackendError(Exception):
    """A backend could not score a batch. ``outcome`` says why; the pipeline falls back to the next backend.

    Messages carry status codes and error types only, never item text.
    """

    def __init__(
        self,
        outcome: CallOutcome,
        message: str = "",
        *,
        model: str = "",
        prompt_version: str = "",
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: Decimal = Decimal(0),
    ) -> None:
        super().__init__(message or outcome.label)
        self.outcome = outcome
        self.model = model
        self.prompt_version = prompt_version
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cost_usd = cost_usd

    @property
    def counts_against_breaker(self) -> bool:
        """Provider trouble opens the circuit; a missing key or an unready model does not."""
        return self.outcome not in (CallOutcome.UNAVAILABLE, CallOutcome.REFUSED)


class Classifier(Protocol):
    name: str
    # True when text leaves the machine: the pipeline redacts PII first.
    external: bool

    def score(self, texts: Sequence[TextToScore], *, policies: Sequence[Policy]) -> BatchScores:
        """Score every text for the categories (and, for policy classifiers, the policies) given."""
        ...

    def scored_as(self, policies: Sequence[Policy]) -> tuple[str | None, str | None]:
        """The (model version, prompt version) a score must carry to count as already done now;
        None where any will do (a hosted model's version is known only from its answer)."""
        ...

    def configured(self) -> str:
        """Why this backend cannot score now ("" when it can): no key, no active model."""
        ...

    def produces(self, policies: Sequence[Policy]) -> frozenset[str]:
        """The score keys (as stored: ``sexual/minors``, ``policy:spam``) this backend gives every item it scores
        for ``policies``; empty when it is not configured."""
        ...
