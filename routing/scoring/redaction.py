"""PII redaction for text that leaves the machine (external classifiers).

Submitted content is hostile and full of personal data, so every text sent to a third party goes through
:func:`redact` first. Each kind is one compiled regex pass whose callback validates the candidate (Luhn for cards,
octets for IPs, randomness for tokens), and the passes run in a fixed order so that the most specific kind claims a
span before a looser one can: URL tokens and secrets, then emails, cards, IPs and phones last (a card number is not
reported as a phone, a digit-rich token is not half-eaten by the phone pass). Replacements are readable placeholders
such as ``[EMAIL]``, so a classifier still sees that contact details were shared.

Patterns avoid backtracking traps (starts anchored by look-behinds, bounded repeats) because the input is
adversarial. Nothing here logs: neither the input nor the output text may reach a log.
"""

from __future__ import annotations

import bisect
import enum
import ipaddress
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from django.conf import settings

__all__ = ["PiiKind", "Redaction", "redact"]


class PiiKind(enum.StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CARD = "card"
    IP = "ip"
    URL_TOKEN = "url_token"  # noqa: S105 - a kind name, not a credential
    SECRET = "secret"  # noqa: S105 - a kind name, not a credential

    @property
    def placeholder(self) -> str:
        return f"[{self.name}]"


@dataclass(frozen=True)
class Redaction:
    """The redacted text and how many replacements of each kind were made (kinds that occurred only)."""

    # repr=False: a Redaction that ends up in a log line or a traceback must not carry the content with it.
    text: str = field(repr=False)
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# A pass takes text and returns the new text and the number of replacements it made.
_Pass = Callable[[str], tuple[str, int]]
_Replacer = Callable[[re.Match[str]], tuple[str, int]]

_PLACEHOLDERS = frozenset(kind.placeholder for kind in PiiKind)
_DIGIT_RUN = re.compile(r"\d+")
# Separators people put inside phone and card numbers: space, no-break spaces, dot, hyphen and its Unicode cousins.
_SEP = "[ .\\-\u00a0\u202f\u2010\u2011\u2013]"
_CARD_SEP = "[ \\-\u00a0\u202f\u2010\u2011\u2013]"


def _substitute(pattern: re.Pattern[str], replacer: _Replacer, needle: str | None = None) -> _Pass:
    """One ``pattern.sub`` whose callback may decline (return the match unchanged) and counts what it replaced.

    ``needle`` is a cheap substring test that lets most texts skip the regex altogether.
    """

    def run(text: str) -> tuple[str, int]:
        if needle is not None and needle not in text:
            return text, 0
        replaced = 0

        def one(match: re.Match[str]) -> str:
            nonlocal replaced
            new, count = replacer(match)
            replaced += count
            return new

        return pattern.sub(one, text), replaced

    return run


def _word_like(piece: str) -> bool:
    """A piece of a slug or identifier that reads as a word or a number, not as random characters."""
    if len(piece) <= 5 or piece.isdigit():
        return True
    return piece.isalpha() and (piece.islower() or piece.isupper() or piece.istitle())


_HEX = re.compile(r"[0-9A-Fa-f]+")


def _has_letter_and_digit(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


# --- URL tokens ---------------------------------------------------------------------------------------------

_URL = re.compile(r"(?i:https?)://[^\s<>\"'`{}|\\^]+")
_URL_TRAILING = ".,;:!?)*"
_URL_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.~%+=-]+")
_URL_PIECE_SEP = re.compile(r"[_.~%+=-]+")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_NAME_PARTS = re.compile(r"[^a-z0-9]+")
_PARAM_DELIMITERS = re.compile(r"([&;])")
# Parameter names whose value is a credential: matched against the name's parts (``reset_code`` -> reset, code)...
_SECRET_PARAM_PARTS = frozenset(
    {
        "token",
        "key",
        "apikey",
        "sig",
        "signature",
        "code",
        "auth",
        "session",
        "sid",
        "password",
        "pwd",
        "passwd",
        "pass",
        "secret",
        "jwt",
        "reset",
        "invite",
        "otp",
        "ticket",
        "credential",
        "credentials",
    }
)
# ...and, for words too long to collide with ordinary names, anywhere in it (``sessionid``, ``xsrftoken``).
_SECRET_PARAM_INFIXES = (
    "token",
    "secret",
    "passw",
    "signature",
    "session",
    "sessid",
    "apikey",
    "accesskey",
    "credential",
)


def _secret_param_name(name: str) -> bool:
    normalized = _CAMEL.sub(r"\1_\2", unquote(name)).lower()
    if any(part in _SECRET_PARAM_PARTS for part in _NAME_PARTS.split(normalized)):
        return True
    return any(infix in normalized for infix in _SECRET_PARAM_INFIXES)


def _token_like(value: str) -> bool:
    """A URL path segment or value that is a random token: >= 20 chars mixing letters and digits, not a slug.

    Slugs and file names (``samsung-galaxy-s24-ultra-512gb``, ``IMG_20240501_123456.jpg``) are made of words and
    numbers; tokens have long pieces of mixed characters, or are hex (UUIDs, digests) throughout.
    """
    if len(value) < 20 or not _URL_TOKEN_CHARS.fullmatch(value) or not _has_letter_and_digit(value):
        return False
    compact = _URL_PIECE_SEP.sub("", value)
    if len(compact) >= 20 and _HEX.fullmatch(compact):
        return True
    return not all(_word_like(piece) for piece in _URL_PIECE_SEP.split(value) if piece)


def _redact_params(params: str) -> tuple[str, int]:
    parts = _PARAM_DELIMITERS.split(params)
    replaced = 0
    for i in range(0, len(parts), 2):
        name, eq, value = parts[i].partition("=")
        if eq:
            if value and value not in _PLACEHOLDERS and (_secret_param_name(name) or _token_like(value)):
                parts[i] = f"{name}={PiiKind.URL_TOKEN.placeholder}"
                replaced += 1
        elif _token_like(name):
            parts[i] = PiiKind.URL_TOKEN.placeholder
            replaced += 1
    return "".join(parts), replaced


def _redact_path(path: str) -> tuple[str, int]:
    segments = path.split("/")
    replaced = 0
    for i, segment in enumerate(segments):
        head, semicolon, matrix = segment.partition(";")  # ;jsessionid=... path parameters
        if _token_like(head):
            head = PiiKind.URL_TOKEN.placeholder
            replaced += 1
        if semicolon:
            matrix, count = _redact_params(matrix)
            replaced += count
        segments[i] = head + semicolon + matrix
    return "/".join(segments), replaced


def _redact_path_and_query(value: str) -> tuple[str, int]:
    path, qmark, query = value.partition("?")
    path, replaced = _redact_path(path)
    if qmark:
        query, count = _redact_params(query)
        replaced += count
    return path + qmark + query, replaced


def _redact_url(match: re.Match[str]) -> tuple[str, int]:
    url = match.group(0)
    trailing = len(url) - len(url.rstrip(_URL_TRAILING))
    url, tail = (url[:-trailing], url[-trailing:]) if trailing else (url, "")
    scheme, _, rest = url.partition("://")
    authority_end = len(rest)
    for delimiter in "/?#":
        found = rest.find(delimiter)
        if found != -1:
            authority_end = min(authority_end, found)
    authority, rest = rest[:authority_end], rest[authority_end:]
    replaced = 0
    userinfo, at, host = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if at and colon and password and password not in _PLACEHOLDERS:
        authority = f"{user}:{PiiKind.URL_TOKEN.placeholder}@{host}"
        replaced += 1
    before_fragment, hash_, fragment = rest.partition("#")
    before_fragment, count = _redact_path_and_query(before_fragment)
    replaced += count
    if hash_:
        # Fragments carry OAuth implicit-flow tokens (#access_token=...) and SPA routes (#/reset/<token>).
        if "?" in fragment or "=" not in fragment:
            fragment, count = _redact_path_and_query(fragment)
        else:
            fragment, count = _redact_params(fragment)
        replaced += count
    return f"{scheme}://{authority}{before_fragment}{hash_}{fragment}{tail}", replaced


# --- secrets ------------------------------------------------------------------------------------------------

_SECRET = re.compile(
    r"""
    (?P<authz>(?i:\bauthorization)["']?[ \t]*[:=][ \t]*["']?(?:(?i:bearer|basic|token|digest)[ \t]+)?)
        (?P<authz_value>[^\s"'`<>]{4,})
  | (?P<bearer>(?i:\bbearer)[ \t]+)(?P<bearer_value>[A-Za-z0-9._~+/-]{8,}=*)
  | (?P<assign>(?<![A-Za-z0-9])
        (?i:password|passwd|passphrase|pwd|client[_-]?secret|secret[_-]?access[_-]?key|secret[_-]?key|secret
           |api[_-]?key|access[_-]?key|private[_-]?key|auth[_-]?token|access[_-]?token|refresh[_-]?token|token)
        ["']?[ \t]*[:=][ \t]*["']?)
        (?P<assign_value>[^\s"'`<>&]{4,})
  | (?P<key>(?<![A-Za-z0-9_-])
        (?:sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}
          |[sr]k_(?:live|test)_[A-Za-z0-9]{16,}
          |tsk_[A-Za-z0-9_-]{16,}
          |(?:AKIA|ASIA)[A-Z0-9]{16}
          |gh[pousr]_[A-Za-z0-9]{30,}
          |github_pat_[A-Za-z0-9_]{22,}
          |xox[baprs]-[A-Za-z0-9-]{10,}
          |eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*
        )(?![A-Za-z0-9_-]))
  | (?P<generic>(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-]))
    """,
    re.VERBOSE,
)
_SECRET_PIECE_SEP = re.compile(r"[_-]+")
_PASSWORD_NAME = re.compile(r"(?i)pass|pwd")
_VALUE_TRAILING = ".,;:!?)]}"


def _random_identifier(value: str) -> bool:
    """Upper, lower and digits, and not a title-cased file name or constant (``Quarterly_Report_Q3_2024_FINAL``)."""
    if not (any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value)):
        return False
    return not all(_word_like(piece) for piece in _SECRET_PIECE_SEP.split(value) if piece)


