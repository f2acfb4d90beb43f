"""How many independent reviews an item may need: up to its queue's ceiling (default 5, at most 25), not a
fixed 5 (issue 22)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from queues.models import DEFAULT_MAX_REQUIRED_REVIEWS, MAX_REQUIRED_REVIEWS, Queue
from routing.rules.lifecycle import RuleData, RuleInvalid, rule_validate
from routing.rules.models import RuleAction, RuleSetKind

pytestmark = pytest.mark.django_db


def _route(queue: Queue, reviews: int) -> RuleData:
    return RuleData(name="n", condition="true", action=RuleAction.ROUTE, queue_id=queue.pk, required_reviews=reviews)


def test_a_rule_may_ask_as_many_reviews_as_its_queue_allows():
    crowd = Queue.objects.create(slug="crowd", name="Crowd", max_required_reviews=9)
    plain = Queue.objects.create(slug="plain", name="Plain")

    rule_validate(RuleSetKind.INTAKE, _route(crowd, 9))
    rule_validate(RuleSetKind.INTAKE, _route(plain, DEFAULT_MAX_REQUIRED_REVIEWS))
    with pytest.raises(RuleInvalid) as caught:
        rule_validate(RuleSetKind.INTAKE, _route(crowd, 10))
    assert caught.value.problems == {"required_reviews": ["Required reviews is between 1 and 9."]}
    with pytest.raises(RuleInvalid):
        rule_validate(RuleSetKind.INTAKE, _route(plain, DEFAULT_MAX_REQUIRED_REVIEWS + 1))


def test_the_ceiling_itself_is_bounded():
    queue = Queue(slug="q", name="Q", max_required_reviews=MAX_REQUIRED_REVIEWS + 1)

    with pytest.raises(ValidationError) as caught:
        queue.full_clean()
    assert "max_required_reviews" in caught.value.message_dict
    queue.max_required_reviews = MAX_REQUIRED_REVIEWS
    queue.full_clean()
