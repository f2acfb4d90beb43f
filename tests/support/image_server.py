"""A local HTTP server that serves images and misbehaves on purpose, for the media fetcher's tests: redirects,
oversized and mislabelled bodies, slow drips. It records every request's path and Host header."""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image, ImageDraw


def picture(seed: int = 0, size: tuple[int, int] = (256, 192), fmt: str = "PNG") -> bytes:
    """A drawn picture with structure at several scales (a flat image has no perceptual hash worth the name)."""
    image = Image.new("RGB", size, (30 + seed * 40 % 200, 60, 90))
    draw = ImageDraw.Draw(image)
    w, h = size
    for k in range(12):
        x = (k * 37 + seed * 53) % w
        y = (k * 61 + seed * 29) % h
        colour = ((k * 80 + seed * 17) % 256, (k * 30 + seed * 90) % 256, (k * 150 + seed * 5) % 256)
        draw.ellipse([x - 30, y - 20, x + 30 + k * 3, y + 20 + k * 2], fill=colour)
        draw.rectangle([(x * 3) % w, (y * 5) % h, (x * 3) % w + 25, (y * 5) % h + 40], outline=colour, width=4)
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels around almost no data: a pixel bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


Route = Callable[[BaseHTTPRequestHandler], None]


class ImageServer:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        self.in_flight = 0  # requests being answered now, and the most there ever were at once
        self.most_in_flight = 0
        self._count = threading.Lock()
        self.routes: dict[str, Route] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Host", "")))
                route = server.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with server._count:
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        route(self)
                finally:
                    with server._count:
                        server.in_flight -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def body(self, path: str, data: bytes, content_type: str = "image/png") -> None:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        self.routes[path] = route

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()

        self.routes[path] = route

    def declared_length(self, path: str, length: int) -> None:
        """Says the body is ``length`` bytes, then sends a little and stops."""

        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.send_header("Content-Length", str(length))
            h.end_headers()
            h.wfile.write(b"\x89PNG\r\n\x1a\n")

        self.routes[path] = route

    def endless(self, path: str) -> None:
        """No Content-Length: PNG bytes then zeros until the client hangs up."""

        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(b"\x89PNG\r\n\x1a\n")
            block = b"\x00" * 65536
            for _ in range(10_000):
                h.wfile.write(block)

        self.routes[path] = route

    def gated(self, path: str, data: bytes, gate: threading.Barrier) -> None:
        """Answers ``data`` once ``gate.parties`` requests are waiting at the gate together; a 503 if they are
        not all there within 10 s. Only a client fetching that many at once gets the images."""

        def route(h: BaseHTTPRequestHandler) -> None:
            try:
                gate.wait(timeout=10)
            except threading.BrokenBarrierError:
                h.send_response(503)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        self.routes[path] = route

    def drip(self, path: str, *, headers_first: bool = True, pause: float = 0.05) -> None:
        """One byte at a time, each well within any per-read timeout, for far longer than the total cap."""

        def route(h: BaseHTTPRequestHandler) -> None:
            if headers_first:
                h.send_response(200)
                h.send_header("Content-Type", "image/png")
                h.send_header("Content-Length", "100000")
                h.end_headers()
                h.wfile.flush()
                payload = b"\x89PNG\r\n\x1a\n" + b"\x00" * 99_992
            else:
                payload = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n" + b"X-Pad: " + b"a" * 10_000
            deadline = time.monotonic() + 30
            for byte in payload:
                if time.monotonic() > deadline:
                    break
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(pause)

        self.routes[path] = route
