"""The access table in docs/access.md, read as data, and the outcome a persona actually gets from a URL."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import ROOT

DOC = ROOT / "docs" / "access.md"
PERSONAS = ["anonymous", "reviewer", "vendor reviewer", "QA lead", "policy staff", "ops manager", "admin"]
METHODS = ["GET", "POST"]


@dataclass(frozen=True)
class Route:
    pattern: str  # as Django prints it, e.g. "review/items/<int:pk>/"
    name: str  # with its namespace, e.g. "admin:core_auditlog_change"


def routes(patterns: list[Any] | None = None, prefix: str = "", namespace: str = "") -> Iterator[Route]:
    """Every URL the project serves, found by walking the resolver."""
    for p in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from routes(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            yield Route(prefix + str(p.pattern), f"{namespace}{p.name}" if p.name else "")


def table(heading: str, path: Path = DOC) -> list[list[str]]:
    """The rows (cells stripped of backticks) of the first markdown table under ``heading``."""
    lines = path.read_text().splitlines()
    start = lines.index(heading)
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if not all(re.fullmatch(r":?-+:?", c) for c in cells):
            rows.append(cells)
    return rows[1:]  # without the header row


def outcome(response: HttpResponse) -> str:
    """A response as the table writes it: the status, or where a redirect goes to sign in."""
    if response.status_code in (301, 302):
        location = response["Location"]
        if location.startswith("/accounts/login/"):
            return "login"
        if location.startswith("/admin/login/"):
            return "admin-login"
        return "302"
    return str(response.status_code)


class _Undo(Exception):
    def __init__(self, response: HttpResponse) -> None:
        self.response = response


def request_undone(client: Client, method: str, url: str, **extra: Any) -> HttpResponse:
    """Send one request and roll back whatever it wrote, so each row of the table sees the same world.

    The client's cookies are put back too: signing out (or a session rotated) must not change who asks next.
    """
    cookies = copy.deepcopy(client.cookies)
    try:
        with transaction.atomic():
            raise _Undo(getattr(client, method.lower())(url, **extra))
    except _Undo as undo:
        return undo.response
    finally:
        client.cookies = cookies