def _replace_value(prefix: str, value: str) -> tuple[str, int]:
    """Replace a ``name: value`` credential, keeping the name and the punctuation that ends a sentence."""
    core = value.rstrip(_VALUE_TRAILING)
    if len(core) < 4 or core in _PLACEHOLDERS or core.startswith("["):
        return prefix + value, 0
    return prefix + PiiKind.SECRET.placeholder + value[len(core) :], 1


def _redact_secret(match: re.Match[str]) -> tuple[str, int]:
    kind = match.lastgroup
    if kind == "authz_value":
        return _replace_value(match.group("authz"), match.group("authz_value"))
    if kind == "assign_value":
        name, value = match.group("assign"), match.group("assign_value")
        # Any password counts ("password: hunter"), but "Token: expired" is prose: other names need a credential-like
        # value, with a digit or long.
        if not _PASSWORD_NAME.search(name) and len(value) < 16 and not any(c.isdigit() for c in value):
            return match.group(0), 0
        return _replace_value(name, value)
    if kind == "bearer_value":
        token = match.group("bearer_value")
        # "Bearer of bad news" is prose; tokens carry digits.
        if not any(c.isdigit() for c in token):
            return match.group(0), 0
        return match.group("bearer") + PiiKind.SECRET.placeholder, 1
    value = match.group(0)
    if kind == "key":
        if value.startswith("sk-") and not _has_letter_and_digit(value[3:]):  # sk-learn-..., not a key
            return value, 0
        return PiiKind.SECRET.placeholder, 1
    if _random_identifier(value):
        return PiiKind.SECRET.placeholder, 1
    return value, 0


