"""Labeled data for the local model and its training, evaluation and cross-validation.

The model learns only from labels people verified (``queues.GroundTruth``: QA-verified or adjudicated
decisions) and from imported labeled sets (``LabeledExample``); never from raw reviewer decisions, so a
reviewer's mistakes do not feed back into the classifier that routes their work.
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
from sklearn.model_selection import StratifiedKFold, train_test_split

from ops_platform.core.models import ClassifierCategory, User
from queues.selectors import ground_truth_latest
from routing.scoring.local_model import MIN_CLASS_EXAMPLES, LocalClassifier, fit
from routing.scoring.metrics import auprc_interval, category_figures, f1_threshold
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


def training_data() -> Labeled:
    """Imported labeled sets plus the latest verified label of each item (QA-verified or adjudicated).

    A verified 'no violation' is a negative for every category; a verified violation is a positive for
    the categories of its policy and leaves the others unknown (an item may break several policies).
    """
    data = Labeled()
    for example in LabeledExample.objects.order_by("pk").iterator():
        data.add(example.text, dict(example.labels), f"{example.dataset}/{example.external_ref}", example.dataset)
    verified = ground_truth_latest().select_related("item", "policy")
    for truth in verified.iterator():
        if truth.is_violation:
            categories = truth.policy.classifier_categories if truth.policy else []
            labels = {category: 1 for category in categories}
        else:
            labels = dict.fromkeys(CATEGORIES, 0)
        if labels:
            data.add(truth.item.text, labels, f"item-{truth.item_id}", f"ground_truth:{truth.origin}")
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


def evaluate(model: LocalClassifier, data: Labeled) -> dict[str, dict[str, Any]]:
    """Held-out figures per category for a fitted model (categories it did not learn are left out)."""
    predictions = model.predict(data.texts)
    figures: dict[str, dict[str, Any]] = {}
    for category, scores in predictions.items():
        rows = [i for i, row in enumerate(data.labels) if category in row]
        y = [data.labels[i][category] for i in rows]
        result = category_figures(y, scores[rows], threshold=None)
        low, high = auprc_interval(y, scores[rows])
        figures[category] = {
            "n": result.n,
            "positives": result.positives,
            "prevalence": round(result.prevalence, 4),
            "auprc": None if result.auprc is None else round(result.auprc, 4),
            "auprc_low": None if low is None else round(low, 4),
            "auprc_high": None if high is None else round(high, 4),
            "f1_threshold": f1_threshold(y, scores[rows]),
        }
    return figures


def known_limits(counts: dict[str, dict[str, int]], learned: Sequence[str], sources: Counter[str]) -> str:
    lines = [
        "Learns surface wording (word and character n-grams): paraphrase, sarcasm, quotes and counter-speech "
        "are its weak points, and it knows only languages present in its training data.",
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


def model_train(*, actor: User | str, holdout: float = 0.2, seed: int = 0) -> ModelVersion:
    """Fit a new version on the verified and imported labels, measure it on a held-out share, and measure
    the active version on the same held-out rows so promotion compares like with like."""
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
