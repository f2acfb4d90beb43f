"""The postgres_restart drill at its CI size: a private PostgreSQL cluster stopped under gunicorn
(tests/drills/postgres_restart.py)."""

import shutil

import pytest

from tests.conftest import require
from tests.drills import postgres_restart
from tests.drills.harness import CI_SIZE
from tests.support.servers import PG_BIN

pytestmark = [pytest.mark.drill, pytest.mark.postgres, pytest.mark.redis]


def test_the_app_answers_503_while_postgres_is_down_and_recovers_without_a_restart():
    require((PG_BIN / "initdb").exists() and shutil.which("runuser") is not None, f"initdb in {PG_BIN} and runuser")

    result = postgres_restart.run(quick=CI_SIZE)

    assert result.passed, result.markdown
    assert dict(result.figures)["answers other than 2xx/503 (500s, no answer)"] == 0