# --- emails -------------------------------------------------------------------------------------------------

# Local parts: ASCII plus Latin letters with diacritics (müller@, josé@); not every script, because Chinese and
# Japanese write "联系我john@x.com" without a space and the address must not swallow the words around it. Domains may
# be internationalised (münchen.de), top-level domains are ASCII.
_LOCAL = "A-Za-z0-9._%+\\-\u00c0-\u024f"
_EMAIL = re.compile(
    rf"(?<![{_LOCAL}])(?<![A-Za-z0-9]')"  # an apostrophe inside the local part (o'neil@) belongs to it
    rf"[{_LOCAL}]+(?:'[{_LOCAL}]+)*@(?:(?:[^\W_]|-){{1,63}}\.)+[A-Za-z]{{2,63}}(?![A-Za-z0-9])",
)


def _redact_email(match: re.Match[str]) -> tuple[str, int]:
    return PiiKind.EMAIL.placeholder, 1


# --- cards --------------------------------------------------------------------------------------------------

# Maximal runs of digit groups; which part of a run is a card is decided in Python (Luhn over group spans), so the
# regex has nothing to backtrack over.
_CARD_RUN = re.compile(rf"(?<![\w+])(?<!\d[.,])\d+(?:{_CARD_SEP}\d+)*")


# Luhn's doubling of a digit, with the digits of the product summed.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _card_spans(digits: str, group_ends: list[int]) -> list[tuple[int, int]]:
    """Spans of digit groups ``(first, last)`` that form a card: 13-19 digits, not starting with 0, passing Luhn.

    A card is the whole run, its head (``4111 1111 1111 1111 12 26``, an expiry date after it), the head of what
    follows a card, or its tail (``call 415 555 2671 4111 ...``), longest first: not any slice of a long run, which
    would make every long tracking or account number a lottery ticket at Luhn's one-in-ten odds. Prefix sums give a
    span's checksum in O(1) and bisection finds the spans of the right length, so a hostile run of 100k one-digit
    groups costs linear time. ``group_ends`` are cumulative digit counts.
    """
    values = [int(char) for char in digits]
    double_even = [0]  # checksum prefixes when the digits at even positions are the doubled ones
    double_odd = [0]
    for position, value in enumerate(values):
        if position % 2:
            double_even.append(double_even[-1] + value)
            double_odd.append(double_odd[-1] + _DOUBLED[value])
        else:
            double_even.append(double_even[-1] + _DOUBLED[value])
            double_odd.append(double_odd[-1] + value)

    def passes(start: int, stop: int) -> bool:
        # The rightmost digit is never doubled: the doubled ones are those of the other parity than stop - 1.
        sums = double_odd if (stop - 1) % 2 == 0 else double_even
        return values[start] != 0 and (sums[stop] - sums[start]) % 10 == 0

    group_starts = [0, *group_ends[:-1]]
    last_group = len(group_ends) - 1
    spans: list[tuple[int, int]] = []
    head = 0  # the group where the run, or what follows the previous card, begins
    first = 0
    while first <= last_group:
        start = group_starts[first]
        found = None
        if first == head:
            shortest = bisect.bisect_left(group_ends, start + 13, first)
            longest = bisect.bisect_right(group_ends, start + 19, first)
            found = next(
                (last for last in range(longest - 1, shortest - 1, -1) if passes(start, group_ends[last])), None
            )
        elif 13 <= group_ends[last_group] - start <= 19 and passes(start, group_ends[last_group]):
            found = last_group
        if found is None:
            first += 1
        else:
            spans.append((first, found))
            first = head = found + 1
    return spans


