"""One address in front of several web processes, as a load balancer puts them: a threaded TCP proxy that hands
each new connection to the next backend in turn (round robin), skipping one that refuses the connection, and
counts the connections each backend answered."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Sequence


class RoundRobinProxy:
    """Listens on 127.0.0.1 (a free port) and relays bytes both ways between a client and one backend per
    connection. ``answered[i]`` counts the connections on which backend ``i`` sent something back."""

    def __init__(self, backends: Sequence[tuple[str, int]]) -> None:
        if not backends:
            raise ValueError("a proxy needs at least one backend")
        self.backends = list(backends)
        self.answered = [0] * len(self.backends)
        self.refused = [0] * len(self.backends)
        self._next = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)

    def start(self) -> RoundRobinProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> RoundRobinProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="proxy-conn", daemon=True).start()

    def _upstream(self) -> tuple[int, socket.socket] | None:
        """The next backend in turn that accepts a connection (a dead one is skipped, as a balancer's health
        check would); None when none does."""
        for _ in range(len(self.backends)):
            with self._lock:
                index = self._next
                self._next = (self._next + 1) % len(self.backends)
            try:
                return index, socket.create_connection(self.backends[index], timeout=5)
            except OSError:
                with self._lock:
                    self.refused[index] += 1
        return None

    def _serve(self, client: socket.socket) -> None:
        picked = self._upstream()
        if picked is None:
            client.close()
            return
        index, upstream = picked
        upstream.settimeout(None)
        answered = threading.Event()
        back = threading.Thread(target=_pump, args=(upstream, client, answered), name="proxy-back", daemon=True)
        back.start()
        _pump(client, upstream, threading.Event())
        back.join()
        if answered.is_set():
            with self._lock:
                self.answered[index] += 1
        for s in (client, upstream):
            s.close()


def _pump(source: socket.socket, target: socket.socket, moved: threading.Event) -> None:
    """Copy ``source`` to ``target`` until ``source`` ends, then end ``target``'s writing side."""
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            moved.set()
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)
