"""PII redaction before text leaves for an external classifier: what is replaced, what is kept, and the settings."""

from __future__ import annotations

import time

import pytest

from routing.scoring.redaction import PiiKind, Redaction, redact

ALL = [kind.value for kind in PiiKind]

OPENAI_KEY = "sk-proj-Q8xT2mVb7RkL9pZc4NwY6hJd3sFg1aKe5uIo0rTy_Xv8Bn2Mq-Lw7Ez4Pc9Ds6Ah1Gk3"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def luhn_valid(number: str) -> bool:
    """An independent Luhn, so the card fixtures provably mean what the tests say they mean."""
    digits = [int(c) for c in number if c.isdigit()][::-1]
    return sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(digits)) % 10 == 0


def arabic_indic(digits: str) -> str:
    """The same number in Arabic-Indic digits (٤١١١...), as Arabic-speaking users write it."""
    return digits.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})


# --- realistic messages, all kinds on ------------------------------------------------------------------------

REALISTIC = [
    pytest.param(
        "Hi! Is the bike still available? Text me on +44 20 7946 0958 or write to Jane.Doe+bikes@Mail.Example.co.uk,"
        " cash only, pickup Saturday 10:30.",
        "Hi! Is the bike still available? Text me on [PHONE] or write to [EMAIL], cash only, pickup Saturday 10:30.",
        {"phone": 1, "email": 1},
        id="marketplace-message",
    ),
    pytest.param(
        "URGENT!!! Your parcel is held. Pay the $2.99 fee within 24h: reply with card 4539 1488 0343 6467 exp 08/27"
        " and CVV, or call (415) 555-2671.",
        "URGENT!!! Your parcel is held. Pay the $2.99 fee within 24h: reply with card [CARD] exp 08/27"
        " and CVV, or call [PHONE].",
        {"card": 1, "phone": 1},
        id="scam-with-card",
    ),
    pytest.param(
        "Ticket #48213: can't log in since 2024-05-01. My IP is 203.0.113.42 (also 2001:db8::8a2e:370:7334) and the"
        " link https://app.example.com/account/reset/3f9a8c7d2e1b4a5c6d7e8f9a0b1c2d3e?token=Zm9vYmFyMTIz&utm_source=mail"
        " says expired.",
        "Ticket #48213: can't log in since 2024-05-01. My IP is [IP] (also [IP]) and the"
        " link https://app.example.com/account/reset/[URL_TOKEN]?token=[URL_TOKEN]&utm_source=mail"
        " says expired.",
        {"url_token": 2, "ip": 2},
        id="support-ticket-ip-and-reset-url",
    ),
    pytest.param(
        f'import os\nfrom openai import OpenAI\n\nOPENAI_API_KEY = "{OPENAI_KEY}"\n'
        'client = OpenAI(api_key=os.environ["OPENAI_API_KEY"])  # v1.60, works on 3.11\n',
        'import os\nfrom openai import OpenAI\n\nOPENAI_API_KEY = "[SECRET]"\n'
        'client = OpenAI(api_key=os.environ["OPENAI_API_KEY"])  # v1.60, works on 3.11\n',
        {"secret": 1},
        id="leaked-openai-key-in-code",
    ),
    pytest.param(
        f"curl -H 'Authorization: Bearer {JWT}' https://api.example.com/v2/me\nand the cookie was session={JWT};",
        "curl -H 'Authorization: Bearer [SECRET]' https://api.example.com/v2/me\nand the cookie was session=[SECRET];",
        {"secret": 2},
        id="jwt-in-header-and-cookie",
    ),
    pytest.param(
        "أهلاً، راسلني على ahmed.k@example.com أو اتصل +966 50 123 4567 🙂🔥 — شكراً 🙏",
        "أهلاً، راسلني على [EMAIL] أو اتصل [PHONE] 🙂🔥 — شكراً 🙏",
        {"email": 1, "phone": 1},
        id="rtl-arabic-and-emoji",
    ),
    pytest.param(
        "👋 Ich bin erreichbar unter 0049-30-1234567 oder müller@straße.de 😊",
        "👋 Ich bin erreichbar unter [PHONE] oder [EMAIL] 😊",
        {"phone": 1, "email": 1},
        id="german-umlauts-and-emoji",
    ),
    pytest.param(
        "联系我john.w@example.cn谢谢，微信同号 +86 138 0013 8000",  # noqa: RUF001 - Chinese punctuation on purpose
        "联系我[EMAIL]谢谢，微信同号 [PHONE]",  # noqa: RUF001
        {"email": 1, "phone": 1},
        id="chinese-without-spaces",
    ),
    pytest.param(
        "Contact: 1) bob@example.org 2) BOB@EXAMPLE.ORG 3) 415-555-2671 4) 415.555.2671 5) +1 (415) 555-2671",
        "Contact: 1) [EMAIL] 2) [EMAIL] 3) [PHONE] 4) [PHONE] 5) [PHONE]",
        {"email": 2, "phone": 3},
        id="counts-add-up",
    ),
]