def _redact_card(match: re.Match[str]) -> tuple[str, int]:
    run = match.group(0)
    groups = [(g.start(), g.end()) for g in _DIGIT_RUN.finditer(run)]
    end = match.end()
    text = match.string
    after = text[end : end + 1]
    if after.isalnum() or after == "_" or (after in (".", ",") and text[end + 1 : end + 2].isdigit()):
        groups.pop()  # the last group runs into a word or a decimal: not part of a card
    digits = "".join(run[start:stop] for start, stop in groups)
    if len(digits) < 13:
        return run, 0
    group_ends = list(itertools.accumulate(stop - start for start, stop in groups))
    spans = _card_spans(digits, group_ends)
    if not spans:
        return run, 0
    pieces = []
    cursor = 0
    for first, last in spans:
        pieces.append(run[cursor : groups[first][0]])
        pieces.append(PiiKind.CARD.placeholder)
        cursor = groups[last][1]
    pieces.append(run[cursor:])
    return "".join(pieces), len(spans)


# --- IPs ----------------------------------------------------------------------------------------------------

_IP = re.compile(
    r"""
    (?<![\w.:])
    (?:
        (?P<v4>(?:[0-9]{1,3}\.){3}[0-9]{1,3})(?![\w]|\.[0-9])
      | (?P<v6>(?:[0-9A-Fa-f]{0,4}:){2,8}[0-9A-Fa-f]{0,4}(?:\.[0-9]{1,3}){0,3})(?P<zone>%[0-9A-Za-z]+)?(?![\w:])
    )
    """,
    re.VERBOSE,
)


def _redact_ip(match: re.Match[str]) -> tuple[str, int]:
    if match.group("v4") is not None:
        if all(int(octet) <= 255 for octet in match.group("v4").split(".")):
            return PiiKind.IP.placeholder, 1
        return match.group(0), 0
    candidate = match.group("v6")
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return match.group(0), 0
    # "::" and "::1" are not anyone's address, and "a::b"-like strings are mostly code (C++ scopes, Rust paths).
    if sum(1 for group in candidate.split(":") if group) < 2:
        return match.group(0), 0
    return PiiKind.IP.placeholder, 1


# --- phones -------------------------------------------------------------------------------------------------

