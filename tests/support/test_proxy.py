"""The round-robin proxy the scale-out run puts in front of its web processes: connections alternate between the
backends, a backend that refuses connections is skipped, and each backend's answered connections are counted."""

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support.proxy import RoundRobinProxy
from tests.support.servers import free_port


@contextmanager
def named_server(name: str) -> Iterator[int]:
    """A tiny HTTP server answering every GET with its name; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_connections_alternate_between_backends_and_each_backend_counts_what_it_answered():
    with (
        named_server("one") as p1,
        named_server("two") as p2,
        RoundRobinProxy([("127.0.0.1", p1), ("127.0.0.1", p2)]) as proxy,
    ):
        answers = [httpx.get(proxy.base, timeout=10).text for _ in range(6)]

    assert answers == ["one", "two"] * 3
    assert proxy.answered == [3, 3]
    assert proxy.refused == [0, 0]


def test_a_backend_that_refuses_connections_is_skipped():
    dead = free_port()  # nothing listens there
    with named_server("alive") as port, RoundRobinProxy([("127.0.0.1", dead), ("127.0.0.1", port)]) as proxy:
        answers = [httpx.get(proxy.base, timeout=10).text for _ in range(4)]

    assert answers == ["alive"] * 4
    assert proxy.answered == [0, 4]
    assert proxy.refused[0] >= 2


def test_a_proxy_needs_a_backend():
    with pytest.raises(ValueError, match="at least one backend"):
        RoundRobinProxy([])
