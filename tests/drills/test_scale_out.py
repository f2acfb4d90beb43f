"""The multi-process shape of docs/deploy.md in one run (tests/drills/scale_out.py): two web processes behind one
address, two triage workers with different hostnames, one beat; every item triaged exactly once."""

import pytest

from tests.drills import scale_out

pytestmark = [pytest.mark.drill, pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery_worker]


def test_two_web_processes_and_two_triage_workers_triage_every_item_exactly_once():
    result = scale_out.run()

    assert result.passed, result.markdown
    figures = dict(result.figures)
    assert figures["items stored"] == 4000
    assert figures["items still un-triaged"] == 0
    assert figures["items routed twice (>1 live routing decision)"] == 0
    assert figures["items with two 'queued'/'auto_actioned' events"] == 0
    assert min(figures["intake calls answered 201, by web process (access logs)"]) > 0
    assert min(figures["triage tasks succeeded, by worker"]) > 0
    assert figures["metrics refreshes run (sent by beat)"] > 0