_PHONE = re.compile(
    rf"""
    (?<![\w+])(?<!\d[.,/\-])
    (?:
        # +44 20 7946 0958, +1 (415) 555-2671, +44 (0)20 ..., 0049-30-1234567, +14155552671
        (?P<intl>(?:\+|00)\d+(?:{_SEP}?\(\d{{1,5}}\){_SEP}?\d+|[/ .\-\u00a0\u202f\u2010\u2011\u2013]\d+){{0,8}})
        (?!\w)
        # 415-555-2671, (415) 555 2671, 415.555.2671, 1-800-555-0199
      | (?P<us>(?:1{_SEP})?(?:\(\d{{3}}\){_SEP}?|\d{{3}}{_SEP})\d{{3}}{_SEP}\d{{4}})
        (?!\w)(?![.,/\-\u2010\u2011\u2013]\d)
        # national numbers with a trunk 0: 020 7946 0958, 030 1234567, 07700 900123
      | (?P<national>0\d{{2,4}}(?:[ /\-\u00a0\u202f\u2010\u2011\u2013]\d{{2,8}}){{1,3}})
        (?!\w)(?![.,/\-\u2010\u2011\u2013]\d)
    )
    """,
    re.VERBOSE,
)


def _redact_phone(match: re.Match[str]) -> tuple[str, int]:
    number = match.group(0)
    kind = match.lastgroup
    if kind == "us":
        return PiiKind.PHONE.placeholder, 1
    groups = list(_DIGIT_RUN.finditer(number))
    if kind == "national":
        digits = sum(g.end() - g.start() for g in groups)
        return (PiiKind.PHONE.placeholder, 1) if 9 <= digits <= 12 else (number, 0)
    # International: E.164 allows 15 digits after the prefix; cut trailing groups (a year, a count) beyond that.
    prefix = 2 if number.startswith("00") else 0
    digits = -prefix
    cut = None
    for group in groups:
        digits += group.end() - group.start()
        if digits > 15:
            break
        if digits >= 8:
            cut = group.end()
    if cut is None:
        return number, 0
    return PiiKind.PHONE.placeholder + number[cut:], 1


# --- the pipeline -------------------------------------------------------------------------------------------

# Order matters: tokens and secrets first (they contain digits, @ and dots), then emails, cards before phones.
_PASSES: tuple[tuple[PiiKind, _Pass], ...] = (
    (PiiKind.URL_TOKEN, _substitute(_URL, _redact_url, needle="://")),
    (PiiKind.SECRET, _substitute(_SECRET, _redact_secret)),
    (PiiKind.EMAIL, _substitute(_EMAIL, _redact_email, needle="@")),
    (PiiKind.CARD, _substitute(_CARD_RUN, _redact_card)),
    (PiiKind.IP, _substitute(_IP, _redact_ip)),
    (PiiKind.PHONE, _substitute(_PHONE, _redact_phone)),
)
_ALL_KINDS = frozenset(PiiKind)
_MAX_ROUNDS = 8
_KIND_VALUES = frozenset(kind.value for kind in PiiKind)


def _selected_kinds(kinds: Iterable[str] | None) -> frozenset[PiiKind]:
    if kinds is None:
        # Read at call time, not import time, so settings overrides (and tests) take effect.
        kinds = getattr(settings, "SCORING_REDACT", None)
        if kinds is None:
            return _ALL_KINDS
    if isinstance(kinds, str):
        # A bare string is an iterable of characters; treating "email" as e, m, a, i, l would hide a config error.
        raise TypeError(f"PII kinds must be a list of kind names, not the string {kinds!r}")
    # Lenient about case and spaces ("email, Phone" from an environment variable), strict about names.
    requested = {kind: kind.strip().lower() if isinstance(kind, str) else kind for kind in kinds}
    unknown = sorted(repr(kind) for kind, name in requested.items() if name not in _KIND_VALUES)
    if unknown:
        raise ValueError(f"Unknown PII kinds: {', '.join(unknown)}; known kinds: {', '.join(sorted(_KIND_VALUES))}")
    return frozenset(PiiKind(name) for name in requested.values())


def redact(text: str, *, kinds: Iterable[str] | None = None) -> Redaction:
    """Replace PII in ``text`` with placeholders; ``kinds=None`` means ``settings.SCORING_REDACT`` (default: all).

    Patterns look at their neighbours (``+44...`` glued to a digit is not a phone), and a replacement changes the
    neighbours, so the passes repeat until nothing changes: the result is idempotent by construction, and PII that
    only became visible after a first replacement is not left behind. Placeholders match no pattern and every
    replacement removes content, so this ends; the round limit is a guard, not a tuning knob.
    """
    selected = _selected_kinds(kinds)
    passes = [(kind, apply) for kind, apply in _PASSES if kind in selected]
    counts: dict[str, int] = {}
    for _ in range(_MAX_ROUNDS):
        changed = False
        for kind, apply in passes:
            text, replaced = apply(text)
            if replaced:
                counts[kind.value] = counts.get(kind.value, 0) + replaced
                changed = True
        if not changed:
            break
    return Redaction(text=text, counts=counts)