@pytest.mark.parametrize(("text", "expected", "counts"), REALISTIC)
def test_realistic_messages_are_redacted_and_stay_readable(text: str, expected: str, counts: dict[str, int]):
    result = redact(text, kinds=ALL)

    assert result.text == expected
    assert result.counts == counts
    assert result.total == sum(counts.values())


@pytest.mark.parametrize(("text", "expected", "counts"), REALISTIC)
def test_redacting_twice_equals_redacting_once(text: str, expected: str, counts: dict[str, int]):
    once = redact(text, kinds=ALL)
    twice = redact(once.text, kinds=ALL)

    assert twice.text == once.text
    assert twice.counts == {}


# --- each kind on its own --------------------------------------------------------------------------------------


def sample(kind: str, text: str, expected: str, count: int, *, off: str | None = None) -> object:
    """``expected`` with only ``kind`` on; ``off`` with every kind but ``kind`` (the text itself unless another kind
    catches the same thing, e.g. a credential in a URL is still a [SECRET] when URL tokens are off)."""
    return pytest.param(kind, text, expected, count, text if off is None else off, id=f"{kind}: {text[:40]}")


SAMPLES = [
    # email: plus-addressing, subdomains, uppercase, an internationalised domain, inside <>, mailto: and an apostrophe
    sample("email", "mail jane+tag@mail.sub.example.org now", "mail [EMAIL] now", 1),
    sample("email", "JOHN.DOE@EXAMPLE.COM, <a_b-c@x-y.io>.", "[EMAIL], <[EMAIL]>.", 2),
    sample(
        "email", "mailto:o'neil@example.ie?subject=hi and user@münchen.de", "mailto:[EMAIL]?subject=hi and [EMAIL]", 2
    ),
    # phone: international, US and national formats
    sample("phone", "+44 20 7946 0958 / +44 (0)20 7946 0958", "[PHONE] / [PHONE]", 2),
    sample("phone", "+1 (415) 555-2671, +14155552671, 0049-30-1234567", "[PHONE], [PHONE], [PHONE]", 3),
    sample("phone", "415-555-2671 or (415) 555 2671 or 415.555.2671.", "[PHONE] or [PHONE] or [PHONE].", 3),
    sample("phone", "call 1-800-555-0199 or 020 7946 0958 or 07700 900123", "call [PHONE] or [PHONE] or [PHONE]", 3),
    sample("phone", "+44 20 7946 0958 2024", "[PHONE] 2024", 1),  # a year after it is not part of the number
    sample("phone", "+44 20 7946 0958+44 20 7946 0958", "[PHONE][PHONE]", 2),  # the second shows once the first goes
    # card: Luhn-valid, with spaces, dashes or none, Amex grouping, expiry after it, Arabic-Indic digits
    sample("card", "4111 1111 1111 1111 exp 12/26", "[CARD] exp 12/26", 1),
    sample("card", "5555-5555-5555-4444 and 378282246310005", "[CARD] and [CARD]", 2),
    sample("card", "Amex 3782 822463 10005, Discover 6011111111111117.", "Amex [CARD], Discover [CARD].", 2),
    sample("card", "card 4111 1111 1111 1111 12 26 cvv 123", "card [CARD] 12 26 cvv 123", 1),
    sample("card", "4111 1111 1111 1111 5555 5555 5555 4444", "[CARD] [CARD]", 2),
    sample("card", f"بطاقتي {arabic_indic('4111 1111 1111 1111')} شكراً", "بطاقتي [CARD] شكراً", 1),
    # ip: v4 with port, leading zeros, v6 full, compressed, v4-mapped and with a zone
    sample("ip", "from 10.0.0.1:8080 and 192.168.001.001", "from [IP]:8080 and [IP]", 2),
    sample("ip", "2001:0db8:85a3:0000:0000:8a2e:0370:7334 and ::ffff:192.168.1.1", "[IP] and [IP]", 2),
    sample("ip", "link-local fe80::1ff:fe23:4567:890a%eth0.", "link-local [IP].", 1),
    # url_token: only the secret part of the URL goes, host, path and harmless parameters stay
    sample(
        "url_token",
        "https://x.example/reset/3f9a8c7d2e1b4a5c6d7e8f9a0b1c2d3e?lang=en",
        "https://x.example/reset/[URL_TOKEN]?lang=en",
        1,
    ),
    sample(
        "url_token",
        "https://x.example/cb?code=4/0AY0e&state=xyz&apiKey=abc123&X-Amz-Signature=9f8e7d",
        "https://x.example/cb?code=[URL_TOKEN]&state=xyz&apiKey=[URL_TOKEN]&X-Amz-Signature=[URL_TOKEN]",
        3,
        off="https://x.example/cb?code=4/0AY0e&state=xyz&apiKey=[SECRET]&X-Amz-Signature=9f8e7d",
    ),
    sample(
        "url_token",
        "(see https://x.example/cb#access_token=ya29.a0AfH6&expires_in=3600.)",
        "(see https://x.example/cb#access_token=[URL_TOKEN]&expires_in=3600.)",
        1,
        off="(see https://x.example/cb#access_token=[SECRET]&expires_in=3600.)",
    ),
    sample(
        "url_token",
        "HTTPS://admin:hunter2@X.EXAMPLE/invite/550e8400-e29b-41d4-a716-446655440000?SID=a1&Pwd=b2",
        "HTTPS://admin:[URL_TOKEN]@X.EXAMPLE/invite/[URL_TOKEN]?SID=[URL_TOKEN]&Pwd=[URL_TOKEN]",
        4,
        off="HTTPS://admin:[EMAIL]/invite/550e8400-e29b-41d4-a716-446655440000?SID=a1&Pwd=b2",
    ),
    sample(
        "url_token",
        "https://app.example/#/reset-password/Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5",
        "https://app.example/#/reset-password/[URL_TOKEN]",
        1,
    ),
    # secret: provider keys, tokens, JWTs, Bearer/Authorization values, credential assignments, random strings
    sample("secret", f"key {OPENAI_KEY} leaked", "key [SECRET] leaked", 1),
    sample("secret", "old sk-1234567890abcdefghijklmnopqrstuvwxyzABCDEFGHIJ", "old [SECRET]", 1),
    sample("secret", "AKIAIOSFODNN7EXAMPLE / ghp_1234567890abcdefghijklmnopqrstuvwxyzAB", "[SECRET] / [SECRET]", 2),
    sample("secret", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzAB", "[SECRET]", 1),
    sample("secret", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "[SECRET]", 1),
    sample("secret", "tsk_0123456789abcdef_Zx9Yq8Wv7Ut6Sr5Qp4On3Ml2Kj1Ih0GfEdCbA-_xyzAB1", "[SECRET]", 1),
    sample("secret", f"token {JWT}.", "token [SECRET].", 1),
    sample("secret", "Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic [SECRET]", 1),
    sample("secret", "bearer abc123def456ghi789", "bearer [SECRET]", 1),
    sample("secret", "password: hunter2, DB_PASSWORD=s3cr3t!", "password: [SECRET], DB_PASSWORD=[SECRET]!", 2),
    sample("secret", "blob kV9x2Lm4Qp7Rt1Zw8Yb3Nc6Hd0Jf5Gs2Ua", "blob [SECRET]", 1),
]
SAMPLE_ARGS = ("kind", "text", "expected", "count", "off")


@pytest.mark.parametrize(SAMPLE_ARGS, SAMPLES)
def test_a_kind_switched_on_alone_redacts_its_pii(kind: str, text: str, expected: str, count: int, off: str):
    result = redact(text, kinds=[kind])

    assert result.text == expected
    assert result.counts == {kind: count}


@pytest.mark.parametrize(SAMPLE_ARGS, SAMPLES)
def test_a_kind_switched_off_is_kept(kind: str, text: str, expected: str, count: int, off: str):
    result = redact(text, kinds=[other for other in ALL if other != kind])

    assert result.text == off
    assert kind not in result.counts
    assert PiiKind(kind).placeholder not in result.text


@pytest.mark.parametrize(SAMPLE_ARGS, SAMPLES)
def test_kinds_come_from_the_setting_when_not_given(
    settings, kind: str, text: str, expected: str, count: int, off: str
):
    settings.SCORING_REDACT = [kind]
    assert redact(text).text == expected

    settings.SCORING_REDACT = [other for other in ALL if other != kind]
    assert redact(text).text == off


@pytest.mark.parametrize(SAMPLE_ARGS, SAMPLES)
def test_samples_are_idempotent_with_all_kinds(kind: str, text: str, expected: str, count: int, off: str):
    once = redact(text, kinds=ALL)
    twice = redact(once.text, kinds=ALL)

    assert kind in once.counts
    assert twice.text == once.text
    assert twice.counts == {}


def test_an_explicit_kinds_argument_wins_over_the_setting(settings):
    settings.SCORING_REDACT = ["phone"]

    result = redact("jane@example.com 415-555-2671", kinds=["email"])

    assert result.text == "[EMAIL] 415-555-2671"


def test_without_the_setting_every_kind_is_redacted(settings):
    del settings.SCORING_REDACT
    text = f"jane@example.com 415-555-2671 4111111111111111 10.0.0.1 https://x.example/?token=abc {OPENAI_KEY}"

    result = redact(text)

    assert result.text == "[EMAIL] [PHONE] [CARD] [IP] https://x.example/?token=[URL_TOKEN] [SECRET]"
    assert result.counts == dict.fromkeys(ALL, 1)
    assert result.total == len(ALL)


def test_an_empty_setting_redacts_nothing(settings):
    settings.SCORING_REDACT = []

    result = redact("jane@example.com 415-555-2671")

    assert result == Redaction(text="jane@example.com 415-555-2671", counts={})


def test_kinds_accept_enum_members():
    assert redact("jane@example.com", kinds=[PiiKind.EMAIL]).counts == {"email": 1}


def test_kind_names_from_an_environment_list_may_carry_spaces_and_capitals(settings):
    settings.SCORING_REDACT = ["email", " Phone"]  # env.list("SCORING_REDACT") of "email, Phone"

    assert redact("jane@example.com 415-555-2671").counts == {"email": 1, "phone": 1}


def test_a_secret_named_url_parameter_is_still_caught_as_a_secret_when_url_tokens_are_off():
    result = redact("https://x.example/reset?token=abc123", kinds=["secret"])

    assert result.text == "https://x.example/reset?token=[SECRET]"


# --- what must be kept ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "4111 1111 1111 1112",
        "4111-1111-1111-1112",
        "5555555555554445",
        "1234567812345678",
        "4242424242424241",
        "4111111111111111111",  # 19 digits, fails Luhn
    ],
)
def test_numbers_failing_luhn_are_kept(number: str):
    assert not luhn_valid(number)
    text = f"ref {number} ok"

    result = redact(text, kinds=ALL)

    assert result.text == text
    assert result.counts == {}


