"""Runtime modes: the demo runs with no configuration; anything else must be given a SECRET_KEY and installs no
demo world."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DEBUG, s.CELERY_TASK_ALWAYS_EAGER, s.DATABASES['default']['ENGINE'], 'fixtures' in s.INSTALLED_APPS)"
)
CONFIG = {"SECRET_KEY", "OPS_DEMO", "DEBUG", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER"}


def _settings(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in CONFIG}
    env = {**clean, "DJANGO_SETTINGS_MODULE": "ops_platform.settings", **env}
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_outside_the_demo_a_missing_secret_key_stops_startup():
    result = _settings()
    assert result.returncode != 0
    assert "SECRET_KEY must be set outside the demo" in result.stderr


def test_the_demo_runs_embedded_with_debug():
    result = _settings(OPS_DEMO="1")
    assert result.stdout.split() == ["True", "True", "django.db.backends.sqlite3", "True"]


def test_production_like_mode_reads_the_environment_and_is_not_debug():
    result = _settings(
        SECRET_KEY="s" * 50,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/x",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
    )
    assert result.stdout.split() == ["False", "False", "django.db.backends.postgresql", "False"]


def test_the_wheel_leaves_out_the_demo_world_and_test_material():
    """Production installs the wheel: the demo world (fixtures/) and the fake OpenAI server (tests/) stay out."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packaged = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not any(pattern.startswith(("fixtures", "tests", "bench")) for pattern in packaged)
