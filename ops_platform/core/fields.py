"""Model fields that keep attacker-controlled text exactly as sent, U+0000 (NUL) included.

PostgreSQL's text and jsonb cannot hold U+0000. These fields escape it reversibly on the way to the database
and back: NUL is stored as ESC + "0" and the escape character itself (U+E000, from the Private Use Area) as
ESC + ESC, so every string, including one that already contains U+E000, comes back exactly as it went in.
SQL that reads the columns directly sees the escaped form (only NUL and U+E000 differ): decode what it reads
with ``nul_decode`` / ``nul_decode_json``, as the backtests' PostgreSQL loader does.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import models

ESCAPE = "\ue000"
_ENCODE = {"\x00": ESCAPE + "0", ESCAPE: ESCAPE + ESCAPE}
_NEEDS_ENCODING = re.compile("[\x00\ue000]")
_ENCODED = re.compile(ESCAPE + "(.)", re.DOTALL)


def nul_encode(value: str) -> str:
    return _NEEDS_ENCODING.sub(lambda m: _ENCODE[m.group(0)], value)


def nul_decode(value: str) -> str:
    if ESCAPE not in value:
        return value
    return _ENCODED.sub(lambda m: "\x00" if m.group(1) == "0" else m.group(1), value)


def nul_decode_json(value: Any) -> Any:
    """A JSON value read past the field (raw SQL) as the field would have given it."""
    return _walk(value, nul_decode)


def _walk(value: Any, convert: Any) -> Any:
    """Apply ``convert`` to every string in a JSON value, object keys included."""
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, dict):
        return {convert(k) if isinstance(k, str) else k: _walk(v, convert) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, convert) for v in value]
    return value


class NulSafeTextField(models.TextField):
    """A ``TextField`` whose values may contain U+0000 (the column is an ordinary ``text``)."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return nul_encode(value) if isinstance(value, str) else value

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return nul_decode(value) if isinstance(value, str) else value


class NulSafeJSONField(models.JSONField):
    """A ``JSONField`` whose strings and keys may contain U+0000 (the column is an ordinary ``jsonb``).

    Lookups into the JSON (``metadata__key``) see the escaped form; only keys with NUL or U+E000 differ.
    """

    def get_prep_value(self, value: Any) -> Any:
        return _walk(super().get_prep_value(value), nul_encode)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return _walk(super().from_db_value(value, expression, connection), nul_decode)
