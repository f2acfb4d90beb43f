"""The openai_faults drill at its CI size: the fake OpenAI API failing 30% of calls (tests/drills/openai_faults.py)."""

import pytest

from tests.drills import openai_faults
from tests.drills.harness import CI_SIZE

pytestmark = [pytest.mark.drill, pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery_worker]


def test_every_item_is_scored_or_falls_back_and_the_breaker_opens_and_closes():
    result = openai_faults.run(quick=CI_SIZE)

    assert result.passed, result.markdown
    figures = dict(result.figures)
    assert figures["circuit breaker openings"] >= 1
    assert figures["circuit breaker closings (trial call succeeded)"] >= 1