@pytest.mark.parametrize(
    "number",
    [
        "4111 1111 1111 1111",
        "5555555555554444",
        "3782 822463 10005",
        "6011111111111117",
        "4539 1488 0343 6467",
        "4111 11 111 111 1111",  # its tail, 111 111 1111, is shaped like a US phone number
    ],
)
def test_luhn_valid_numbers_are_cards_not_phones(number: str):
    assert luhn_valid(number)

    result = redact(f"card: {number}", kinds=ALL)

    assert result.text == "card: [CARD]"
    assert result.counts == {"card": 1}


@pytest.mark.parametrize(
    "text",
    [
        "Delivered on 2024-05-01 at 10:30:45, invoice dated 01/05/2024 and 01.05.2024 (05-01-2024).",
        "Timestamp 2024-05-01T10:30:00Z, build 2024.05.01, years 1999 2000 2024, Q3 2024.",
        "Price $1,299.99 or €1.234.567,89 or 1 234 567,00 € — was 2 499 kr, +20% off, -5 points.",
        "Upgrade to v2.3.14 (1.2.3), python 3.11.9, see RFC 7231 section 6.5.1.",
        "Order #123456, order 654321, item 12-345, SKU 123-456, ref 12345.",
        "Pages 100-200, scores 10-20-30, pi is 3.14159265358979, one million is 1,000,000.",
        "Time 12:30, ratio 16:9, MAC 00:1A:2B:3C:4D:5E, loopback ::1, C++ std::vector, 999.1.1.1 is no address.",
        "Read https://example.com/blog/how-to-fix-error-404-in-nginx-2024?page=2&sort=new#comments today.",
        "Photo https://cdn.example.com/p/samsung-galaxy-s24-ultra-512gb/IMG_20240501_123456.jpg?w=640 is fine.",
        "Attached Quarterly_Report_Q3_2024_FINAL_v2.pdf and TEST_CASE_2024_USER_ACCOUNT_SETTINGS.",
        "The bearer of bad news said the Token: expired, and sk-learn-is-a-great-library-for-ml.",
        "No contact details here: @handle, user at example dot com, foo@bar.",
    ],
)
def test_ordinary_numbers_and_words_are_kept(text: str):
    result = redact(text, kinds=ALL)

    assert result.text == text
    assert result.counts == {}


