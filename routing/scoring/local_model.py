"""The local classifier: TF-IDF word and character n-grams, a logistic regression per category and one for
"any violation", and a stacker per category over every base score, three offline lexicon scores
(``lexicons.py``) and the category word lists (``wordlists.py``).

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
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline

from routing.scoring.lexicons import NAMES as LEXICON_NAMES
from routing.scoring.lexicons import Lexicons
from routing.scoring.wordlists import WordLists

ALGORITHM = (
    "TF-IDF word 1-2-grams (sublinear tf, min_df 2) + character 2-5-grams within word boundaries; per category "
    "and for any violation a logistic regression (C=4, balanced class weights), then a per-category logistic "
    "stacker (C=0.1) over the out-of-fold base log-odds of every category and of any violation, three lexicon "
    "log-odds (alt-profanity-check 1.9.1 profanity, HateSonar 0.1.0 hate speech and offensive language) and "
    "category word-list counts (violence, threats, self-harm, minors, sexual, insults, identity terms)."
)
# Distinct words whose n-gram ids a vectorizer keeps before starting afresh (bounds worker memory).
CACHE_WORDS = 500_000
# A category needs this many positive and negative labels to get a model; fewer would only be noise.
MIN_CLASS_EXAMPLES = 8
# The base regressions' inverse regularisation and class weights (fixed, not tuned on the evaluation folds).
# A plain logistic regression replaced NB-LR (Wang & Manning 2012) here: 5-fold overall AUPRC 0.768 -> 0.788,
# violence 0.266 -> 0.359, hate/threatening 0.279 -> 0.424 (the naive-Bayes ratios overfit 24-94 positives).
BASE_C = 4.0
BASE_CLASS_WEIGHT: str | None = "balanced"
# The stackers: folds of out-of-fold base scores they learn from, and their (strong) regularisation.
STACK_FOLDS = 5
STACK_C = 0.1


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
    """A fitted vectorizer, one linear base model per category and one for any violation, and one stacker
    per category.

    Scoring is one vectorisation, one matrix product for every base model, the lexicon scores and word-list
    counts, and a small product with the stackers. Categories it could not learn are absent.
    """

    vectorizer: FeatureUnion
    lexicons: Lexicons
    wordlists: WordLists = field(default_factory=WordLists)
    categories: list[str] = field(default_factory=list)
    # (features x categories) base weights and their intercepts.
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    intercepts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # The "any violation" base model (a text positive in any category it is labeled for).
    any_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    any_intercept: float = 0.0
    # (stack inputs x categories) stacker weights and intercepts; inputs are the base log-odds of every learned
    # category, then of any violation, then the lexicon log-odds, then the word-list features.
    stack_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    stack_intercepts: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def predict(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Probability of each category for each text."""
        if not texts:
            return {category: np.zeros(0) for category in self.categories}
        texts = list(texts)
        return self.probabilities(self.vectorizer.transform(texts), self.lexical(texts))

    def lexical(self, texts: list[str]) -> np.ndarray:
        """The lexicon models' probabilities, then the word-list features, one row per text."""
        return np.hstack([self.lexicons.scores(texts), self.wordlists.features(texts)])

    def base(self, features: sparse.csr_matrix) -> np.ndarray:
        """Each category's base decision value (log-odds) for each text, then any violation's."""
        categories = np.asarray(features @ self.weights) + self.intercepts
        return np.column_stack([categories, features @ self.any_weights + self.any_intercept])

    def probabilities(self, features: sparse.csr_matrix, lexical: np.ndarray) -> dict[str, np.ndarray]:
        inputs = stack_inputs(self.base(features), lexical)
        probabilities = expit(inputs @ self.stack_weights + self.stack_intercepts)
        return {category: probabilities[:, i] for i, category in enumerate(self.categories)}

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
        if not all(name in model.__dict__ for name in ("lexicons", "stack_weights", "wordlists")):
            # A version trained before this format (calibrated regressions, or NB-LR without word lists).
            raise TypeError("artifact is of an older local-model format: train and promote a new version")
        return model


