"""Webhook signatures: ``X-Signature: t=<unix ts>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.

Standard library only, so a receiver can copy this file as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Signature"


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def webhook_signature(secret: str, body: str | bytes, *, timestamp: int | None = None) -> str:
    """The ``X-Signature`` header value for ``body`` signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    raw = body.encode() if isinstance(body, str) else body
    return f"t={t},v1={_digest(secret, t, raw)}"


def webhook_signature_verify(
    secret: str, header: str, body: str | bytes, tolerance: int = 300, *, now: float | None = None
) -> bool:
    """True when ``header`` signs exactly ``body`` with ``secret`` and its timestamp is within ``tolerance``
    seconds of now (which refuses replays of an old request).

    Pass the body as received, before any JSON parsing: re-serialising changes the bytes. More than one
    ``v1`` is accepted, so a sender may sign with an old and a new secret while a secret is rotated.
    """
    if not secret:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else body
    expected = _digest(secret, timestamp, raw)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
