"""Tasks that services send by name are registered in every process, not only in celery workers (which are the
only ones that autodiscover ``tasks`` modules): a web process that emits a webhook or hands items to triage
would otherwise fail after its transaction committed."""

from __future__ import annotations

import os
import subprocess
import sys

from ops_platform.core.webhooks import DELIVER_TASK
from routing.intake.services import TRIAGE_TASK
from routing.rules.backtest import BACKTEST_TASK
from tests.conftest import ROOT

PROBE = """
import django
django.setup()
from celery import current_app
print(" ".join(sorted(current_app.tasks)))
"""


def test_tasks_sent_by_name_are_registered_in_a_fresh_web_process():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    registered = set(done.stdout.split())

    assert {DELIVER_TASK, TRIAGE_TASK, BACKTEST_TASK} <= registered