def stack_inputs(decisions: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    """What the stackers read: base decision values, the lexicon models' log-odds and the word-list features.
    On the log-odds scale a rare category's scores keep their spread (as probabilities they all sit near 0,
    where a linear stacker cannot tell them apart)."""
    models = len(LEXICON_NAMES)
    clipped = np.clip(lexical[:, :models], 1e-6, 1 - 1e-6)
    return np.hstack([decisions, np.log(clipped / (1 - clipped)), lexical[:, models:]])


def _logistic(features: sparse.csr_matrix, y: np.ndarray, *, seed: int) -> tuple[np.ndarray, float]:
    """A base model: logistic regression on the TF-IDF features, its weights and intercept."""
    regression = LogisticRegression(
        C=BASE_C, dual=True, solver="liblinear", max_iter=1000, random_state=seed, class_weight=BASE_CLASS_WEIGHT
    )
    regression.fit(features, y)
    return regression.coef_.ravel(), float(regression.intercept_[0])


def _out_of_fold(
    features: sparse.csr_matrix, rows: np.ndarray, y: np.ndarray, *, seed: int
) -> tuple[np.ndarray, float, np.ndarray]:
    """A base model fitted on ``rows`` and its decision values for every text: each of ``rows`` scored by a
    model that did not see it (``STACK_FOLDS`` folds), every other text by the full model (it was not in its
    training either)."""
    coef, intercept = _logistic(features[rows], y, seed=seed)
    scores = features @ coef + intercept
    fewest = min(int(y.sum()), len(y) - int(y.sum()))
    splitter = StratifiedKFold(n_splits=min(STACK_FOLDS, fewest), shuffle=True, random_state=seed)
    for inner_train, inner_test in splitter.split(np.zeros(len(y)), y):
        fold_coef, fold_intercept = _logistic(features[rows[inner_train]], y[inner_train], seed=seed)
        scores[rows[inner_test]] = features[rows[inner_test]] @ fold_coef + fold_intercept
    return coef, intercept, scores


def _learnable(labels: Sequence[Mapping[str, int]]) -> dict[str, np.ndarray]:
    """The rows labeled for each category that has enough positives and negatives to learn from."""
    out: dict[str, np.ndarray] = {}
    for category in sorted({category for row in labels for category in row}):
        rows = np.array([i for i, row in enumerate(labels) if category in row])
        positives = sum(labels[i][category] for i in rows)
        if positives >= MIN_CLASS_EXAMPLES and len(rows) - positives >= MIN_CLASS_EXAMPLES:
            out[category] = rows
    return out


def fit(texts: Sequence[str], labels: Sequence[Mapping[str, int]], *, seed: int = 0) -> LocalClassifier:
    """Fit on every text; each category learns from the texts labeled for it (missing = unknown).

    The stackers learn from out-of-fold base scores (``STACK_FOLDS`` folds over the training texts), so they
    weigh what the base models know about texts they did not see, not what they memorised.
    """
    texts = list(texts)
    vectorizer = _vectorizer()
    features = vectorizer.fit_transform(texts).tocsr()
    learnable = _learnable(labels)
    model = LocalClassifier(vectorizer, Lexicons.load(), WordLists(), categories=sorted(learnable))
    if not learnable:
        return model
    lexical = model.lexical(texts)
    columns = []
    intercepts = []
    out_of_fold = np.zeros((len(texts), len(model.categories) + 1))
    for j, category in enumerate(model.categories):
        rows = learnable[category]
        y = np.array([labels[i][category] for i in rows])
        coef, intercept, out_of_fold[:, j] = _out_of_fold(features, rows, y, seed=seed)
        columns.append(coef)
        intercepts.append(intercept)
    model.weights = np.column_stack(columns)
    model.intercepts = np.array(intercepts)
    # Any violation: every text with a label, positive when any of its labels is (more positives than any one
    # category has, and the same signal the overall "is this a violation" question needs).
    rows = np.array([i for i, row in enumerate(labels) if row])
    y = np.array([int(any(v == 1 for v in labels[i].values())) for i in rows])
    if min(int(y.sum()), len(y) - int(y.sum())) >= MIN_CLASS_EXAMPLES:
        model.any_weights, model.any_intercept, out_of_fold[:, -1] = _out_of_fold(features, rows, y, seed=seed)
    else:  # too few of one side to learn: a constant input the stackers cannot use
        model.any_weights = np.zeros(features.shape[1])
    inputs = stack_inputs(out_of_fold, lexical)
    stack_weights, stack_intercepts = [], []
    for category in model.categories:
        rows = learnable[category]
        y = np.array([labels[i][category] for i in rows])
        stacker = LogisticRegression(C=STACK_C, max_iter=1000, random_state=seed).fit(inputs[rows], y)
        stack_weights.append(stacker.coef_.ravel())
        stack_intercepts.append(float(stacker.intercept_[0]))
    model.stack_weights = np.column_stack(stack_weights)
    model.stack_intercepts = np.array(stack_intercepts)
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
