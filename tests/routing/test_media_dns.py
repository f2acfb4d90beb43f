"""Name lookups for the media fetcher: a name that does not resolve (an error, or a DNS server that never answers)
costs one capped lookup per name and period, not one per address, so it cannot hold a triage worker for seconds
per item; what is remembered expires; the address check still applies to remembered answers. And the benchmark's
allow-list of loopback endpoints (MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS): off by default, loopback and one port only.

No test here measures time: a lookup that "never answers" blocks on an event the test releases at the end, and
expiry runs on a clock the test moves."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from queues.models import ReviewItem
from routing.scoring.media import services
from routing.scoring.media.fetcher import (
    AddressPolicy,
    CachingResolver,
    DnsFailed,
    MediaRefused,
    local_endpoints_parse,
    media_fetch,
)
from routing.scoring.media.models import MediaAsset, MediaStatus
from routing.scoring.pipeline import items_score
from tests.support.fake_openai import FakeOpenAI
from tests.support.image_server import ImageServer, picture

PNG = picture(3)


class Counting:
    """A resolver that counts its calls: fails, answers, or blocks until released, as told."""

    def __init__(self, answers: Sequence[str] = (), *, fail: bool = False, block: bool = False) -> None:
        self.answers, self.fail = list(answers), fail
        self.calls: list[str] = []
        self.called = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self, host: str, port: int) -> Sequence[str]:
        with self._lock:
            self.calls.append(host)
        self.called.set()
        self.release.wait(60)
        if self.fail:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hanging() -> Iterator[Counting]:
    """A DNS server that drops every query: the lookup never returns until the test ends."""
    resolver = Counting(fail=True, block=True)
    yield resolver
    resolver.release.set()


def media_item(n: int, *urls: str) -> ReviewItem:
    return ReviewItem.objects.create(
        source="test", external_id=f"dns-{n}", text="look", media_urls=list(urls), received_at=timezone.now()
    )


# --- the resolver alone ---------------------------------------------------------------------------------


def test_a_failure_is_remembered_until_it_expires() -> None:
    clock, inner = Clock(), Counting(fail=True)
    resolver = CachingResolver(inner, timeout=30, ttl=60, failure_ttl=30, clock=clock)

    for _ in range(5):
        with pytest.raises(DnsFailed) as failed:
            resolver.resolve("cdn.example.com", 443)
        assert failed.value.why == "gaierror"
    assert inner.calls == ["cdn.example.com"]

    clock.now += 29.5
    with pytest.raises(DnsFailed):
        resolver.resolve("CDN.example.com.", 443)  # the same name
    assert len(inner.calls) == 1

    clock.now += 1  # past failure_ttl: asked again, and this time the name resolves
    inner.fail, inner.answers = False, ["93.184.215.14"]
    assert resolver.resolve("cdn.example.com", 443) == ("93.184.215.14",)
    assert len(inner.calls) == 2


def test_answers_are_remembered_until_they_expire() -> None:
    clock, inner = Clock(), Counting(["93.184.215.14"])
    resolver = CachingResolver(inner, timeout=30, ttl=60, failure_ttl=5, clock=clock)

    assert {resolver.resolve("cdn.example.com", 443) for _ in range(10)} == {("93.184.215.14",)}
    assert len(inner.calls) == 1
    clock.now += 61
    assert resolver.resolve("cdn.example.com", 443) == ("93.184.215.14",)
    assert len(inner.calls) == 2
    assert resolver.resolve("cdn.example.com", 80) == ("93.184.215.14",)  # another port is another lookup
    assert len(inner.calls) == 3


def test_a_lookup_that_never_answers_is_cut_and_remembered_as_failing(hanging: Counting) -> None:
    resolver = CachingResolver(hanging, timeout=0.05, failure_ttl=30)

    with pytest.raises(DnsFailed) as first:
        resolver.resolve("cdn.example.com", 443)
    assert first.value.why == "timeout"
    for _ in range(20):  # remembered: no second lookup, no second wait
        with pytest.raises(DnsFailed) as again:
            resolver.resolve("cdn.example.com", 443)
        assert again.value.why == "timeout"
    assert hanging.calls == ["cdn.example.com"]


def test_callers_of_the_same_name_share_one_lookup() -> None:
    inner = Counting(["93.184.215.14"], block=True)
    resolver = CachingResolver(inner, timeout=60)
    results: list[tuple[str, ...]] = []

    def ask() -> None:
        results.append(resolver.resolve("cdn.example.com", 443))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    assert inner.called.wait(10)
    inner.release.set()
    for t in threads:
        t.join(10)

    assert results == [("93.184.215.14",)] * 8
    assert inner.calls == ["cdn.example.com"]


def test_a_caller_short_of_time_does_not_mark_the_name_as_failing() -> None:
    """A fetch with little time left gives up on the lookup; the name is not remembered as failing for that."""
    inner = Counting(["93.184.215.14"], block=True)
    resolver = CachingResolver(inner, timeout=60, failure_ttl=30)

    with pytest.raises(DnsFailed):
        resolver.resolve("cdn.example.com", 443, timeout=0.01)
    inner.release.set()

    assert resolver.resolve("cdn.example.com", 443) == ("93.184.215.14",)
    assert inner.calls == ["cdn.example.com"]


def test_remembered_entries_are_bounded() -> None:
    clock, inner = Clock(), Counting(["93.184.215.14"])
    resolver = CachingResolver(inner, ttl=60, max_entries=3, clock=clock)
    for n in range(5):
        resolver.resolve(f"h{n}.example.com", 443)
    resolver.resolve("h4.example.com", 443)  # kept: the newest
    resolver.resolve("h0.example.com", 443)  # dropped: the oldest
    assert inner.calls == [*(f"h{n}.example.com" for n in range(5)), "h0.example.com"]


# --- through the fetcher ----------------------------------------------------------------------------------


def test_a_remembered_answer_is_still_checked_on_every_fetch() -> None:
    inner = Counting(["10.0.0.7"])
    policy = AddressPolicy(resolver=CachingResolver(inner))
    for _ in range(3):
        with pytest.raises(MediaRefused) as refused:
            media_fetch("https://images.example.com/a.jpg", policy=policy)
        assert refused.value.reason == "private_address"
    assert len(inner.calls) == 1


def test_a_hanging_lookup_is_refused_as_dns_failed_within_the_fetch(hanging: Counting) -> None:
    policy = AddressPolicy(resolver=CachingResolver(hanging, timeout=0.05))
    with pytest.raises(MediaRefused) as refused:
        media_fetch("https://cdn.example.com/a.jpg", policy=policy)
    assert refused.value.reason == "dns_failed"


# --- a batch, through the service and the scoring pipeline --------------------------------------------------


@pytest.mark.django_db
def test_a_name_that_never_resolves_costs_one_lookup_for_the_whole_batch(
    settings: Any, monkeypatch: pytest.MonkeyPatch, hanging: Counting
) -> None:
    """30 items on a host whose DNS never answers, 4 fetches at once: one lookup, every address refused."""
    settings.MEDIA_FETCH_ENABLED, settings.MEDIA_FETCH_CONCURRENCY = True, 4
    resolver = CachingResolver(hanging, timeout=0.05, failure_ttl=30)
    monkeypatch.setattr(services, "media_resolver", lambda: resolver)
    items = [media_item(n, f"https://cdn.example.com/m/{n}.jpg") for n in range(30)]

    assert services.items_media_process(items) == 30

    assert hanging.calls == ["cdn.example.com"]
    refused = MediaAsset.objects.filter(item__in=items, status=MediaStatus.REFUSED, refusal="dns_failed")
    assert refused.count() == 30


@pytest.mark.django_db
def test_scoring_goes_on_with_one_lookup_for_a_failing_name_across_batches(
    settings: Any, monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI
) -> None:
    settings.MEDIA_FETCH_ENABLED = True
    settings.SCORING_DEFAULT_CHAIN = ["openai_moderation"]
    inner = Counting(fail=True)
    resolver = CachingResolver(inner, failure_ttl=30)
    monkeypatch.setattr(services, "media_resolver", lambda: resolver)
    first = [media_item(n, f"https://cdn.example.com/m/{n}.jpg") for n in range(10)]
    second = [media_item(n + 10, f"https://cdn.example.com/m/{n}.jpg") for n in range(10)]

    reports = [items_score(item_ids=[i.pk for i in first]), items_score(item_ids=[i.pk for i in second])]

    assert [r.scored for r in reports] == [{"openai_moderation": 10}] * 2
    assert inner.calls == ["cdn.example.com"]
    assert MediaAsset.objects.filter(refusal="dns_failed").count() == 20


# --- the benchmark's allow-list ------------------------------------------------------------------------------


def test_local_endpoints_take_loopback_address_and_port_only() -> None:
    assert local_endpoints_parse(["127.0.0.1:8765", " [::1]:9000 ", ""]) == {
        (ipaddress.ip_address("127.0.0.1"), 8765),
        (ipaddress.ip_address("::1"), 9000),
    }
    for bad in ("10.0.0.1:80", "169.254.169.254:80", "localhost:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:x"):
        with pytest.raises(ValueError, match=r"loopback|address:port"):
            local_endpoints_parse([bad])


def test_the_allow_list_is_empty_by_default_and_refuses_loopback(settings: Any) -> None:
    assert settings.MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS == []
    with ImageServer() as server:
        server.body("/ok.png", PNG)
        with pytest.raises(MediaRefused) as refused:
            media_fetch(server.url("/ok.png"), policy=services.address_policy())
        assert refused.value.reason == "private_address"
        assert server.requests == []


def test_an_allowed_endpoint_is_reached_and_only_on_its_port(settings: Any) -> None:
    with ImageServer() as server, ImageServer() as other:
        server.body("/ok.png", PNG)
        other.body("/ok.png", PNG)
        settings.MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS = [f"127.0.0.1:{server.port}"]

        assert media_fetch(server.url("/ok.png"), policy=services.address_policy()).data == PNG
        with pytest.raises(MediaRefused) as refused:
            media_fetch(other.url("/ok.png"), policy=services.address_policy())
        assert refused.value.reason == "private_address"
        assert other.requests == []
        with pytest.raises(MediaRefused) as metadata:
            media_fetch("http://169.254.169.254/latest/meta-data/", policy=services.address_policy())
        assert metadata.value.reason == "private_address"


def test_a_bad_allow_list_entry_stops_the_fetch_loudly(settings: Any) -> None:
    settings.MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS = ["10.1.2.3:80"]
    with pytest.raises(ImproperlyConfigured, match="MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS"):
        services.address_policy()
