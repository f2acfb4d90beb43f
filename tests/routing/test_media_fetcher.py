"""The media fetcher's refusals, against a real local HTTP server. The server listens on 127.0.0.1, which the
fetcher refuses by default; a test reaches it only by naming it in an explicit allow-list (AddressPolicy)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from routing.scoring.media.fetcher import AddressPolicy, FetchLimits, MediaRefused, media_fetch, media_log_refusal
from routing.scoring.media.store import image_decode
from tests.support.image_server import ImageServer, picture, png_declaring

LOOPBACK = ipaddress.ip_address("127.0.0.1")
PNG = picture(1)


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    with ImageServer() as s:
        s.body("/ok.png", PNG)
        s.body("/mislabelled.png", PNG, content_type="text/html")
        s.body("/page.html", b"<html><body>not a picture</body></html>", content_type="image/png")
        s.body("/svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "image/svg+xml")
        s.body("/bomb.png", png_declaring(100_000, 100_000))
        s.redirect("/to-ok", "/ok.png")
        s.redirect("/to-metadata", "http://169.254.169.254/latest/meta-data/")
        s.redirect("/to-loopback-name", "http://localhost/ok.png")
        s.redirect("/to-file", "file:///etc/passwd")
        for n in range(5):
            s.redirect(f"/hop{n}", f"/hop{n + 1}")
        s.redirect("/hop5", "/ok.png")
        s.declared_length("/declared-huge", 50 * 1024 * 1024)
        s.endless("/endless")
        s.drip("/drip-body")
        s.drip("/drip-headers", headers_first=False)
        yield s


def trusting(*names: str) -> AddressPolicy:
    """Resolves the given names (and 127.0.0.1) to the test server, and allows that one address."""

    def resolve(host: str, port: int) -> Sequence[str]:
        if host in (*names, "127.0.0.1"):
            return ["127.0.0.1"]
        raise socket.gaierror("unknown name in test")

    return AddressPolicy(resolver=resolve, allowed=frozenset({LOOPBACK}))


def refusal(url: str, policy: AddressPolicy | None = None, limits: FetchLimits | None = None) -> str:
    with pytest.raises(MediaRefused) as caught:
        media_fetch(url, policy=policy, limits=limits)
    return caught.value.reason


def test_an_allowed_server_serves_the_image_with_the_type_from_its_bytes(server: ImageServer) -> None:
    fetched = media_fetch(server.url("/ok.png"), policy=trusting())
    assert fetched.data == PNG
    assert fetched.content_type == "image/png"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 (an answer to refuse, not an address to bind)
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",  # AWS's IPv6 metadata
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
    ],
)
def test_a_name_resolving_to_a_private_address_is_refused_without_connecting(server: ImageServer, address: str) -> None:
    before = len(server.requests)
    policy = AddressPolicy(resolver=lambda host, port: [address])
    assert refusal("http://images.example.test/x.png", policy) == "private_address"
    assert len(server.requests) == before


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://[::1]/x.png",
        "http://2130706433/x.png",  # 127.0.0.1 as one decimal number
        "http://0x7f000001/x.png",
        "http://localhost/x.png",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_loopback_and_metadata_addresses_are_refused_by_default(url: str) -> None:
    assert refusal(url) in ("private_address", "dns_failed")


def test_the_default_policy_refuses_the_local_test_server_itself(server: ImageServer) -> None:
    before = len(server.requests)
    assert refusal(server.url("/ok.png")) == "private_address"
    assert len(server.requests) == before


def test_one_private_answer_among_public_ones_refuses_the_name() -> None:
    policy = AddressPolicy(resolver=lambda host, port: ["93.184.216.34", "10.0.0.7"])
    assert refusal("http://images.example.test/x.png", policy) == "private_address"


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x.png", "gopher://example.com/", "javascript:alert(1)", "x.png"]
)
def test_only_http_and_https_are_fetched(url: str) -> None:
    assert refusal(url) == "bad_scheme"


def test_credentials_in_the_address_are_refused() -> None:
    assert refusal("http://user:pass@images.example.test/x.png", trusting("images.example.test")) == "bad_url"


def test_a_redirect_to_a_metadata_address_is_refused(server: ImageServer) -> None:
    assert refusal(server.url("/to-metadata"), trusting()) == "private_address"


def test_each_redirect_hop_is_resolved_and_checked_again(server: ImageServer) -> None:
    answers = {"127.0.0.1": ["127.0.0.1"], "localhost": ["10.0.0.5"]}
    policy = AddressPolicy(resolver=lambda host, port: answers[host], allowed=frozenset({LOOPBACK}))
    assert media_fetch(server.url("/to-ok"), policy=policy).redirects == 1
    assert refusal(server.url("/to-loopback-name"), policy) == "private_address"


def test_a_redirect_to_another_scheme_is_refused(server: ImageServer) -> None:
    assert refusal(server.url("/to-file"), trusting()) == "bad_scheme"


def test_more_than_the_redirect_cap_is_refused(server: ImageServer) -> None:
    assert refusal(server.url("/hop0"), trusting()) == "too_many_redirects"
    assert media_fetch(server.url("/hop3"), policy=trusting()).redirects == 3


def test_dns_is_resolved_once_and_the_connection_goes_to_the_checked_address(
    server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that answers a public address first and a private one after. The fetcher asks once
    per hop, connects to what it checked, and never lets the HTTP client resolve the name again."""
    answers = iter([["127.0.0.1"], ["10.0.0.1"], ["10.0.0.1"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return next(answers)

    def no_second_lookup(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the HTTP client resolved the name again")

    monkeypatch.setattr(socket, "getaddrinfo", no_second_lookup)
    policy = AddressPolicy(resolver=rebinding, allowed=frozenset({LOOPBACK}))
    fetched = media_fetch(server.url("/ok.png", host="images.example.test"), policy=policy)
    assert fetched.data == PNG
    assert calls == ["images.example.test"]
    # The name travelled in the Host header only.
    assert server.requests[-1] == ("/ok.png", f"images.example.test:{server.port}")


def test_a_rebinding_name_is_refused_on_the_hop_where_it_turns_private(server: ImageServer) -> None:
    answers = iter([["127.0.0.1"], ["192.168.0.10"]])
    policy = AddressPolicy(resolver=lambda host, port: next(answers), allowed=frozenset({LOOPBACK}))
    assert refusal(server.url("/to-ok", host="images.example.test"), policy) == "private_address"


def test_an_oversized_content_length_is_refused_before_the_body(server: ImageServer) -> None:
    limits = FetchLimits(max_bytes=1024 * 1024, max_seconds=5)
    assert refusal(server.url("/declared-huge"), trusting(), limits) == "too_large"


def test_a_body_past_the_cap_without_a_content_length_is_cut_while_streaming(server: ImageServer) -> None:
    limits = FetchLimits(max_bytes=256 * 1024, max_seconds=10)
    assert refusal(server.url("/endless"), trusting(), limits) == "too_large"


def test_a_slow_drip_body_is_cut_at_the_total_time_cap(server: ImageServer) -> None:
    # Each byte comes well inside any per-read timeout: only the total cap stops it.
    assert refusal(server.url("/drip-body"), trusting(), FetchLimits(max_seconds=0.5)) == "too_slow"


def test_slow_drip_headers_are_cut_at_the_total_time_cap(server: ImageServer) -> None:
    assert refusal(server.url("/drip-headers"), trusting(), FetchLimits(max_seconds=0.5)) == "too_slow"


@pytest.mark.parametrize("path", ["/page.html", "/svg"])
def test_the_type_comes_from_the_bytes_not_the_header(server: ImageServer, path: str) -> None:
    assert refusal(server.url(path), trusting()) == "not_an_image"


def test_a_real_image_with_a_wrong_header_is_still_an_image(server: ImageServer) -> None:
    assert media_fetch(server.url("/mislabelled.png"), policy=trusting()).content_type == "image/png"


def test_a_pixel_bomb_is_refused_before_its_pixels_are_decoded(server: ImageServer) -> None:
    fetched = media_fetch(server.url("/bomb.png"), policy=trusting())
    with pytest.raises(MediaRefused) as caught:
        image_decode(fetched.data, max_pixels=40_000_000)
    assert caught.value.reason == "too_many_pixels"


def test_truncated_image_bytes_are_refused_as_undecodable() -> None:
    with pytest.raises(MediaRefused) as caught:
        image_decode(PNG[: len(PNG) // 2])
    assert caught.value.reason == "undecodable"


def test_refusals_name_no_path_query_or_bytes(server: ImageServer, caplog: pytest.LogCaptureFixture) -> None:
    url = server.url("/page.html?token=s3cr3t-token")
    with pytest.raises(MediaRefused) as caught:
        media_fetch(url, policy=trusting())
    with caplog.at_level(logging.INFO, logger="routing.scoring.media"):
        media_log_refusal(url, caught.value)
    assert "s3cr3t" not in caplog.text
    assert "page.html" not in caplog.text
    assert "127.0.0.1 (not_an_image)" in caplog.text
    assert "s3cr3t" not in str(caught.value)
