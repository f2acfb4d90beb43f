"""The webhook_outage drill at its CI size (a 60 s outage; the full run in `make bench` keeps five minutes)
(tests/drills/webhook_outage.py)."""

import pytest

from tests.drills import webhook_outage
from tests.drills.harness import CI_SIZE

pytestmark = [pytest.mark.drill, pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery_worker]


def test_every_event_is_delivered_after_the_receiver_outage_with_stable_ids_and_valid_signatures():
    result = webhook_outage.run(quick=CI_SIZE)

    assert result.passed, result.markdown
    figures = dict(result.figures)
    assert figures["events given up"] == 0
    assert figures["invalid signatures"] == 0
