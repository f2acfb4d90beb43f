"""Test settings: the real settings, with a test secret, fast hashing, and the real services when reachable.

The suite runs on PostgreSQL whenever one answers (``DATABASE_URL``, or the local service on
127.0.0.1:5432); under ``CI=true`` a missing PostgreSQL is an error, not a fallback to SQLite.
"""

import os
import socket
import tempfile
from pathlib import Path


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
if "DATABASE_URL" not in os.environ:
    if _reachable("127.0.0.1", 5432):
        os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/ops_platform"
    elif os.environ.get("CI") == "true":
        raise RuntimeError("CI=true but PostgreSQL is not reachable on 127.0.0.1:5432 and DATABASE_URL is unset.")
# Tests run tasks in-process unless a test starts a real worker (see tests/conftest.py).
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"

from ops_platform import settings as _production  # noqa: E402
from ops_platform.settings import *  # noqa: E402,F403

# The demo world's command and the fake OpenAI server are test material too.
if "fixtures" not in INSTALLED_APPS:  # noqa: F405
    INSTALLED_APPS.append("fixtures")  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "media": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": tempfile.mkdtemp(prefix="ops-test-media-")},
    },
}
# Items in tests name made-up media addresses: no test reaches out for them unless it turns fetching on
# (tests/routing/test_media_*.py, with their own local servers).
MEDIA_FETCH_ENABLED = False
LOGGING = {**LOGGING, "root": {"handlers": ["console"], "level": "WARNING"}}  # noqa: F405
# Client.login() authenticates without a request, which django-axes refuses; the sign-in form and the
# browser tests pass one, so the throttle is live for every real login (tests/core/test_login_throttle.py).
# Django's ModelBackend last, only so the sessions of tests that force_login(backend=ModelBackend) resolve; the
# single sign-on tests (tests/core/test_sso.py) run with the production list, where it is absent.
PRODUCTION_AUTHENTICATION_BACKENDS = list(_production.AUTHENTICATION_BACKENDS)
AUTHENTICATION_BACKENDS = [
    "tests.login_backend.AxesUnlessNoRequest",
    *PRODUCTION_AUTHENTICATION_BACKENDS[1:],
    "django.contrib.auth.backends.ModelBackend",
]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # The test database in a file, as the embedded mode runs, not Django's shared in-memory one: tests with real
    # threads then wait for the writer (the busy timeout) as the demo server does, instead of failing at once
    # on the shared cache's table locks.
    _sqlite = Path(DATABASES["default"]["NAME"])  # noqa: F405
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(_sqlite.with_name(f"test_{_sqlite.name}"))  # noqa: F405
# Tests run periodic jobs themselves; the browser test of live dashboards turns the in-process beat on.
PERIODIC_IN_PROCESS = False
