"""The redis_outage drill at its CI size: Redis stopped for 30 s mid-run (tests/drills/redis_outage.py)."""

import pytest

from tests.drills import redis_outage
from tests.drills.harness import CI_SIZE

pytestmark = [pytest.mark.drill, pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery_worker]


def test_intake_accepts_through_a_redis_outage_and_everything_is_triaged_after():
    result = redis_outage.run(quick=CI_SIZE)

    assert result.passed, result.markdown
    figures = dict(result.figures)
    assert figures["items accepted during the outage"] > 0
    assert figures["items still un-triaged"] == 0
