"""The local classifier: TF-IDF word and character n-grams, one calibrated logistic regression per category.

Needs no network and no key. Trained from labeled data only (see ``training.py`` for which labels), kept
as versioned artifacts in the model registry (``routing.models.ModelVersion``), loaded once per process.
"""

from __future__ import annotations

import gc
import hashlib
import io
import threading
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import joblib
import numpy as np
from scipy import sparse
from scipy.special import expit
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

ALGORITHM = (
    "TF-IDF word 1-2-grams (sublinear tf, min_df 2) + character 2-5-grams within word boundaries, "
    "one L2 logistic regression per category (balanced class weights) with sigmoid calibration (3-fold)."
)
# Distinct words whose n-gram ids a vectorizer keeps before starting afresh (bounds worker memory).
CACHE_WORDS = 500_000
# A category needs this many positive and negative labels to get a model; fewer would only be noise.
MIN_CLASS_EXAMPLES = 8


class CharNgramCounts(BaseEstimator, TransformerMixin):
    """Character n-gram counts within word boundaries, exactly as ``CountVectorizer(analyzer="char_wb")``
    counts them, but computed once per distinct word and cached.

    sklearn builds every n-gram of every document as a Python string and looks each up in its vocabulary:
    for posts of a few hundred characters that is ~90% of scoring time. Words repeat (Zipf), so mapping a
    word to its n-gram ids once makes scoring several times faster with identical features
    (``tests/routing/test_scoring_local.py`` checks the equivalence).
    """

    def __init__(self, ngram_range: tuple[int, int] = (2, 5), min_df: int = 2, max_features: int | None = None):
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_features = max_features

    def fit(self, texts: Sequence[str], y: Any = None) -> CharNgramCounts:
        counts = CountVectorizer(
            analyzer="char_wb", ngram_range=self.ngram_range, min_df=self.min_df, max_features=self.max_features
        ).fit(texts)
        self.vocabulary_: dict[str, int] = counts.vocabulary_
        self._cache: dict[str, array[int]] = {}
        return self

    def _word_ids(self, word: str) -> array[int]:
        padded = f" {word} "
        length = len(padded)
        ids: array[int] = array("i")
        vocabulary = self.vocabulary_
        low, high = self.ngram_range
        for n in range(low, high + 1):
            # As sklearn: a word shorter than n counts once, as a whole, and ends the loop.
            for offset in range(max(length - n + 1, 1)):
                index = vocabulary.get(padded[offset : offset + n])
                if index is not None:
                    ids.append(index)
            if length - n + 1 <= 1:
                break
        return ids

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        cache = self.__dict__.setdefault("_cache", {})
        if len(cache) > CACHE_WORDS:
            cache.clear()
        # array('i').extend(array('i')) is a memory copy: no Python int per n-gram on the hot path.
        indices: array[int] = array("i")
        indptr: array[int] = array("q", [0])
        for text in texts:
            for word in text.lower().split():
                ids = cache.get(word)
                if ids is None:
                    ids = cache[word] = self._word_ids(word)
                indices.extend(ids)
            indptr.append(len(indices))
        columns = np.frombuffer(indices, dtype=np.int32) if indices else np.zeros(0, dtype=np.int32)
        matrix = sparse.csr_matrix(
            (np.ones(len(columns), dtype=np.float64), columns, np.frombuffer(indptr, dtype=np.int64)),
            shape=(len(texts), len(self.vocabulary_)),
        )
        # Converting through CSC orders each row's columns with a counting sort, cheaper than sorting in place.
        matrix = matrix.tocsc().tocsr()
        matrix.sum_duplicates()
        return matrix

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}


def _vectorizer() -> FeatureUnion:
    return FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)),
            (
                "chars",
                Pipeline(
                    [
                        ("counts", CharNgramCounts(ngram_range=(2, 5), min_df=2, max_features=300_000)),
                        ("tfidf", TfidfTransformer(sublinear_tf=True)),
                    ]
                ),
            ),
        ]
    )


