"""The benchmarks' and drills' apps collect their static files into a temporary directory of the run, never the
checkout's staticfiles/ (a test reading it once found a file missing while a benchmark was collecting)."""

from __future__ import annotations

from pathlib import Path

from tests.support.processes import ROOT, app_env, manage


def test_collectstatic_of_a_scratch_app_writes_outside_the_checkout():
    env = app_env("sqlite:///unused.sqlite3")
    static_root = env["STATIC_ROOT"]
    assert app_env("sqlite:///other.sqlite3")["STATIC_ROOT"] == static_root  # one directory for the whole run
    assert not static_root.startswith(str(ROOT))
    checkout_static = ROOT / "staticfiles"
    before = sorted(checkout_static.rglob("*")) if checkout_static.exists() else None

    manage(env, "collectstatic", "--noinput")

    assert (ROOT / "staticfiles").exists() == (before is not None)
    if before is not None:
        assert sorted(checkout_static.rglob("*")) == before

    assert (Path(static_root) / "staticfiles.json").exists()  # the manifest the production pages read
