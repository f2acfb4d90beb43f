"""The benchmark report: every benchmark and drill run alone in turn, into bench/results/REPORT.md and (not for
--quick) docs/benchmark-report.md, with the machine, load and exit statuses. Usage: bench/README.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    from benchlib import RESULTS, ROOT, cpu_model, loadavg, machine_busy
except ModuleNotFoundError:  # imported as bench.report (tests/drills/test_report_merge.py), not run as a script
    from bench.benchlib import RESULTS, ROOT, cpu_model, loadavg, machine_busy
from tests.drills.all import DRILLS

LOGS = RESULTS / "logs"
REPORT = RESULTS / "REPORT.md"
DOCS_COPY = ROOT / "docs" / "benchmark-report.md"
PYTHON = sys.executable
MARK = "<!-- outcome "  # a section's first line: the outcome as JSON, for --merge


@dataclass(frozen=True)
class Script:
    name: str
    command: tuple[str, ...]  # after the python: a script's path, or -m and a module
    quick: tuple[str, ...] = ()  # arguments for a smoke run
    drill: bool = False

    @property
    def result(self) -> Path:
        return RESULTS / f"{'drill-' if self.drill else ''}{self.name}.md"


# In the order they run: the cheap ones first, the hour-long dashboard seeding before the end-to-end load; then the
# drills, full size (tests/drills/all.py lists them).
BENCHMARKS = [
    Script("intake", ("bench/intake.py",), ("--items", "20000")),
    Script("scoring", ("bench/scoring.py",), ("--items", "5000", "--single-items", "500")),
    Script("rules", ("bench/rules.py",), ("--items", "100000", "--rows", "20000")),
    Script("claim", ("bench/claim.py",), ("--large", "100000", "--rounds", "2")),
    Script("metrics", ("bench/metrics.py",), ("--waiting", "50000", "--scrapes", "50")),
    Script("qa", ("bench/qa.py",), ("--items", "2000", "--per-call-items", "200")),
    Script(
        "accounts",
        ("bench/accounts.py",),
        ("--items", "20000", "--accounts", "2000", "--samples", "30", "--repeat", "3", "--rounds", "2"),
    ),
    Script("dashboard", ("bench/dashboard.py",), ("--decisions", "200000")),
    Script("e2e", ("bench/e2e.py",), ("--items", "20000", "--sample", "2000")),
]
SCRIPTS = BENCHMARKS + [Script(d.name, ("-m", d.module), ("--quick",), drill=True) for d in DRILLS]


def machine_lines() -> list[tuple[str, str]]:
    meminfo = dict(ln.split(":", 1) for ln in Path("/proc/meminfo").read_text().splitlines())
    memory, available = (int(meminfo.get(k, "0 kB").split()[0]) / 2**20 for k in ("MemTotal", "MemAvailable"))
    return [
        ("CPU", f"{cpu_model()}; {len(os.sched_getaffinity(0))} CPUs usable ({os.cpu_count()} online)"),
        ("memory", f"{memory:.1f} GiB ({available:.1f} GiB available at the start)"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_version()} ({PYTHON})"),
        ("PostgreSQL", server_version(postgres_version)),
        ("Redis", server_version(redis_version)),
    ]


def postgres_version() -> str:
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", connect_timeout=3) as conn:
        version = str((conn.execute("SELECT version()").fetchone() or ["?"])[0]).split(" on ")[0]
        settings = conn.execute(
            "SELECT name || ' ' || setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
            "('shared_buffers', 'work_mem', 'max_connections', 'synchronous_commit') ORDER BY name"
        ).fetchall()
    return f"{version} at 127.0.0.1:5432 ({', '.join(row[0] for row in settings)})"


def redis_version() -> str:
    import redis

    info = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=3).info("server")
    return f"{info.get('redis_version', '?')} at 127.0.0.1:6379"


def server_version(ask: Callable[[], str]) -> str:
    try:
        return ask()
    except Exception as exc:  # the report says what it could not learn
        return f"not reachable ({type(exc).__name__})"


def git_describe() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    dirty = " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{commit} ({branch}){dirty}"


@dataclass
class Outcome:
    script: Script
    args: list[str]
    returncode: int | None = None  # None: not run
    seconds: float = 0.0
    cpu: float = 0.0  # CPU seconds of the script and every process it started and waited for
    busy: float = 0.0  # share of the machine's CPU in use during the run (everything)
    load: tuple[str, str] = ("", "")
    markdown: str = ""
    note: str = ""
    log: Path | None = None
    tail: list[str] = field(default_factory=list)
    when: str = ""  # "2026-11-30 04:51 to 04:56 UTC"
    commit: str = ""
    earlier: bool = False  # taken from an earlier run's saved outcome (--merge)

    def record(self) -> dict[str, Any]:
        """What a later ``--merge`` run needs to put this result in its report again."""
        record = {k: v for k, v in asdict(self).items() if k not in ("script", "earlier")}
        return record | {"log": shown(self.log) if self.log else None}

    @classmethod
    def of(cls, script: Script, record: dict[str, Any]) -> Outcome:
        record |= {"log": ROOT / record["log"] if record.get("log") else None, "load": tuple(record["load"])}
        return cls(script, **record, earlier=True)

    @classmethod
    def saved(cls, script: Script, report: str) -> Outcome | None:
        """The outcome its last run kept next to the log; else as ``report`` (the committed one, say) records it."""
        if (path := LOGS / f"{script.result.stem}.json").exists():
            return cls.of(script, json.loads(path.read_text()))
        heading = f"{section_heading(script)}\n\n{MARK}"
        if heading not in report:
            return None
        record, _, section = report.split(heading, 1)[1].partition(" -->\n")
        body = section.split("\n## ", 1)[0].partition("\n\n")[2].strip("\n")
        shown_tail = body.startswith("Last lines of its output:")
        markdown = "" if shown_tail else re.sub(r"^#(#{1,5}) ", r"\1 ", body, flags=re.MULTILINE) + "\n"
        return cls.of(script, json.loads(record) | {"markdown": markdown})

    @property
    def status(self) -> str:
        if self.returncode is None:
            return "not run"
        if self.returncode == 0:
            return "pass"
        return "timed out" if self.returncode == -9 else f"**FAILED** (exit {self.returncode})"


def run_script(script: Script, args: list[str]) -> Outcome:
    """Run one script, its output streamed to the console and its log; collect its markdown result."""
    outcome = Outcome(script, args)
    LOGS.mkdir(parents=True, exist_ok=True)
    outcome.log = LOGS / f"{'drill-' if script.drill else ''}{script.name}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [PYTHON, *script.command, *args]
    print(f"\n=== {script.name}: {' '.join(cmd[1:])}", flush=True)
    started_wall = time.time()
    busy0, total0 = machine_busy()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = loadavg()
    t0 = time.monotonic()
    stdout: list[str] = []
    with outcome.log.open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            stdout.append(line)
            print(f"  {script.name} | {line}", end="", flush=True)
        proc.wait()
    outcome.returncode = proc.returncode
    outcome.seconds = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome.cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    busy1, total1 = machine_busy()
    outcome.busy = (busy1 - busy0) / max(total1 - total0, 1e-9)
    outcome.load = (load_before, loadavg())
    outcome.tail = stdout[-15:]
    outcome.when = f"{datetime.fromtimestamp(started_wall, UTC):%Y-%m-%d %H:%M} to {datetime.now(UTC):%H:%M} UTC"
    outcome.commit = git_describe()
    if script.result.exists() and script.result.stat().st_mtime >= started_wall - 1:
        outcome.markdown = script.result.read_text()
    elif script.drill and stdout:
        outcome.markdown = markdown_of(stdout)
        outcome.note = f"taken from its output ({shown(script.result)} was not written)"
    else:
        outcome.note = f"no result written to {shown(script.result)} during this run"
    return outcome


def section_heading(script: Script) -> str:
    return f"## {'Drill' if script.drill else 'Benchmark'}: {script.name}"


def shown(path: Path) -> str:
    """A path relative to the checkout when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def markdown_of(lines: list[str]) -> str:
    """The markdown part of a script's output: from its first heading on."""
    for i, line in enumerate(lines):
        if line.startswith("#"):
            return "".join(lines[i:])
    return "".join(lines)


