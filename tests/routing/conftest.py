"""Scoring fixtures: the fake OpenAI server wired into settings, policies, and a trained local model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from ops_platform.core.models import Policy, User
from queues.models import Queue, ReviewItem
from routing.scoring import openai_backends
from tests.conftest import dataset_labels, dataset_rows
from tests.routing.rules_setup import policy_staff_member
from tests.support.fake_openai import FakeOpenAI

__all__ = ["dataset_labels", "dataset_rows", "items_make"]


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def fake_openai(settings: Any) -> Iterator[FakeOpenAI]:
    """The fake API, with the OpenAI backends pointed at it: short timeout, one client retry."""
    with FakeOpenAI(retry_after=0.05, slow_seconds=3.0) as fake:
        settings.OPENAI_API_KEY = "sk-test"
        settings.OPENAI_BASE_URL = fake.base_url
        settings.OPENAI_TIMEOUT_SECONDS = 0.5
        settings.OPENAI_MAX_RETRIES = 1
        openai_backends._client.cache_clear()
        yield fake
        assert not fake.errors, fake.errors
    openai_backends._client.cache_clear()


@pytest.fixture
def hate_policy(db: None) -> Policy:
    return Policy.objects.create(
        slug="hate-speech",
        name="Hate speech",
        guidelines="Attacks on people for a protected characteristic are not allowed. Counter-speech is allowed.",
        classifier_categories=["hate", "hate/threatening"],
    )


@pytest.fixture
def spam_policy(db: None) -> Policy:
    return Policy.objects.create(
        slug="spam-scam",
        name="Spam and scams",
        guidelines="Unsolicited promotion, fake giveaways and requests for money transfers are not allowed.",
    )


def items_make(*texts: str) -> list[ReviewItem]:
    from django.utils import timezone

    return [
        ReviewItem.objects.create(source="test", external_id=f"t-{i}", text=text, received_at=timezone.now())
        for i, text in enumerate(texts)
    ]


# --- routing rules ----------------------------------------------------------------------------------


@pytest.fixture
def priya(db: None) -> User:
    """A second policy-staff member: rule sets need someone other than their author to approve them."""
    return policy_staff_member("priya")


@pytest.fixture
def hate_queue(db: None) -> Queue:
    return Queue.objects.create(slug="hate", name="Hate speech")


@pytest.fixture
def senior_queue(db: None) -> Queue:
    return Queue.objects.create(slug="senior", name="Senior review")
