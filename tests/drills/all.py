"""Every fault drill, in one list: what it proves and how long it takes; run them all (or some) in a row.

The benchmark report (bench/report.py) runs each, full size, as ``python -m <module>`` in this order; every
drill's ``run`` returns a ``DrillResult`` (name, passed, figures, markdown, seconds) and writes
``bench/results/drill-<name>.md``.

    .venv/bin/python -m tests.drills.all                      # every drill, full size
    .venv/bin/python -m tests.drills.all --quick              # every drill at its CI size
    .venv/bin/python -m tests.drills.all worker_kill redis_outage
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.drills.harness import RESULTS, DrillResult


@dataclass(frozen=True)
class DrillSpec:
    name: str
    module: str
    proves: str
    # Measured at the CI size (``quick=True``) and full size on 2 cores busy with another benchmark; the first
    # drill of a run adds 2-4 minutes when it has to build the template database (migrate, train the model).
    ci_minutes: float
    full_minutes: float

    @property
    def run(self) -> Callable[..., DrillResult]:
        return importlib.import_module(self.module).run


DRILLS: tuple[DrillSpec, ...] = (
    DrillSpec(
        "worker_kill",
        "tests.drills.worker_kill",
        "nothing lost, nothing routed twice when a celery worker is SIGKILLed ten times mid-triage "
        "(acks_late, the un-triaged sweeper, idempotent triage)",
        ci_minutes=3.5,
        full_minutes=3,
    ),
    DrillSpec(
        "redis_outage",
        "tests.drills.redis_outage",
        "intake keeps answering 201 while Redis is down 30 s; everything is triaged once it is back",
        ci_minutes=2,
        full_minutes=2,
    ),
    DrillSpec(
        "postgres_restart",
        "tests.drills.postgres_restart",
        "503 with Retry-After (never 500) while PostgreSQL is down, then recovery without restarting the app",
        ci_minutes=2,
        full_minutes=1.5,
    ),
    DrillSpec(
        "openai_faults",
        "tests.drills.openai_faults",
        "with the OpenAI API failing 30% of calls every item is scored or falls back; the breaker opens and closes",
        ci_minutes=1.2,
        full_minutes=1.5,
    ),
    DrillSpec(
        "webhook_outage",
        "tests.drills.webhook_outage",
        "a receiver down five minutes still gets every event, at least once, same event id, valid signature "
        "(60 s outage at the CI size)",
        ci_minutes=2,
        full_minutes=7,
    ),
    DrillSpec(
        "scale_out",
        "tests.drills.scale_out",
        "two web processes behind one address, two triage workers and one beat triage 4,000 items, each exactly "
        "once (one size: --quick changes nothing)",
        ci_minutes=2,
        full_minutes=2,
    ),
)


def drill_run(spec: DrillSpec, **params: Any) -> DrillResult:
    return spec.run(**params)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"drills to run (default: all): {', '.join(d.name for d in DRILLS)}")
    parser.add_argument("--quick", action="store_true", help="each drill at its CI size")
    args = parser.parse_args()
    unknown = set(args.names) - {d.name for d in DRILLS}
    if unknown:
        parser.error(f"unknown drill(s): {', '.join(sorted(unknown))}")
    chosen = [d for d in DRILLS if not args.names or d.name in args.names]
    results = []
    for spec in chosen:
        print(f"== drill {spec.name}: {spec.proves}", file=sys.stderr, flush=True)
        results.append(drill_run(spec, quick=args.quick))
    lines = ["# Fault drills", "", "| drill | proves | verdict | seconds |", "|---|---|---|---|"]
    lines += [
        f"| {r.name} | {spec.proves} | {'PASSED' if r.passed else 'FAILED'} | {r.seconds:.0f} |"
        for spec, r in zip(chosen, results, strict=True)
    ]
    summary = "\n".join(lines) + "\n\n" + "\n".join(r.markdown for r in results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "drills.md").write_text(summary)
    print(summary)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
