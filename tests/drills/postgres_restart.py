"""Drill postgres_restart: PostgreSQL goes down and comes back; the app answers 503, never 500, then recovers.

The drill runs its own PostgreSQL cluster (initdb in a temporary directory, its own port; the machine's shared
server is never touched) and gunicorn (2 sync workers, persistent connections with health checks, as
deployed) on it. A prober keeps calling four endpoints: ``POST /api/v1/items``, ``GET /api/v1/items/<id>``,
a signed-in page (``/``, whose session lives in the database) and ``/healthz``. The drill stops PostgreSQL
(``pg_ctl stop -m fast``, which drops every connection), keeps it down for a while, starts it again and waits
until every endpoint answers 2xx again, with the same gunicorn processes.

    .venv/bin/python -m tests.drills.postgres_restart              # 20 s down
    .venv/bin/python -m tests.drills.postgres_restart --down 60
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from tests.drills.harness import (
    DATABASE_PREFIX,
    RESULTS,
    Drill,
    DrillResult,
    app_env,
    cli,
    database_prepare,
    world_create,
)
from tests.support.processes import Gunicorn, manage
from tests.support.servers import PostgresCluster, RedisServer

NAME = "postgres_restart"
TITLE = "PostgreSQL stopped and started under the running app"
PASSWORD = "drill-password-not-secret-1"
USER = f"""
from ops_platform.core.models import Role
from ops_platform.core.services import user_create
user_create(actor="drill", username="drill.ops", password={PASSWORD!r}, roles=[Role.OPS_MANAGER])
"""


@dataclass
class Probe:
    name: str
    started: float
    ended: float
    status: int  # 0: no HTTP answer
    retry_after: str | None
    content_type: str
    error: str = ""


class Prober:
    """Calls each endpoint in turn, over and over, recording every answer."""

    def __init__(self, base: str, key: str, session: httpx.Cookies, item_id: int) -> None:
        self.base, self.key, self.cookies, self.item_id = base, key, session, item_id
        self.probes: list[Probe] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drill-prober", daemon=True)
        self._n = 0

    def start(self) -> Prober:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        auth = {"Authorization": f"Bearer {self.key}"}
        with (
            httpx.Client(base_url=self.base, timeout=15) as http,
            httpx.Client(base_url=self.base, timeout=15, cookies=self.cookies) as browser,
        ):
            while not self._stop.is_set():
                self._n += 1
                body = [{"external_id": f"pg-{self._n}", "text": "probe during a database restart"}]
                self._call(http, "POST /api/v1/items", "POST", "/api/v1/items", headers=auth, json=body)
                self._call(http, "GET /api/v1/items/<id>", "GET", f"/api/v1/items/{self.item_id}", headers=auth)
                self._call(browser, "GET / (signed-in page)", "GET", "/")
                self._call(http, "GET /healthz", "GET", "/healthz")
                self._stop.wait(0.2)

    def _call(self, http: httpx.Client, name: str, method: str, path: str, **kwargs: Any) -> None:
        started = time.monotonic()
        try:
            r = http.request(method, path, follow_redirects=False, **kwargs)
        except httpx.HTTPError as exc:
            self.probes.append(Probe(name, started, time.monotonic(), 0, None, "", type(exc).__name__))
            return
        probe = Probe(
            name,
            started,
            time.monotonic(),
            r.status_code,
            r.headers.get("Retry-After"),
            r.headers.get("Content-Type", ""),
        )
        if r.status_code == 503 and path.startswith("/api/"):
            try:
                probe.error = str(r.json().get("error"))
            except ValueError:
                probe.error = "not JSON"
        self.probes.append(probe)


def sign_in(base: str) -> httpx.Cookies:
    with httpx.Client(base_url=base, timeout=30) as http:
        page = http.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token is not None, "no CSRF token on the login page"
        done = http.post(
            "/accounts/login/",
            data={"username": "drill.ops", "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
        )
        assert done.status_code == 302, f"sign-in failed: {done.status_code}"
        return http.cookies


def run(*, down: float = 20.0, quick: bool = False, keep: bool = False, write: bool = True) -> DrillResult:
    if quick:
        down = min(down, 15.0)
    drill = Drill(NAME, TITLE)
    cluster = PostgresCluster()
    broker = RedisServer()
    try:
        drill.log("initdb and start a private PostgreSQL cluster …")
        cluster.init()
        cluster.start()
        broker.start()
        env = app_env(cluster.url(f"{DATABASE_PREFIX}{NAME}"), broker.url, CONN_MAX_AGE="60")
        database_prepare(env)
        world = world_create(env)
        manage(env, "shell", "-c", USER)
        manage(env, "collectstatic", "--noinput")  # pages need the static manifest outside DEBUG
        web = Gunicorn(env, RESULTS / f"drill-{NAME}-gunicorn.log", workers=2)
        web.start()
        try:
            with httpx.Client(base_url=web.base, timeout=30) as http:
                first = http.post(
                    "/api/v1/items",
                    headers={"Authorization": f"Bearer {world.key}"},
                    json=[{"external_id": "pg-0", "text": "before the restart"}],
                )
            item_id = int(first.json()["results"][0]["id"])
            pids_before = (web.pid, web.worker_pids())
            prober = Prober(web.base, world.key, sign_in(web.base), item_id).start()
            time.sleep(5)
            drill.log(f"stopping PostgreSQL for {down:.0f} s …")
            down_at = time.monotonic()
            cluster.stop()
            stopped_at = time.monotonic()
            time.sleep(down)
            # The server accepts connections before `pg_ctl start -w` notices and returns: "down" ends when the
            # start begins, or a call answered in between counts as a success while down.
            starting_at = time.monotonic()
            cluster.start()
            up_at = time.monotonic()
            drill.log("PostgreSQL is back; waiting for every endpoint to answer 2xx …")
            names = sorted({p.name for p in prober.probes})

            def recovered() -> bool:
                after = [p for p in prober.probes if p.started >= up_at]
                return all(sum(1 for p in after if p.name == n and 200 <= p.status < 300) >= 3 for n in names)

            deadline = time.monotonic() + 120
            while not recovered() and time.monotonic() < deadline:
                time.sleep(0.5)
            prober.stop()
            pids_after = (web.pid, web.worker_pids())
        finally:
            web.stop()

        probes = prober.probes
        during = [p for p in probes if p.started >= stopped_at and p.ended <= starting_at]
        after = [p for p in probes if p.started >= up_at]
        fives = [p for p in probes if p.status >= 500 and p.status != 503]
        drill.figure("database down", f"{up_at - down_at:.1f} s (`pg_ctl stop -m fast` … `pg_ctl start`)")
        drill.figure("requests in all", len(probes))
        for name in names:
            mine = [p for p in during if p.name == name]
            statuses = Counter(p.status for p in mine)
            drill.figure(f"while down: {name}", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
        for name in names:
            ok = [p.ended - up_at for p in after if p.name == name and 200 <= p.status < 300]
            drill.figure(f"back up to first 2xx: {name}", f"{min(ok):.2f} s" if ok else "never")
        unanswered = sum(1 for p in probes if not p.status)
        drill.figure("answers other than 2xx/503 (500s, no answer)", len(fives) + unanswered)
        drill.figure("gunicorn master and workers", "same processes" if pids_before == pids_after else "restarted")

        drill.check("requests were made while the database was down", len(during) >= len(names))
        drill.check(
            "no 500 (nor any 5xx but 503), and gunicorn always answered", not fives and all(p.status for p in probes)
        )
        drill.check(
            "while down, every call answered 503 with Retry-After",
            all(p.status == 503 and p.retry_after for p in during),
        )
        api_down = [p for p in during if "/api/" in p.name]
        drill.check(
            "the API's 503s are its JSON error body (error: unavailable)",
            bool(api_down) and all(p.error == "unavailable" for p in api_down),
        )
        page_down = [p for p in during if p.name.startswith("GET / ")]
        drill.check(
            "the page's 503 is an HTML page",
            bool(page_down) and all(p.content_type.startswith("text/html") for p in page_down),
        )
        drill.check("every endpoint answers 2xx again after the restart", recovered())
        drill.check("no app restart: the same gunicorn master and workers", pids_before == pids_after)
    finally:
        broker.stop()
        if not keep:
            cluster.destroy()
        else:
            drill.note(f"The cluster is kept in {cluster.dir} (port {cluster.port}).")
    return drill.finish(write=write)


def arguments(parser: Any) -> None:
    parser.add_argument("--down", type=float, help="seconds PostgreSQL stays down (default 20)")
    parser.add_argument("--quick", action="store_true", default=None, help="the CI size (15 s down)")
    parser.add_argument("--keep", action="store_true", default=None, help="keep the cluster")


if __name__ == "__main__":
    raise SystemExit(cli(run, __doc__ or NAME, arguments))