@dataclass
class LocalClassifier:
    """A fitted vectorizer and a calibrated estimator per category; categories it could not learn are absent."""

    vectorizer: FeatureUnion
    estimators: dict[str, CalibratedClassifierCV] = field(default_factory=dict)

    @property
    def categories(self) -> list[str]:
        return sorted(self.estimators)

    def predict(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Probability of each category for each text: one vectorisation and one matrix product for all
        categories, then each category's sigmoid calibration (what ``predict_proba`` computes, per call)."""
        if not texts:
            return {category: np.zeros(0) for category in self.estimators}
        return self.probabilities(self.vectorizer.transform(texts))

    def probabilities(self, features: sparse.csr_matrix) -> dict[str, np.ndarray]:
        categories, weights, intercepts, slopes, offsets = self._stacked()
        decision = np.asarray(features @ weights) + intercepts
        probabilities = expit(-(slopes * decision + offsets))
        return {category: probabilities[:, i] for i, category in enumerate(categories)}

    def _stacked(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        stacked = self.__dict__.get("_stacked_params")
        if stacked is None:
            categories = sorted(self.estimators)
            fitted = [self.estimators[c].calibrated_classifiers_[0] for c in categories]
            stacked = (
                categories,
                np.column_stack([f.estimator.coef_.ravel() for f in fitted]),
                np.array([f.estimator.intercept_[0] for f in fitted]),
                np.array([f.calibrators[0].a_ for f in fitted]),
                np.array([f.calibrators[0].b_ for f in fitted]),
            )
            self.__dict__["_stacked_params"] = stacked
        return stacked

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_stacked_params"}

    def dumps(self) -> bytes:
        buffer = io.BytesIO()
        joblib.dump(self, buffer, compress=3)
        return buffer.getvalue()

    @staticmethod
    def loads(artifact: bytes) -> LocalClassifier:
        # Artifacts come only from our own registry table (written by the training command), never users.
        model = joblib.load(io.BytesIO(artifact))
        if not isinstance(model, LocalClassifier):
            raise TypeError("artifact is not a LocalClassifier")
        return model


def fit(texts: Sequence[str], labels: Sequence[Mapping[str, int]], *, seed: int = 0) -> LocalClassifier:
    """Fit on every text; each category learns from the texts labeled for it (missing = unknown)."""
    vectorizer = _vectorizer()
    features = vectorizer.fit_transform(texts)
    model = LocalClassifier(vectorizer)
    categories = sorted({category for row in labels for category in row})
    for category in categories:
        rows = [i for i, row in enumerate(labels) if category in row]
        y = np.array([labels[i][category] for i in rows])
        positives = int(y.sum())
        if positives < MIN_CLASS_EXAMPLES or len(y) - positives < MIN_CLASS_EXAMPLES:
            continue
        estimator = CalibratedClassifierCV(
            LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000, random_state=seed),
            method="sigmoid",
            cv=3,
            ensemble=False,
        )
        estimator.fit(features[rows], y)
        model.estimators[category] = estimator
    return model


def sha256(artifact: bytes) -> str:
    return hashlib.sha256(artifact).hexdigest()


class _Loaded:
    """The active model of this process, reloaded only when the registry's active version changes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple[int, str] | None = None
        self.model: LocalClassifier | None = None

    def get(self, key: tuple[int, str], fetch: Callable[[], bytes]) -> LocalClassifier:
        with self.lock:
            if self.key != key or self.model is None:
                artifact = fetch()
                if sha256(artifact) != key[1]:
                    raise ValueError("model artifact does not match its recorded sha256")
                self.model = LocalClassifier.loads(artifact)
                self.key = key
                # The model's objects live as long as the process: keep the collector from scanning them.
                gc.collect()
                gc.freeze()
            return self.model


loaded = _Loaded()
