"""PDQ, Meta's perceptual image hash, in numpy (after the reference in ThreatExchange's hashing/pdq and its
paper hashing.pdf): luma, two passes of a Jarosz box filter, decimation to 64x64, a 16x16 DCT, bits above the
median. Distances are Hamming distances between the 256-bit hashes; PDQ's usual match threshold is 31.

The eight dihedral hashes (rotations and flips) come from the one DCT by the reference's sign and transpose
rules, so a rotated or mirrored copy can be matched without hashing it eight times.

pdqhash on the package index ships source only and needs a compiler; this needs numpy alone. The hashes are
checked against reference hashes computed with it (tests/routing/data/pdq/).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_BITS = 256
# The reference hashes an image with a side under 5 pixels as all zeros, quality 0.
MIN_HASHABLE_SIDE = 5
# In the reference's order: original, rotated 90, 180 and 270 degrees anticlockwise, flipped top to bottom
# ("flipX"), left to right ("flipY"), about the main diagonal ("flipPlus1") and the other one ("flipMinus1").
DIHEDRAL = ("original", "rotate90", "rotate180", "rotate270", "flipx", "flipy", "flipplus1", "flipminus1")
_ODD = np.where(np.arange(16) % 2 == 1, 1.0, -1.0)  # +1 on odd frequencies, -1 on even ones
_CHECKER = np.where(np.add.outer(np.arange(16), np.arange(16)) % 2 == 0, 1.0, -1.0)
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)
_J = np.arange(64)
# The 16 lowest DCT-II basis rows after the constant one.
DCT = np.sqrt(2.0 / 64.0) * np.cos((np.pi / 2.0 / 64.0) * np.outer(np.arange(1, 17), 2 * _J + 1))


def _window(old: int, new: int = 64) -> int:
    return (old + 2 * new - 1) // (2 * new)


def _box(values: np.ndarray, window: int, axis: int) -> np.ndarray:
    """The reference's box1DFloat: each output is the mean of ``window`` inputs around it (fewer at the edges),
    ``window - (window + 2) // 2`` before it and ``(window + 2) // 2 - 1`` after it."""
    n = values.shape[axis]
    half = (window + 2) // 2
    before, after = window - half, half - 1
    moved = np.moveaxis(values, axis, 0)
    summed = np.concatenate([np.zeros((1, *moved.shape[1:])), np.cumsum(moved, axis=0)])
    k = np.arange(n)
    lo = np.clip(k - before, 0, n)
    hi = np.clip(k + after + 1, 0, n)
    out = (summed[hi] - summed[lo]) / (hi - lo).reshape(-1, *([1] * (moved.ndim - 1)))
    return np.moveaxis(out, 0, axis)


def luma(image: Image.Image) -> np.ndarray:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    return rgb @ LUMA


def _dct_and_quality(pixels: np.ndarray) -> tuple[np.ndarray | None, int]:
    """The 16x16 DCT coefficients and the quality of a luma matrix; (None, 0) when a side is under 5 pixels."""
    rows, cols = pixels.shape
    if rows < MIN_HASHABLE_SIDE or cols < MIN_HASHABLE_SIDE:
        return None, 0
    along_rows, along_cols = _window(cols), _window(rows)
    buffer = pixels
    for _ in range(2):
        buffer = _box(buffer, along_rows, axis=1)
        buffer = _box(buffer, along_cols, axis=0)
    r = ((np.arange(64) + 0.5) * rows / 64).astype(int)
    c = ((np.arange(64) + 0.5) * cols / 64).astype(int)
    small = buffer[np.ix_(r, c)]
    return DCT @ small @ DCT.T, _quality(small)


def _bits(coefficients: np.ndarray) -> str:
    flat = coefficients.reshape(-1)
    return bits_to_hex(flat > np.median(flat))


def pdq_from_luma(pixels: np.ndarray) -> tuple[str, int]:
    """(64 hex digits, quality 0-100) for a luma matrix of at least 1x1."""
    coefficients, quality = _dct_and_quality(pixels)
    return (_bits(coefficients) if coefficients is not None else "0" * 64), quality


def dihedral_from_luma(pixels: np.ndarray) -> tuple[list[str], int]:
    """The eight hashes of :data:`DIHEDRAL` (each what that rotation or flip of the image hashes to), and the
    quality. A transform only flips the signs of odd or even frequencies and may transpose the matrix."""
    a, quality = _dct_and_quality(pixels)
    if a is None:
        return ["0" * 64] * len(DIHEDRAL), quality
    rows_odd, cols_odd = a * _ODD[:, None], a * _ODD
    variants = (a, cols_odd.T, a * _CHECKER, rows_odd.T, rows_odd, cols_odd, a.T, (a * _CHECKER).T)
    return [_bits(v) for v in variants], quality


def pdq_hash(image: Image.Image) -> tuple[str, int]:
    return pdq_from_luma(luma(image))


def pdq_dihedral(image: Image.Image) -> tuple[list[str], int]:
    return dihedral_from_luma(luma(image))


def _quality(small: np.ndarray) -> int:
    down = np.trunc((small[:-1, :] - small[1:, :]) * 100 / 255)
    across = np.trunc((small[:, :-1] - small[:, 1:]) * 100 / 255)
    total = int(np.abs(down).sum() + np.abs(across).sum())
    return min(100, total // 90)


def bits_to_hex(bits: np.ndarray) -> str:
    """Bit k (row-major over the 16x16 coefficients) is bit k of the number the hex spells, as the reference
    prints its sixteen 16-bit words from the last to the first."""
    value = 0
    for k in np.flatnonzero(bits):
        value |= 1 << int(k)
    return f"{value:064x}"


def hex_to_words(hashes: list[str]) -> np.ndarray:
    """Hex hashes as an (n, 4) uint64 array, most significant word first, for popcount distances."""
    out = np.zeros((len(hashes), 4), dtype=np.uint64)
    for i, text in enumerate(hashes):
        for w in range(4):
            out[i, w] = int(text[w * 16 : (w + 1) * 16], 16)
    return out


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def is_pdq(text: str) -> bool:
    return len(text) == 64 and all(ch in "0123456789abcdef" for ch in text.lower())