# --- the interface -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "named"),
    [
        (["emial"], ["'emial'"]),
        (["email", "credit_card", "ssn"], ["'credit_card'", "'ssn'"]),
    ],
)
def test_unknown_kinds_raise_naming_them(kinds: list[str], named: list[str]):
    with pytest.raises(ValueError, match="Unknown PII kinds") as error:
        redact("jane@example.com", kinds=kinds)

    for name in named:
        assert name in str(error.value)


def test_unknown_kinds_in_the_setting_raise(settings):
    settings.SCORING_REDACT = ["email", "ssn"]

    with pytest.raises(ValueError, match="'ssn'"):
        redact("jane@example.com")


def test_a_bare_string_is_not_taken_for_a_list_of_kinds():
    with pytest.raises(TypeError, match="list of kind names"):
        redact("jane@example.com", kinds="email")


@pytest.mark.parametrize("text", ["", "   ", "nothing to see here 🙂", "مرحبا بالعالم"])
def test_text_without_pii_comes_back_unchanged(text: str):
    assert redact(text, kinds=ALL) == Redaction(text=text, counts={})


def test_the_repr_of_a_redaction_does_not_carry_the_text():
    result = redact("my name is Jane Doe, jane@example.com", kinds=ALL)

    assert "Jane Doe" not in repr(result)
    assert "'email': 1" in repr(result)


@pytest.mark.parametrize(
    "text",
    [
        "1 " * 25_000 + "x",
        "00 " * 17_000 + "x",
        "+1 (1) " * 7_000 + "x",
        "a." * 25_000 + "@",
        "a@" + "b." * 25_000 + "!",
        "a:" * 25_000 + "g",
        "https://x.example/" + "a1/" * 16_000,
        "password=" * 5_000,
    ],
    ids=["spaced-digits", "spaced-zeros", "paren-groups", "dotted-words", "long-domain", "colons", "long-url", "names"],
)
def test_hostile_inputs_do_not_backtrack_catastrophically(text: str):
    started = time.perf_counter()
    redact(text, kinds=ALL)
    # About 0.1 s each on a laptop; catastrophic backtracking would take minutes, so the bound is generous.
    assert time.perf_counter() - started < 5
