"""Scoring fixtures: the fake OpenAI server wired into settings, policies, and a trained local model."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache

from fixtures.fake_openai import FakeOpenAI
from ops_platform.core.models import Policy
from queues.models import ReviewItem
from routing.models import ModelVersion
from routing.scoring import openai_backends
from routing.scoring.local_model import LocalClassifier, fit
from routing.scoring.registry import model_promote, model_register
from routing.scoring.training import DATASET_KEYS

DATASET = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "openai-moderation-samples-1680.jsonl.gz"


def dataset_rows(limit: int | None = None) -> list[dict[str, Any]]:
    if not DATASET.exists():
        pytest.fail(f"the shared labeled set is missing: {DATASET}")
    with gzip.open(DATASET, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return rows[:limit] if limit else rows


def dataset_labels(row: dict[str, Any]) -> dict[str, int]:
    return {str(DATASET_KEYS[k]): int(v) for k, v in row.items() if k in DATASET_KEYS}


@pytest.fixture(scope="session")
def trained_classifier() -> LocalClassifier:
    """One fit per test session (a few seconds) on a slice of the shared moderation set."""
    rows = dataset_rows(700)
    return fit([r["prompt"] for r in rows], [dataset_labels(r) for r in rows], seed=0)


@pytest.fixture
def local_model(db: None, trained_classifier: LocalClassifier) -> ModelVersion:
    version = model_register(
        model=trained_classifier,
        training_data={"examples": 700, "sources": {"openai-moderation-1680": 700}},
        metrics={},
        thresholds={},
        known_limits="test model",
        trained_by="test",
    )
    return model_promote(candidate=version, actor="test")


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
