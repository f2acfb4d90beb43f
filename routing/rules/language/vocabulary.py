"""What a condition may name: item fields, ``score.<category>`` and ``metadata.<key>``, each with its type.

The checker looks every name up here, so an unknown name is refused with a suggestion instead of reading as missing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from routing.rules.language.tree import Type


def score_key(raw: str) -> str:
    """The name a score goes by in rules: ``sexual/minors`` -> ``sexual_minors``, ``policy:spam`` -> ``policy_spam``."""
    return re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")


@dataclass(frozen=True)
class Vocabulary:
    """The names a condition may use and their types.

    ``fields`` maps a full name (``kind``, ``author.prior_violations``) to its type. ``scores`` holds the
    score names (already through :func:`score_key`) under ``score.``; every ``metadata.<key>`` is ANY.
    """

    fields: Mapping[str, Type]
    scores: frozenset[str]
    descriptions: Mapping[str, str] = field(default_factory=dict)

    def lookup(self, parts: Sequence[str]) -> tuple[str, Type] | str:
        """The row key and type for a dotted name, or an error message."""
        head = parts[0]
        if head == "score":
            if len(parts) != 2:
                return 'a score is written score.<category>, e.g. score.hate or score["sexual/minors"]'
            key = score_key(parts[1])
            if key not in self.scores:
                return f"unknown score '{parts[1]}'{_did_you_mean(key, self.scores)}"
            return f"score.{key}", Type.NUMBER
        if head == "metadata":
            if len(parts) != 2 or not parts[1]:
                return 'metadata is read one key at a time: metadata.<key> or metadata["some-key"]'
            return f"metadata.{parts[1]}", Type.ANY
        full = ".".join(parts)
        if full in self.fields:
            return full, self.fields[full]
        known = {*self.fields, "score.<category>", "metadata.<key>"}
        return f"unknown name '{full}'{_did_you_mean(full, known)}"

    def names(self) -> list[tuple[str, str, str]]:
        """(name, type, description) for the editor's reference panel."""
        rows = [(name, str(kind), self.descriptions.get(name, "")) for name, kind in sorted(self.fields.items())]
        rows += [(f"score.{s}", str(Type.NUMBER), "classifier probability, 0 to 1") for s in sorted(self.scores)]
        rows.append(("metadata.<key>", str(Type.ANY), "a value the integrating service sent"))
        return rows


def _did_you_mean(name: str, known: Sequence[str] | frozenset[str] | set[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""
