"""Junk in every field of every HTML form, as every persona: never a 5xx; a refusal is a 4xx naming the field;
a refusal stores nothing (what each of those means, precisely: ``tests/hostile/form_fuzz.py``).

Nothing here lists today's forms. The pages come from the URL resolver (the admin, the API and the sign-in
pages aside) with the ids of the access tests' world, plus the pages they link to (every dashboard area and
panel); each is fetched as each persona and the forms it renders are read from the HTML: POST forms (whose
``action`` may be another URL: the decide form on the item page), GET filter forms, and links that carry query
parameters (the dashboards' drill-downs). Each field then gets each junk value while every other field keeps
the value the page rendered. Every request is rolled back, so every persona and every field sees one world.

Cost: each form is fuzzed with every junk value by the first persona that may use it; a later persona sending
the same form gets a third of the junk values (a different third for each persona) and every id it may not
see. That keeps the run to a few thousand requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from django.test import Client
from django.urls import Resolver404, resolve, reverse

from analytics.rollups import backlog_snapshot_take, rollups_refresh
from ops_platform.core.models import DecisionLabel, User
from queues.models import ItemKind, ItemState, Queue, ReviewItem
from queues.services import item_claim
from routing.models import RuleAction, RuleSetKind
from routing.rules.lifecycle import (
    RuleData,
    rule_save,
    ruleset_activate,
    ruleset_approve,
    ruleset_draft_create,
    ruleset_submit,
)
from tests.access.matrix import PERSONAS, routes, table
from tests.access.world import World, world_create
from tests.hostile.form_fuzz import JUNK, Answer, Form, Link, junk_for, page_read, send
from tests.qa.factories import decided
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db

# Pages the fuzzer does not fetch, and why.
NOT_FETCHED = {
    "logout": "signing out ends the persona's session",
    "login": "Django's sign-in form: failures are stored on purpose (the throttle, tests/core/test_login_throttle.py)",
    "healthz": "JSON for load balancers, no form",
}
# POST endpoints a persona may use (docs/access.md) that no form in this world sends a field to, and why.
NOT_REACHED = {
    "logout": NOT_FETCHED["logout"],
    "login": NOT_FETCHED["login"],
    "home": "no form; it answers a POST as a GET",
    "review-lease": "renewed by the item page's script (JSON), not by a form",
    "qa-sample-golden": "a button with no field, shown once a sample is settled",
}
# A linked page of a route with URL arguments (a dashboard area, a panel) is fetched up to this many times.
PAGES_PER_ROUTE = 10
# A form another persona already sent with every junk value gets one in this many (and every foreign id).
LATER_PERSONA_SHARE = 3


@pytest.fixture
def world(reviewer, vendor_reviewer, qa_lead, policy_staff, ops_manager, admin_user, in_house_team) -> World:
    people = {"reviewer": reviewer, "vendor_reviewer": vendor_reviewer, "qa_lead": qa_lead, "admin_user": admin_user}
    world = world_create(policy_staff=policy_staff, ops_manager=ops_manager, in_house_team=in_house_team, **people)
    # What the access world lacks for every form to show: an item waiting for a bulk decision, an appeal held by
    # alice (the uphold/overturn form), dashboard figures (tables whose rows link to the items behind them),
    # a decision label (the strike settings' label-weight form) and a rule set to roll back to.
    item_queued(world.general, text="waiting for a bulk decision")
    DecisionLabel.objects.create(policy=world.general.policies.first(), slug="fuzz-label", name="Fuzz label")
    appeals = Queue.objects.create(slug="appeals", name="Appeals")
    appeals.policies.add(*world.general.policies.all())
    contested = decided(world.general, qa_lead, text="quinn's decided post")
    appeal = item_queued(appeals, text="please look again", kind=ItemKind.APPEAL, appeal_of=contested.item)
    item_claim(item=appeal, actor=reviewer)
    rollups_refresh()
    backlog_snapshot_take()
    # Two intake versions that went live one after the other, so the rules page offers a rollback.
    for _ in range(2):
        version = ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE, default_queue=world.general)
        if not version.rules.exists():
            route = RuleData(name="all", condition="true", action=RuleAction.ROUTE, queue_id=world.general.pk)
            rule_save(actor=policy_staff, rule_set=version, data=route)
        ruleset_submit(actor=policy_staff, rule_set=version)
        ruleset_approve(actor=admin_user, rule_set=version)
        ruleset_activate(actor=admin_user, rule_set=version)
    return world


@dataclass
class Finding:
    persona: str
    method: str
    path: str
    field: str
    junk: str
    problem: str

    def __str__(self) -> str:
        return f"{self.persona}: {self.method.upper()} {self.path} {self.field}={self.junk}: {self.problem}"


def _signed_in(user: User | None) -> Client:
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def _route_name(path: str) -> str | None:
    """The route's name as docs/access.md writes it: with its namespace (``accounts:act``) where it has one."""
    try:
        return resolve(path).view_name
    except Resolver404:
        return None


def _ours(path: str) -> bool:
    return not path.startswith(("/admin/", "/api/")) and _route_name(path) not in (None, *NOT_FETCHED)


def _start_pages(world: World) -> list[str]:
    kwargs = world.kwargs()
    pages = [
        reverse(r.name, kwargs=kwargs.get(r.name))
        for r in routes()
        if not r.pattern.startswith(("admin/", "api/")) and r.name not in NOT_FETCHED
    ]
    # Every item someone holds (the world's appeal among them): its holder gets the page and its forms.
    held = ReviewItem.objects.filter(state=ItemState.CLAIMED).order_by("pk")
    return list(dict.fromkeys([*pages, *(reverse("review-item", args=[item.pk]) for item in held)]))


