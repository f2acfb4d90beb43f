"""The drill list the benchmark report runs names every drill module, and each exposes ``run``."""

import inspect

from tests.drills.all import DRILLS


def test_every_drill_in_the_list_exposes_run_with_a_quick_size():
    assert [d.name for d in DRILLS] == [
        "worker_kill",
        "redis_outage",
        "postgres_restart",
        "openai_faults",
        "webhook_outage",
        "scale_out",
    ]
    for spec in DRILLS:
        parameters = inspect.signature(spec.run).parameters
        assert "quick" in parameters
        assert "write" in parameters
        assert spec.module.endswith(spec.name)
