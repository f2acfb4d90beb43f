"""PDQ, Meta's perceptual image hash, in numpy (after the reference in ThreatExchange's hashing/pdq and its
paper hashing.pdf): luma, two passes of a Jarosz box filter, decimation to 64x64, a 16x16 DCT, bits above the
median. Distances are Hamming distances between the 256-bit hashes; PDQ's usual match threshold is 31.

pdqhash on the package index ships source only and needs a compiler; this needs numpy alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_BITS = 256
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


def pdq_from_luma(pixels: np.ndarray) -> tuple[str, int]:
    """(64 hex digits, quality 0-100) for a luma matrix of at least 1x1."""
    rows, cols = pixels.shape
    along_rows, along_cols = _window(cols), _window(rows)
    buffer = pixels
    for _ in range(2):
        buffer = _box(buffer, along_rows, axis=1)
        buffer = _box(buffer, along_cols, axis=0)
    r = ((np.arange(64) + 0.5) * rows / 64).astype(int)
    c = ((np.arange(64) + 0.5) * cols / 64).astype(int)
    small = buffer[np.ix_(r, c)]
    quality = _quality(small)
    coefficients = DCT @ small @ DCT.T
    flat = coefficients.reshape(-1)
    bits = flat > np.median(flat)
    return bits_to_hex(bits), quality


def pdq_hash(image: Image.Image) -> tuple[str, int]:
    return pdq_from_luma(luma(image))


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