def _foreign_ids(world: World, user: User | None) -> dict[str, int]:
    """Ids of objects this persona may not see or use, for every field that takes an id."""
    ids = {
        "an item vendor B's reviewer holds": world.held_b.pk,
        "vendor B's queue": world.queue_b.pk,
        "vendor B's reviewer": world.vendor_b_reviewer.pk,
    }
    if user is None or world.sample_held.assignee_id != user.pk:
        ids["a QA sample someone else holds"] = world.sample_held.pk
    return ids


def _judge(baseline: Answer, answer: Answer, name: str) -> str | None:
    if answer.status >= 500:
        return f"answered {answer.status} ({answer.exception() or 'no exception recorded'})"
    if not answer.is_refusal():
        return None
    if answer.stored:
        return f"refused ({answer.status}) but wrote to {', '.join(answer.stored)}"
    if baseline.is_refusal():
        return None  # the form is refused unchanged: a junk field changes nothing the fuzzer can judge
    if not 400 <= answer.status < 500:
        said = f"error message {answer.errors[0][:80]!r}" if answer.errors else "form errors"
        return f"refused with {answer.status} and {said}, not a 4xx"
    if not answer.names(name):
        return f"answered {answer.status} without naming the field"
    return None


@dataclass
class Fuzz:
    findings: list[Finding] = field(default_factory=list)
    requests: int = 0
    reached: set[str] = field(default_factory=set)  # URL names a usable form was posted to
    fuzzed: set[tuple[object, ...]] = field(default_factory=set)  # forms sent with every junk value

    def discover(self, client: Client, persona: str, start: list[str]) -> tuple[list[Form], list[Link]]:
        """Fetch the start pages and the pages they link to; the forms and query links they hold."""
        forms: dict[tuple[object, ...], Form] = {}
        links: dict[tuple[object, ...], Link] = {}
        pending, seen, per_route = list(start), set(start), dict[str, int]()
        while pending:
            page = pending.pop(0)
            answer = send(client, "get", page)
            self.requests += 1
            if answer.status >= 500:
                self.findings.append(Finding(persona, "get", page, "(page)", "", f"answered {answer.status}"))
            if answer.status != 200 or not answer.response.get("Content-Type", "").startswith("text/html"):
                continue
            read = page_read(answer.text(), page)
            for form in read.forms:
                if _ours(form.path):
                    forms.setdefault(form.signature(), form)
            for link in read.links:
                if _ours(link.path):
                    links.setdefault(link.signature(), link)
            for path in sorted(read.paths - seen):
                name = _route_name(path)
                if _ours(path) and resolve(path).kwargs and per_route.get(name or "", 0) < PAGES_PER_ROUTE:
                    per_route[name or ""] = per_route.get(name or "", 0) + 1
                    seen.add(path)
                    pending.append(path)
        return list(forms.values()), list(links.values())

    def fuzz(self, client: Client, persona: str, turn: int, form: Form, foreign: dict[str, int]) -> None:
        baseline = send(client, form.method, form.action, form.values)
        self.requests += 1
        if baseline.status >= 500:
            problem = f"answered {baseline.status} unchanged ({baseline.exception()})"
            self.findings.append(Finding(persona, form.method, form.path, "(the form as shown)", "", problem))
            return
        if baseline.status in (403, 404, 405):
            return  # the persona sees the form but may not use it: the access matrix's business
        if form.method == "post":
            self.reached.add(_route_name(form.path) or form.path)
        key = (form.signature(), *(name for name, _ in form.values))
        everything = key not in self.fuzzed
        self.fuzzed.add(key)
        for name in dict.fromkeys(form.names):
            for n, (what, value) in enumerate(junk_for(form, name, foreign)):
                if not everything and n < len(JUNK) and (n + turn) % LATER_PERSONA_SHARE:
                    continue
                answer = send(client, form.method, form.action, form.with_value(name, value))
                self.requests += 1
                problem = _judge(baseline, answer, name)
                if problem:
                    self.findings.append(Finding(persona, form.method, form.path, name, what, problem))


def _link_form(link: Link) -> Form:
    return Form("get", link.path, link.params, [n for n, _ in link.params])


def _posted_by_someone() -> set[str]:
    """URL names that take a POST from at least one persona, by docs/access.md."""
    usable = {"200", "302", "400"}
    return {row[1] for row in table("## Pages and endpoints") if row[2] == "POST" and usable & set(row[3:])}


def test_junk_in_any_form_field_is_refused_with_a_4xx_naming_it_and_nothing_stored(world: World) -> None:
    started = time.monotonic()
    run = Fuzz()
    start = _start_pages(world)
    for turn, persona in enumerate(PERSONAS):
        user = world.people[persona]
        client = _signed_in(user)
        forms, links = run.discover(client, persona, start)
        for form in [*forms, *(_link_form(link) for link in links)]:
            run.fuzz(client, persona, turn, form, _foreign_ids(world, user))

    print(f"form fuzz: {run.requests} requests in {time.monotonic() - started:.0f} s")
    report = "\n".join(sorted({str(f) for f in run.findings}))
    if report:
        pytest.fail(f"{len(run.findings)} findings:\n{report}", pytrace=False)
    unreached = sorted(_posted_by_someone() - run.reached - NOT_REACHED.keys())
    assert unreached == [], f"POST endpoints that no form on any page sent a field to: {unreached}"
    assert run.requests > 2000, "the fuzzer sent too little: is the page discovery broken?"
