"""Labeled data for the local model and its training, evaluation and cross-validation.

Every version learns from the shipped seed set (``settings.SCORING_SEED_SET``: OpenAI's 1,680 labelled
moderation samples, MIT), so a fresh install has a real model in every category; labels people verified
(``queues.GroundTruth``: QA-verified or adjudicated decisions) and imported labeled sets (``LabeledExample``)
add to it, never replace it. Never raw reviewer decisions, so a reviewer's mistakes do not feed back into the
classifier that routes their work.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from sklearn.model_selection import StratifiedKFold, train_test_split

from ops_platform.core.models import ClassifierCategory, User
from queues.selectors import ground_truth_latest
from routing.scoring.local_model import MIN_CLASS_EXAMPLES, LocalClassifier, fit
from routing.scoring.metrics import IntervalFigures, f1_threshold, interval_figures
from routing.scoring.models import LabeledExample, ModelVersion
from routing.scoring.registry import classifier_load, model_active, model_register

# The short keys of OpenAI's moderation evaluation set (Markov et al., 2022) and our categories.
DATASET_KEYS = {
    "S": ClassifierCategory.SEXUAL,
    "H": ClassifierCategory.HATE,
    "V": ClassifierCategory.VIOLENCE,
    "HR": ClassifierCategory.HARASSMENT,
    "SH": ClassifierCategory.SELF_HARM,
    "S3": ClassifierCategory.SEXUAL_MINORS,
    "H2": ClassifierCategory.HATE_THREATENING,
    "V2": ClassifierCategory.VIOLENCE_GRAPHIC,
}
CATEGORIES = [str(c) for c in ClassifierCategory]
TEXT_FIELDS = ("prompt", "text", "content")


class LabeledFileError(ValueError):
    pass


@dataclass
class Labeled:
    """Texts with per-category 0/1 labels; a category missing from a row is unknown for that row."""

    texts: list[str] = field(default_factory=list)
    labels: list[dict[str, int]] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)

    def add(self, text: str, labels: dict[str, int], ref: str, source: str) -> None:
        self.texts.append(text)
        self.labels.append(labels)
        self.refs.append(ref)
        self.sources[source] += 1

    def add_or_merge(self, text: str, labels: dict[str, int], ref: str, source: str) -> None:
        """Add a row, or when the same text is already held, let these (later, more specific) labels
        override its labels for the categories they name: one text is one training example."""
        index = self.__dict__.setdefault("_index", {t: i for i, t in enumerate(self.texts)})
        if text in index:
            self.labels[index[text]] = {**self.labels[index[text]], **labels}
            self.sources[source] += 1
            return
        index[text] = len(self.texts)
        self.add(text, labels, ref, source)

    def subset(self, rows: Iterable[int]) -> Labeled:
        out = Labeled()
        for i in rows:
            out.texts.append(self.texts[i])
            out.labels.append(self.labels[i])
            out.refs.append(self.refs[i])
        out.sources = Counter(self.sources)
        return out

    def category_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for category in CATEGORIES:
            known = [row[category] for row in self.labels if category in row]
            counts[category] = {"n": len(known), "positives": int(sum(known))}
        return counts


def _label(value: Any, *, where: str) -> int | None:
    if value is None or value == "":
        return None
    if value in (0, 1, "0", "1", True, False):
        return int(value)
    raise LabeledFileError(f"{where}: label must be 0 or 1, got {value!r}")


def _category(key: str) -> str | None:
    return str(DATASET_KEYS[key]) if key in DATASET_KEYS else (key if key in CATEGORIES else None)


def labeled_file_read(path: str | Path) -> Labeled:
    """Read JSONL (optionally gzipped; OpenAI's evaluation-set format) or CSV with a text column and
    one column per category (short keys such as ``S``/``H2`` or our names such as ``hate``)."""
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    content = raw.decode("utf-8")
    name = path.name.removesuffix(".gz")
    data = Labeled()
    if name.endswith((".jsonl", ".json")):
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabeledFileError(f"line {number}: not JSON ({exc.msg})") from exc
            _add_row(data, row, ref=f"line-{number}", where=f"line {number}")
    elif name.endswith(".csv"):
        for number, row in enumerate(csv.DictReader(io.StringIO(content)), start=2):
            _add_row(data, row, ref=f"row-{number}", where=f"row {number}")
    else:
        raise LabeledFileError(f"{path.name}: expected .jsonl, .jsonl.gz or .csv")
    if not data.texts:
        raise LabeledFileError(f"{path.name}: no labeled rows")
    return data


def _add_row(data: Labeled, row: dict[str, Any], *, ref: str, where: str) -> None:
    text = next((row[f] for f in TEXT_FIELDS if isinstance(row.get(f), str)), None)
    if text is None:
        raise LabeledFileError(f"{where}: no text field (one of {', '.join(TEXT_FIELDS)})")
    labels: dict[str, int] = {}
    for key, value in row.items():
        category = _category(key)
        if category is not None:
            label = _label(value, where=f"{where}, {key}")
            if label is not None:
                labels[category] = label
    data.add(text, labels, ref, "file")


def labeled_import(*, path: str | Path, dataset: str) -> tuple[int, int]:
    """Store a labeled file as ``LabeledExample`` rows; re-importing the same file adds nothing."""
    data = labeled_file_read(path)
    rows = [
        LabeledExample(
            dataset=dataset,
            external_ref=f"{ref}-{hashlib.sha256(text.encode()).hexdigest()[:12]}",
            text=text,
            labels=labels,
        )
        for text, labels, ref in zip(data.texts, data.labels, data.refs, strict=True)
    ]
    before = LabeledExample.objects.filter(dataset=dataset).count()
    LabeledExample.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    created = LabeledExample.objects.filter(dataset=dataset).count() - before
    return created, len(rows) - created


def seed_source() -> str:
    return "seed:" + Path(settings.SCORING_SEED_SET).name.removesuffix(".gz").removesuffix(".jsonl")


def training_data() -> Labeled:
    """The seed set, plus imported labeled sets, plus the latest verified label of each item (QA-verified
    or adjudicated). A text held twice is one example whose later labels override the earlier ones.

    A verified 'no violation' is a negative for every category; a verified violation is a positive for
    the categories of its policy and leaves the others unknown (an item may break several policies).
    """
    data = Labeled()
    seed = labeled_file_read(settings.SCORING_SEED_SET)
    source = seed_source()
    for text, labels, ref in zip(seed.texts, seed.labels, seed.refs, strict=True):
        data.add_or_merge(text, labels, f"{source}/{ref}", source)
    for example in LabeledExample.objects.order_by("pk").iterator():
        data.add_or_merge(
            example.text, dict(example.labels), f"{example.dataset}/{example.external_ref}", example.dataset
        )
    verified = ground_truth_latest().select_related("item", "policy")
    for truth in verified.iterator():
        if truth.is_violation:
            categories = truth.policy.classifier_categories if truth.policy else []
            labels = {category: 1 for category in categories}
        else:
            labels = dict.fromkeys(CATEGORIES, 0)
        if labels:
            data.add_or_merge(truth.item.text, labels, f"item-{truth.item_id}", f"ground_truth:{truth.origin}")
    return data


def stratification_key(labels: Sequence[dict[str, int]], counts: dict[str, dict[str, int]]) -> list[str]:
    """Each row's rarest positive category (or 'none'), so rare categories spread over every fold."""
    rarity = sorted(CATEGORIES, key=lambda c: counts[c]["positives"])
    keys = []
    for row in labels:
        keys.append(next((c for c in rarity if row.get(c) == 1), "none"))
    # StratifiedKFold needs every key at least n_splits times; fold rare keys into 'other'.
    frequency = Counter(keys)
    return [k if frequency[k] >= 10 else "other" for k in keys]


def holdout_split(data: Labeled, *, share: float, seed: int) -> tuple[list[int], list[int]]:
    rows = list(range(len(data.texts)))
    keys = stratification_key(data.labels, data.category_counts())
    train, test = train_test_split(rows, test_size=share, random_state=seed, stratify=keys)
    return sorted(train), sorted(test)


def figures_stored(figures: IntervalFigures) -> dict[str, Any]:
    """A category's figures as a model card keeps them: the bootstrap intervals and, for promotion's
    comparison, the plain AUPRC."""
    return {
        "n": figures.n,
        "positives": figures.positives,
        "prevalence": round(figures.prevalence, 4),
        "auprc": None if figures.auprc.value is None else round(figures.auprc.value, 4),
        "roc_auc": None if figures.roc_auc.value is None else round(figures.roc_auc.value, 4),
        "intervals": figures.as_dict(),
    }


def evaluate(model: LocalClassifier, data: Labeled) -> dict[str, dict[str, Any]]:
    """Held-out figures per category for a fitted model (categories it did not learn are left out)."""
    predictions = model.predict(data.texts)
    return figures_by_category(data, predictions)


def figures_by_category(data: Labeled, scores: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    target = settings.SCORING_TARGET_PRECISION
    figures: dict[str, dict[str, Any]] = {}
    for category, values in scores.items():
        rows = [i for i, row in enumerate(data.labels) if category in row and not np.isnan(values[i])]
        if not rows:
            continue
        y = [data.labels[i][category] for i in rows]
        result = interval_figures(y, values[rows], target_precision=target)
        figures[category] = {**figures_stored(result), "f1_threshold": f1_threshold(y, values[rows])}
    return figures


def overall_figures(data: Labeled, scores: dict[str, np.ndarray]) -> IntervalFigures | None:
    """Overall binary: does the text break any policy (any known positive), scored by its highest category."""
    categories = [c for c in CATEGORIES if c in scores]
    if not categories:
        return None
    stacked = np.vstack([scores[c] for c in categories])
    any_scored = ~np.all(np.isnan(stacked), axis=0)
    rows = [i for i in range(len(data.texts)) if any_scored[i] and data.labels[i]]
    if not rows:
        return None
    y = [int(any(v == 1 for v in data.labels[i].values())) for i in rows]
    top = np.nanmax(stacked[:, rows], axis=0)
    return interval_figures(y, top, target_precision=settings.SCORING_TARGET_PRECISION)


def known_limits(counts: dict[str, dict[str, int]], learned: Sequence[str], sources: Counter[str]) -> str:
    lines = [
        "Learns surface wording (word and character n-grams, the word lists of two lexicon models and its own "
        "category word lists): paraphrase, sarcasm, quotes and counter-speech are its weak points, and it knows "
        "only languages present in its training data (the seed set and the lexicons are English).",
        "One lexicon input (HateSonar) was trained on tweets whose models flag African-American English as "
        "offensive more often (Davidson et al. 2019): check its scores on dialect before trusting them.",
    ]
    missing = [c for c in CATEGORIES if c not in learned]
    if missing:
        lines.append(
            f"No model for {', '.join(missing)}: fewer than {MIN_CLASS_EXAMPLES} positive and negative labels. "
            "Items get no score in these categories from this version."
        )
    thin = [c for c in learned if counts[c]["positives"] < 50]
    if thin:
        lines.append(f"Few positives (<50) for {', '.join(thin)}: its figures there have wide uncertainty.")
    lines.append("Trained on: " + ", ".join(f"{source} ({n})" for source, n in sorted(sources.items())) + ".")
    return "\n".join(lines)


def model_train(*, actor: User | str, holdout: float = 0.2, seed: int = 0, folds: int = 5) -> ModelVersion:
    """Fit a new version on the seed set plus the verified and imported labels, measure it on a held-out
    share, and measure the active version on the same held-out rows so promotion compares like with like.
    With ``folds`` (0 skips it) the card also gets stratified k-fold figures over every example, with
    bootstrap intervals: more positives per category than the held-out share has."""
    data = training_data()
    if len(data.texts) < 50:
        raise LabeledFileError(f"only {len(data.texts)} labeled examples: import a labeled set or verify decisions")
    train_rows, test_rows = holdout_split(data, share=holdout, seed=seed)
    train, test = data.subset(train_rows), data.subset(test_rows)
    model = fit(train.texts, train.labels, seed=seed)
    if not model.categories:
        raise LabeledFileError(
            f"no category has {MIN_CLASS_EXAMPLES} positive and {MIN_CLASS_EXAMPLES} negative labels to learn from"
        )
    metrics = evaluate(model, test)
    baseline: dict[str, Any] = {}
    active = model_active()
    if active is not None:
        previous = evaluate(classifier_load(active), test)
        baseline = {"version": active.label, "auprc": {c: m["auprc"] for c, m in previous.items() if m["auprc"]}}
    counts = data.category_counts()
    thresholds = {c: m.pop("f1_threshold") for c, m in metrics.items() if m.get("f1_threshold") is not None}
    for m in metrics.values():
        m.pop("f1_threshold", None)
    cross_validated: dict[str, Any] = {}
    if folds:
        scores = cross_validate(data, folds=folds, seed=seed)
        categories = figures_by_category(data, {c: scores[c] for c in model.categories})
        overall = overall_figures(data, {c: scores[c] for c in model.categories})
        cross_validated = {
            "folds": folds,
            "categories": {c: {k: v for k, v in m.items() if k != "f1_threshold"} for c, m in categories.items()},
            "overall": overall.as_dict() if overall else None,
        }
    return model_register(
        model=model,
        training_data={
            "examples": len(data.texts),
            "train": len(train_rows),
            "held_out": len(test_rows),
            "seed": seed,
            "sources": dict(data.sources),
            "categories": counts,
            "baseline": baseline,
            "seed_set": Path(settings.SCORING_SEED_SET).name,
            "target_precision": settings.SCORING_TARGET_PRECISION,
            "cross_validated": cross_validated,
        },
        metrics=metrics,
        thresholds={c: round(t, 4) for c, t in thresholds.items()},
        known_limits=known_limits(counts, model.categories, data.sources),
        trained_by=actor.get_username() if isinstance(actor, User) else str(actor),
    )


def cross_validate(data: Labeled, *, folds: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities per category (NaN where a category had no model in that fold)."""
    keys = stratification_key(data.labels, data.category_counts())
    out = {category: np.full(len(data.texts), np.nan) for category in CATEGORIES}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_rows, test_rows in splitter.split(np.zeros(len(keys)), keys):
        train = data.subset(train_rows)
        model = fit(train.texts, train.labels, seed=seed)
        predictions = model.predict([data.texts[i] for i in test_rows])
        for category, scores in predictions.items():
            out[category][test_rows] = scores
    return out