TARGET_WORDS = re.compile(r"\b(MISSED|FAILED|WRONG)\b")


def table_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def headline(markdown: str) -> str:
    """The figures of a result's rows whose first cell is bold (else its first row), bold cells only if wider."""
    found = []
    first_row = ""
    for line in markdown.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = table_cells(line)
        if not any(cells[1:]) or not cells[0]:
            continue  # a header row
        first_row = first_row or f"{cells[0].replace('**', '')}: {cells[1].replace('**', '')}"
        if cells[0].startswith("**"):
            values = cells[1:] if len(cells) == 2 else [c for c in cells[1:] if "**" in c] or cells[1:2]
            found.append(f"{cells[0].replace('**', '')}: {', '.join(v.replace('**', '') for v in values)}")
    text = "; ".join(found[:3]) or first_row
    if len(text) > 400:
        text = text[:397] + "…"
    return text.replace("|", "/")


def demote(markdown: str) -> str:
    """Headings one level down, so each result sits under its own section of the report."""
    return re.sub(r"^(#{1,5}) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.MULTILINE)


def report_render(
    outcomes: list[Outcome],
    *,
    args: argparse.Namespace,
    started: datetime,
    machine: list[tuple[str, str]],
    load: tuple[str, str],
) -> str:
    ran = [o for o in outcomes if o.returncode is not None]
    failed = [o for o in ran if o.returncode != 0]
    not_run = [o for o in outcomes if o.returncode is None]
    mode = "a quick smoke run, small sizes: not the benchmark figures" if args.quick else "full sizes"
    lines = [
        "# Benchmark report",
        "",
        f"Run by `bench/report.py` ({mode}) from {started:%Y-%m-%d %H:%M} to {datetime.now(UTC):%H:%M} UTC on commit "
        f"{git_describe()}. Each benchmark and drill ran alone, one after another, as a subprocess; each measures its "
        "reference figures (raw COPY, in-process model and rules, raw SQL) in the same run, next to its own."
        + (
            f" Re-run here: {', '.join(o.script.name for o in ran if not o.earlier)}; the rest come from earlier runs "
            "of this report (`--merge`), each section saying when and on which commit."
            if any(o.earlier for o in ran)
            else ""
        ),
        "",
        f"**{len(ran) - len(failed)} of {len(ran)} passed**"
        + (f"; failed: {', '.join(o.script.name for o in failed)}" if failed else "")
        + (f"; not run: {', '.join(o.script.name for o in not_run)}" if not_run else ""),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {label} | {value} |" for label, value in machine]
    lines += [
        f"| load average (1/5/15 min) | {load[0]} at the start, {load[1]} at the end |",
        "",
        "PostgreSQL and Redis run on the same machine as the application processes and the load generators; "
        "'machine busy' below is all of the machine's CPU in use during a script (its own processes, the servers, "
        "and anything else running then).",
        "",
        "## Summary",
        "",
        "| script | status | time | CPU of its processes | machine busy | load before → after | headline figures |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for o in outcomes:
        kind = "drill" if o.script.drill else "bench"
        name = f"{kind} `{o.script.name}`" + (" (earlier run)" if o.earlier else "")
        if o.returncode is None:
            lines.append(f"| {name} | not run | | | | | |")
            continue
        figures = headline(o.markdown) or o.note
        missed = TARGET_WORDS.findall(o.markdown)
        if missed and o.returncode == 0 and not set(missed) <= set(TARGET_WORDS.findall(figures)):
            figures += f" ({', '.join(sorted(set(missed)))} in its result)"
        lines.append(
            f"| {name} | {o.status} | {o.seconds / 60:.1f} min | {o.cpu:,.0f} s | {o.busy:.0%} | "
            f"{o.load[0]} → {o.load[1]} | {figures} |"
        )
    for o in ran:
        record = json.dumps({k: v for k, v in o.record().items() if k != "markdown"}, ensure_ascii=False)
        lines += [
            "",
            section_heading(o.script),
            "",
            MARK + record.replace(">", "\\u003e") + " -->",  # what --merge reads back
            f"`{' '.join([Path(PYTHON).name, *o.script.command, *o.args])}`: {o.status} in "
            f"{o.seconds:.0f} s, {o.when} on commit {o.commit}{' (an earlier run)' if o.earlier else ''}; "
            f"log `{shown(o.log) if o.log else '-'}`" + (f"; {o.note}" if o.note else ""),
            "",
        ]
        if o.markdown:
            lines.append(demote(o.markdown).rstrip())
        else:
            lines += ["Last lines of its output:", "", "```", *(ln.rstrip() for ln in o.tail), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks or drills")
    parser.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="run everything but these")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the whole report")
    parser.add_argument("--list", action="store_true", help="print the scripts it would run, then stop")
    docs = DOCS_COPY.relative_to(ROOT)
    parser.add_argument("--docs", action=argparse.BooleanOptionalAction, help=f"also write {docs} (not for --quick)")
    parser.add_argument("--merge", action="store_true", help=f"scripts not run keep their last result (or {docs}'s)")
    args = parser.parse_args()

    scripts = SCRIPTS
    known = {s.name for s in scripts} | {f"drill-{s.name}" for s in scripts if s.drill} | {"drills", "benchmarks"}
    unknown = sorted((set(args.only or []) | set(args.skip)) - known)
    if unknown:
        raise SystemExit(f"unknown names: {', '.join(unknown)}; known: {', '.join(sorted(known))}")

    def chosen(s: Script) -> bool:
        names = {s.name, f"drill-{s.name}" if s.drill else s.name, "drills" if s.drill else "benchmarks"}
        if args.only and not names & set(args.only):
            return False
        return not names & set(args.skip)

    if args.list:
        for s in scripts:
            extra = " ".join(s.quick) if args.quick else ""
            print(f"{'run ' if chosen(s) else 'skip'} {' '.join(s.command)} {extra}")
        return 0

    RESULTS.mkdir(parents=True, exist_ok=True)
    committed = DOCS_COPY.read_text() if DOCS_COPY.exists() else ""  # read before this run rewrites it
    started = datetime.now(UTC)
    machine = machine_lines()
    load_start = loadavg()
    outcomes = []
    for s in scripts:
        if not chosen(s):
            earlier = Outcome.saved(s, committed) if args.merge else None
            outcomes.append(earlier or Outcome(s, []))
            continue
        outcome = run_script(s, list(s.quick) if args.quick else [])
        (LOGS / f"{s.result.stem}.json").write_text(json.dumps(outcome.record(), indent=1))
        outcomes.append(outcome)
    text = report_render(outcomes, args=args, started=started, machine=machine, load=(load_start, loadavg()))
    REPORT.write_text(text)
    written = [REPORT]
    if args.docs if args.docs is not None else not args.quick:
        DOCS_COPY.parent.mkdir(parents=True, exist_ok=True)
        DOCS_COPY.write_text(text)
        written.append(DOCS_COPY)
    print("\n" + "\n".join(ln for ln in text.splitlines() if ln.startswith("| ") and "`" in ln[:20]))
    print(f"\nwritten to {', '.join(str(p.relative_to(ROOT)) for p in written)}")
    ran = [o for o in outcomes if o.returncode is not None and not o.earlier]
    return 0 if ran and all(o.returncode == 0 for o in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
