"""Finding a PDQ hash's neighbours in a bank of millions without comparing against every entry.

Multi-index hashing: the 256 bits split into 16 chunks of 16; two hashes within distance d agree to within
d // 16 bits on some chunk (pigeonhole), so probing every chunk's bucket and its one-bit neighbours finds every
hash within 31 among a few thousand candidates, whose exact distance numpy then counts.
"""

from __future__ import annotations

import numpy as np

CHUNKS = 16
FLIPS = np.array([0, *(1 << b for b in range(16))], dtype=np.int64)


def chunk_keys(words: np.ndarray) -> np.ndarray:
    """(n, 16) chunk values of (n, 4) uint64 hashes, chunk 0 the most significant."""
    shifts = np.array([48, 32, 16, 0], dtype=np.uint64)
    parts = (words[:, :, None] >> shifts[None, None, :]) & np.uint64(0xFFFF)
    return parts.reshape(len(words), CHUNKS).astype(np.int64)


def distances(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distance from ``query`` (4 uint64) to every row of ``words``: the brute-force reference."""
    return np.bitwise_count(words ^ query[None, :]).sum(axis=1, dtype=np.int64)


class PdqIndex:
    """An immutable index over (n, 4) uint64 hashes; answers the rows within a distance of a query."""

    def __init__(self, words: np.ndarray):
        self.words = np.ascontiguousarray(words, dtype=np.uint64)
        n = len(self.words)
        buckets = (chunk_keys(self.words) + (np.arange(CHUNKS, dtype=np.int64) << 16)[None, :]).reshape(-1)
        order = np.argsort(buckets, kind="stable")
        self.rows = (order // CHUNKS).astype(np.uint32 if n < 2**32 else np.uint64)
        counts = np.bincount(buckets, minlength=CHUNKS << 16)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.words)

    def search(self, query: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, distances) of every hash within ``max_distance``, nearest first."""
        radius = max_distance // CHUNKS
        if radius > 1:  # two-bit neighbourhoods would cost more probes than a scan saves
            candidates = np.arange(len(self.words))
        else:
            keys = chunk_keys(query[None, :])[0]
            probes = keys[:, None] ^ (FLIPS[None, :] if radius else FLIPS[None, :1])
            buckets = (probes + (np.arange(CHUNKS, dtype=np.int64) << 16)[:, None]).reshape(-1)
            starts, ends = self.offsets[buckets], self.offsets[buckets + 1]
            hit = ends > starts
            slices = [self.rows[s:e] for s, e in zip(starts[hit], ends[hit], strict=True)]
            candidates = np.unique(np.concatenate(slices)).astype(np.int64) if slices else np.empty(0, np.int64)
        found = distances(self.words[candidates], query)
        keep = found <= max_distance
        rows, found = candidates[keep], found[keep]
        order = np.argsort(found, kind="stable")
        return rows[order], found[order]
