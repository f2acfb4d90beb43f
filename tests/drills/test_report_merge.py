"""``bench/report.py --merge`` in a fresh checkout: results not re-run are read back from the committed report
(nothing saved under bench/results/logs/ there)."""

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import report
from bench.report import BENCHMARKS, SCRIPTS, Outcome, report_render

INTAKE, CLAIM = BENCHMARKS[0], BENCHMARKS[3]
RESULT = """### Intake benchmark

| | |
|---|---|
| **items/s accepted** | **8,857** (target 5,000: met) |
| batch latency p50 / p99 | 99 / 313 ms |

#### Where the time goes

| step | share |
|---|---:|
| validation | 30% |
"""


@pytest.fixture(autouse=True)
def fresh_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "LOGS", tmp_path)


def rendered(*outcomes: Outcome) -> str:
    return report_render(
        list(outcomes), args=argparse.Namespace(quick=False), started=datetime.now(UTC), machine=[], load=("", "")
    )


def test_an_outcome_reads_back_from_the_report_it_was_written_into() -> None:
    written = Outcome(
        INTAKE,
        ["--items", "20000"],
        returncode=0,
        seconds=41,
        cpu=1043.0,
        busy=0.75,
        load=("0.96 0.37 0.14", "1.33 0.53 0.21"),
        markdown=RESULT,
        note="ran beside nothing",
        when="2026-11-30 03:35 to 03:36 UTC",
        commit="32a463b (main)",
    )
    failed = Outcome(
        CLAIM,
        [],
        returncode=3,
        seconds=12,
        cpu=4.0,
        busy=0.2,
        load=("1.0 1.0 1.0", "1.1 1.0 1.0"),
        tail=["Traceback (most recent call last):\n", "SystemExit: 3 claims lost\n"],
        when="w",
        commit="abc1234",
    )
    report = rendered(written, failed)

    again = Outcome.saved(INTAKE, report)
    assert again is not None
    assert again.earlier
    assert (again.args, again.returncode, again.seconds, again.cpu, again.busy, again.load) == (
        written.args,
        0,
        41,
        1043.0,
        0.75,
        written.load,
    )
    assert (again.markdown, again.note, again.when, again.commit) == (
        RESULT,
        written.note,
        written.when,
        "32a463b (main)",
    )
    lost = Outcome.saved(CLAIM, report)
    assert lost is not None
    assert (lost.returncode, lost.markdown, lost.tail) == (3, "", failed.tail)
    # Rendered again as earlier runs, the sections read the same but for saying so.
    assert (
        rendered(again, lost).replace(" (an earlier run)", "").replace(" (earlier run)", "").split("## Summary")[1]
        == report.split("## Summary")[1]
    )


def test_a_script_the_report_did_not_run_has_no_earlier_outcome() -> None:
    report = rendered(Outcome(INTAKE, []), Outcome(CLAIM, [], returncode=0, seconds=1, when="w", commit="c"))
    assert Outcome.saved(INTAKE, report) is None
    assert Outcome.saved(BENCHMARKS[1], report) is None  # not in the report at all


def test_a_drill_run_as_a_module_reads_back_with_its_arguments() -> None:
    drill = next(s for s in SCRIPTS if s.drill)
    written = Outcome(drill, ["--quick"], returncode=0, seconds=90, markdown="## Drill\n", when="w", commit="c")

    again = Outcome.saved(drill, rendered(written))

    assert again is not None
    assert (again.args, again.returncode) == (["--quick"], 0)


def test_a_saved_outcome_comes_before_the_report() -> None:
    written = Outcome(INTAKE, ["--items", "5"], returncode=0, seconds=3, markdown=RESULT, when="w", commit="c")
    (report.LOGS / "intake.json").write_text(json.dumps(written.record()))
    committed = rendered(Outcome(INTAKE, [], returncode=1, seconds=9, when="v", commit="d"))

    again = Outcome.saved(INTAKE, committed)

    assert again is not None
    assert (again.args, again.returncode, again.markdown, again.earlier) == (["--items", "5"], 0, RESULT, True)
