"""Helpers for the routing-rules tests: rule sets made live through the real services, items and scores."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import count
from typing import Any

from django.utils import timezone

from ops_platform.core.models import Role, User
from ops_platform.core.services import user_create
from queues.models import Queue, ReviewItem
from routing.models import Backend, ClassifierScore, RuleSet
from routing.rules.coverage import ruleset_unproduced_scores
from routing.rules.lifecycle import (
    RuleData,
    rule_delete,
    rule_save,
    ruleset_activate,
    ruleset_approve,
    ruleset_draft_create,
    ruleset_submit,
)
from tests.conftest import PASSWORD

_external_ids = count()


def policy_staff_member(username: str) -> User:
    return user_create(actor="test", username=username, password=PASSWORD, roles=[Role.POLICY_STAFF])


def ruleset_drafted(
    kind: str, rules: Sequence[RuleData], *, author: User, default_queue: Queue | None = None
) -> RuleSet:
    """A draft holding exactly ``rules`` (a new draft starts as a copy of the active version)."""
    draft = ruleset_draft_create(actor=author, kind=kind, default_queue=default_queue)
    for copied in list(draft.rules.all()):
        rule_delete(actor=author, rule=copied)
    for data in rules:
        rule_save(actor=author, rule_set=draft, data=data)
    return draft


def ruleset_live(
    kind: str, rules: Sequence[RuleData], *, author: User, approver: User, default_queue: Queue | None = None
) -> RuleSet:
    """A version of ``rules`` taken the whole way: drafted and submitted by ``author``, approved and
    activated by ``approver``, who acknowledges the scores no active backend produces (these worlds write their
    scores themselves, with no model: see tests/routing/test_score_coverage.py for the contract)."""
    draft = ruleset_drafted(kind, rules, author=author, default_queue=default_queue)
    ruleset_submit(actor=author, rule_set=draft)
    unproduced = ruleset_unproduced_scores(draft)
    ruleset_approve(actor=approver, rule_set=draft, acknowledge=unproduced)
    return ruleset_activate(actor=approver, rule_set=draft, acknowledge=unproduced)


def item_received(text: str = "some text", *, received_at: datetime | None = None, **fields: Any) -> ReviewItem:
    return ReviewItem.objects.create(
        source="test",
        external_id=f"r-{next(_external_ids)}",
        text=text,
        received_at=received_at or timezone.now(),
        **fields,
    )


def scores_write(item: ReviewItem, **scores: float) -> ClassifierScore:
    """The local model's scores for ``item``; keyword ``sexual_minors`` stands for ``sexual/minors``."""
    named = {("sexual/minors" if k == "sexual_minors" else k): v for k, v in scores.items()}
    return ClassifierScore.objects.create(item=item, backend=Backend.LOCAL, model_version="t", scores=named)


def unscored_mark(item: ReviewItem) -> ClassifierScore:
    """What the pipeline stores when every classifier failed: the item falls back to people."""
    return ClassifierScore.objects.create(item=item, backend=Backend.UNSCORED, model_version="", scores={})


def moderation_configured(settings: Any) -> None:
    """A world whose first backend, OpenAI moderation, has a key: it produces every category, so approving a
    version reading category scores asks no acknowledgement. For tests of the approval path that never score
    (nothing calls the API); the acknowledgement itself is tested in tests/routing/test_score_coverage.py."""
    settings.OPENAI_API_KEY = "sk-test-never-called"
    settings.SCORING_DEFAULT_CHAIN = ["openai_moderation", "local"]
