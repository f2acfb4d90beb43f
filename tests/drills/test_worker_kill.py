"""The worker_kill drill at its CI size: ten SIGKILLs of a celery worker mid-triage (tests/drills/worker_kill.py)."""

import pytest

from tests.drills import worker_kill
from tests.drills.harness import CI_SIZE

pytestmark = [pytest.mark.drill, pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery_worker]


def test_killing_workers_mid_triage_loses_nothing_and_routes_nothing_twice():
    result = worker_kill.run(quick=CI_SIZE)

    assert result.passed, result.markdown
    figures = dict(result.figures)
    assert figures["SIGKILLs"] == 10
    assert figures["items still un-triaged"] == 0
    assert figures["items routed twice (>1 live routing decision)"] == 0
