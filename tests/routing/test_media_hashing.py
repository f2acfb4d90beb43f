"""PDQ in numpy and the multi-index: the reference's box filter, the hash's behaviour under re-encoding and
resizing, and index answers equal to a brute-force scan."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from routing.scoring.media import pdq
from routing.scoring.media.index import PdqIndex, distances
from tests.support.image_server import picture


def reference_box(values: list[float], window: int) -> list[float]:
    """ThreatExchange's box1DFloat, transliterated loop for loop (its four phases), as the oracle."""
    half = (window + 2) // 2
    phases = (half - 1, window - half + 1, len(values) - window, half - 1)
    out: list[float] = []
    total, size, li, ci = 0.0, 0, 0, 0
    for _ in range(phases[0]):
        total += values[ci]
        size += 1
        ci += 1
    for _ in range(phases[1]):
        total += values[ci]
        size += 1
        out.append(total / size)
        ci += 1
    for _ in range(phases[2]):
        total += values[ci] - values[li]
        out.append(total / size)
        ci += 1
        li += 1
    for _ in range(phases[3]):
        total -= values[li]
        size -= 1
        out.append(total / size)
        li += 1
    return out


@pytest.mark.parametrize(("length", "window"), [(100, 2), (100, 3), (640, 5), (64, 1), (1000, 8)])
def test_the_box_filter_matches_the_reference_loop(length: int, window: int) -> None:
    values = np.random.default_rng(length + window).random(length) * 255
    ours = pdq._box(values[None, :], window, axis=1)[0]
    np.testing.assert_allclose(ours, reference_box(values.tolist(), window), rtol=1e-9, atol=1e-9)


def image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def hashed(data: bytes) -> str:
    return pdq.pdq_hash(image(data))[0]


def reencoded(data: bytes, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image(data).convert("RGB").save(out, format=fmt, **options)
    return out.getvalue()


PDQ_DATA = Path(__file__).parent / "data" / "pdq"
REFERENCE: dict[str, dict] = json.loads((PDQ_DATA / "reference.json").read_text())["images"]
# A PIL transpose giving each dihedral variant after the original, in the reference's order.
TRANSPOSES = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)


# A flat image's DCT is rounding noise (float32 in the reference, float64 here), so its bits are arbitrary in
# both; its quality of 0 keeps it out of matching, and only the quality is compared.
HASHED = sorted(name for name in REFERENCE if not name.startswith("flat-"))


@pytest.mark.parametrize("name", HASHED)
def test_the_hash_and_quality_are_the_reference_implementations(name: str) -> None:
    with Image.open(PDQ_DATA / name) as picture_file:
        assert pdq.pdq_hash(picture_file) == (REFERENCE[name]["pdq"], REFERENCE[name]["quality"])


@pytest.mark.parametrize("name", HASHED)
def test_the_eight_dihedral_hashes_are_the_reference_implementations(name: str) -> None:
    with Image.open(PDQ_DATA / name) as picture_file:
        hashes, quality = pdq.pdq_dihedral(picture_file)
    assert hashes == REFERENCE[name]["dihedral"]
    assert quality == REFERENCE[name]["quality"]


def test_the_reference_set_covers_the_edge_cases() -> None:
    assert REFERENCE["tiny-9x4.png"] == {"pdq": "0" * 64, "quality": 0, "dihedral": ["0" * 64] * 8}
    assert REFERENCE["flat-300x200.png"]["quality"] == 0
    with Image.open(PDQ_DATA / "flat-300x200.png") as flat:
        assert pdq.pdq_hash(flat)[1] == 0
    assert sum(entry["quality"] == 100 for entry in REFERENCE.values()) >= 4


@pytest.mark.parametrize("name", ["field-480x360.png", "field-333x517.png", "shapes-400x300.png"])
def test_a_rotated_or_flipped_image_hashes_near_the_matching_dihedral_hash(name: str) -> None:
    with Image.open(PDQ_DATA / name) as picture_file:
        original = picture_file.convert("RGB")
    variants = REFERENCE[name]["dihedral"]
    for k, transpose in enumerate(TRANSPOSES, start=1):
        turned = pdq.pdq_hash(original.transpose(transpose))[0]
        assert pdq.distance(turned, variants[k]) <= 31, pdq.DIHEDRAL[k]  # PDQ's match threshold
        assert pdq.distance(turned, variants[0]) > 31, pdq.DIHEDRAL[k]  # the plain hash misses it


def test_a_hash_is_256_bits_half_of_them_set() -> None:
    value, quality = pdq.pdq_hash(image(picture(3)))
    assert pdq.is_pdq(value)
    assert int(value, 16).bit_count() == 128
    assert 0 <= quality <= 100


def test_a_lossless_copy_hashes_the_same() -> None:
    original = picture(4)
    assert hashed(reencoded(original, "PNG")) == hashed(original)
    assert hashed(reencoded(original, "BMP")) == hashed(original)


def test_a_jpeg_copy_and_a_resized_copy_stay_close() -> None:
    original = picture(5, size=(400, 300))
    base = hashed(original)
    assert pdq.distance(base, hashed(reencoded(original, "JPEG", quality=70))) <= 16
    small = io.BytesIO()
    image(original).convert("RGB").resize((200, 150), Image.Resampling.LANCZOS).save(small, format="PNG")
    assert pdq.distance(base, hashed(small.getvalue())) <= 20


def test_different_pictures_are_far_apart() -> None:
    hashes = [hashed(picture(seed)) for seed in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert pdq.distance(hashes[i], hashes[j]) > 60


def test_hex_and_words_round_trip_to_the_same_distance() -> None:
    a, b = hashed(picture(6)), hashed(picture(7))
    words = pdq.hex_to_words([a, b])
    assert int(distances(words[:1], words[1])[0]) == pdq.distance(a, b)


@pytest.mark.parametrize("max_distance", [0, 15, 31])
def test_the_index_answers_what_a_scan_answers(max_distance: int) -> None:
    rng = np.random.default_rng(max_distance)
    bank = rng.integers(0, 2**64, size=(20_000, 4), dtype=np.uint64)
    query = bank[123].copy()
    # Plant neighbours at every distance up to 40 by flipping that many bits of the query.
    for d in range(41):
        planted = query.copy()
        for bit in rng.choice(256, size=d, replace=False):
            planted[bit // 64] ^= np.uint64(1 << int(bit % 64))
        bank[1000 + d] = planted
    rows, found = PdqIndex(bank).search(query, max_distance)
    expected = np.flatnonzero(distances(bank, query) <= max_distance)
    assert sorted(rows.tolist()) == sorted(expected.tolist())
    assert found.tolist() == sorted(found.tolist())
    assert len(rows) >= max_distance + 1


def test_a_wide_distance_falls_back_to_a_scan_with_the_same_answer() -> None:
    bank = np.random.default_rng(9).integers(0, 2**64, size=(2_000, 4), dtype=np.uint64)
    rows, _ = PdqIndex(bank).search(bank[5], 100)
    assert sorted(rows.tolist()) == np.flatnonzero(distances(bank, bank[5]) <= 100).tolist()


def test_an_empty_index_finds_nothing() -> None:
    rows, found = PdqIndex(np.zeros((0, 4), dtype=np.uint64)).search(np.zeros(4, dtype=np.uint64), 31)
    assert len(rows) == 0
    assert len(found) == 0
