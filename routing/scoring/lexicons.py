"""Two offline lexicon models, used by the local classifier as features: their weights ship as arrays in
``seed/`` (extracted once by ``tools/lexicons_extract.py``), so neither package nor its pinned scikit-learn is
needed at run time and nothing downloads.

- ``profanity``: alt-profanity-check 1.9.1 (MIT): a linear model trained on ~200k human-labelled comments.
- ``hate_speech`` and ``offensive``: HateSonar 0.1.0 (MIT), trained on Davidson et al. (2017).

Both are TF-IDF over a fixed word list followed by a linear model; this module computes exactly what the
packages compute (checked by the extraction script and by ``tests/routing/test_scoring_local.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from scipy.special import expit, softmax
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import normalize

SEED = Path(__file__).resolve().parent / "seed"
NAMES = ("profanity", "hate_speech", "offensive")


@dataclass
class _Lexicon:
    counts: CountVectorizer
    idf: np.ndarray
    coef: np.ndarray  # one row per linear model
    intercept: np.ndarray

    @classmethod
    def from_npz(cls, path: Path, **options: Any) -> tuple[_Lexicon, Any]:
        arrays = np.load(path, allow_pickle=False)
        counts = CountVectorizer(
            vocabulary={str(w): i for i, w in enumerate(arrays["vocabulary"])},
            token_pattern=str(arrays["token_pattern"]),
            lowercase=True,
            **options,
        )
        return cls(counts, arrays["idf"], arrays["coef"], arrays["intercept"]), arrays

    def decision(self, texts: list[str]) -> np.ndarray:
        tfidf = normalize(sparse.csr_matrix(self.counts.transform(texts)).multiply(self.idf).tocsr())
        return np.asarray(tfidf @ self.coef.T) + self.intercept


@dataclass
class Lexicons:
    profanity: _Lexicon
    calibration: tuple[np.ndarray, np.ndarray]  # profanity's five sigmoid calibrations: a, b
    hatesonar: _Lexicon

    @classmethod
    def load(cls) -> Lexicons:
        profanity, arrays = _Lexicon.from_npz(SEED / "profanity-check.npz")
        hatesonar, _ = _Lexicon.from_npz(SEED / "hatesonar.npz")
        return cls(profanity, (arrays["a"], arrays["b"]), hatesonar)

    def scores(self, texts: list[str]) -> np.ndarray:
        """One row per text: profanity probability, HateSonar's hate-speech and offensive-language probabilities."""
        if not texts:
            return np.zeros((0, len(NAMES)))
        a, b = self.calibration
        profane = expit(-(self.profanity.decision(texts) * a + b)).mean(axis=1)
        sonar = softmax(self.hatesonar.decision(texts), axis=1)
        return np.column_stack([profane, sonar[:, 0], sonar[:, 1]])
