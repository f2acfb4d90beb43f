"""The local model: what it may learn from, the registry and audited promotion, evaluation and the backend."""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from ops_platform.core.errors import NotPermitted
from ops_platform.core.models import AuditLog, Policy
from queues.models import Decision, GroundTruth, GroundTruthOrigin
from routing.models import LabeledExample, ModelStatus, ModelVersion
from routing.scoring.pipeline import items_score
from routing.scoring.registry import model_active, model_promote
from routing.scoring.training import LabeledFileError, labeled_file_read, labeled_import, model_train, training_data
from tests.support.datasets import LABELLED_SET

from .conftest import dataset_rows, items_make

pytestmark = pytest.mark.django_db


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def test_the_shared_set_reads_with_missing_keys_as_unknown() -> None:
    data = labeled_file_read(LABELLED_SET)
    counts = data.category_counts()
    # The figures of routing/scoring/seed/README.md.
    assert len(data.texts) == 1680
    assert counts["sexual"] == {"n": 984, "positives": 237}
    assert counts["violence/graphic"] == {"n": 1447, "positives": 24}


def test_csv_with_label_columns(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "hate", "V", "note"])
        writer.writerows([["one", "1", "0", "x"], ["two", "", "1", "y"]])
    data = labeled_file_read(path)
    assert data.texts == ["one", "two"]
    assert data.labels == [{"hate": 1, "violence": 0}, {"violence": 1}]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"prompt": "a", "S": 2}\n', "line 1, S: label must be 0 or 1"),
        ('{"S": 1}\n', "line 1: no text field"),
        ("not json\n", "line 1: not JSON"),
    ],
)
def test_bad_labeled_files_name_the_line(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(LabeledFileError, match=problem):
        labeled_file_read(path)


def test_import_is_idempotent(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "set.jsonl.gz", dataset_rows(30))
    assert labeled_import(path=path, dataset="mod") == (30, 0)
    assert labeled_import(path=path, dataset="mod") == (0, 30)
    assert LabeledExample.objects.filter(dataset="mod").count() == 30


def test_training_learns_only_from_verified_decisions_and_imported_sets(reviewer: Any, hate_policy: Policy) -> None:
    verified, raw = items_make("verified hateful text", "merely decided text")
    for item in (verified, raw):
        Decision.objects.create(
            item=item, reviewer=reviewer, policy=hate_policy, is_violation=True, decided_at=timezone.now()
        )
    GroundTruth.objects.create(
        item=verified,
        origin=GroundTruthOrigin.ADJUDICATED,
        is_violation=True,
        policy=hate_policy,
        recorded_at=timezone.now(),
    )
    LabeledExample.objects.create(dataset="set", external_ref="1", text="imported", labels={"sexual": 1})

    data = training_data()
    seed = labeled_file_read(settings.SCORING_SEED_SET)
    # The seed set first, then what people verified and imported, added to it: never a raw decision.
    assert data.texts[: len(seed.texts)] == seed.texts
    assert sorted(data.texts[len(seed.texts) :]) == ["imported", "verified hateful text"]
    assert data.labels[data.texts.index("verified hateful text")] == {"hate": 1, "hate/threatening": 1}
    assert data.sources == {"seed:seed-slice": len(seed.texts), "set": 1, "ground_truth:adjudicated": 1}


def test_a_later_verification_supersedes_an_earlier_one(hate_policy: Policy) -> None:
    [item] = items_make("disputed text")
    GroundTruth.objects.create(
        item=item,
        origin=GroundTruthOrigin.QA_VERIFIED,
        is_violation=True,
        policy=hate_policy,
        recorded_at=timezone.now(),
    )
    GroundTruth.objects.create(
        item=item, origin=GroundTruthOrigin.ADJUDICATED, is_violation=False, recorded_at=timezone.now()
    )
    data = training_data()
    [row] = [labels for text, labels in zip(data.texts, data.labels, strict=True) if text == "disputed text"]
    assert set(row.values()) == {0}
    assert len(row) == 8


def test_train_register_promote_and_refuse_a_worse_version(tmp_path: Path, settings: Any) -> None:
    rows = dataset_rows(600)
    settings.SCORING_SEED_SET = str(write_jsonl(tmp_path / "seed.jsonl.gz", rows[:5] + rows[-1:]))
    labeled_import(path=write_jsonl(tmp_path / "good.jsonl.gz", rows), dataset="good")
    first = model_train(actor="trainer", seed=1, folds=0)
    assert (first.version, first.status) == (1, ModelStatus.CANDIDATE)
    assert first.metrics["sexual"]["auprc"] > first.metrics["sexual"]["prevalence"]
    assert first.training_data["held_out"] == 120
    assert first.training_data["baseline"] == {}
    assert "violence/graphic" in first.known_limits  # too few positives in 600 rows to learn it
    model_promote(candidate=first, actor="trainer")
    assert model_active() == first

    # A quarter of the data makes a weaker model; both are measured on the new version's held-out rows.
    LabeledExample.objects.all().delete()
    labeled_import(path=write_jsonl(tmp_path / "small.jsonl.gz", rows[:150]), dataset="small")
    second = model_train(actor="trainer", seed=1, folds=0)
    assert second.training_data["baseline"]["version"] == "local-v1"
    with pytest.raises(NotPermitted, match="worse than the active local-v1"):
        model_promote(candidate=second, actor="trainer")

    second.refresh_from_db()
    assert second.status == ModelStatus.REJECTED
    assert model_active() == first
    actions = list(AuditLog.objects.filter(target_type="routing.modelversion").values_list("action", flat=True))
    assert sorted(actions) == ["model.promote", "model.promotion_refused"]


def test_the_local_backend_scores_with_the_active_version(local_model: ModelVersion) -> None:
    items = items_make("I want to kill myself tonight", "Great match yesterday, well played")
    report = items_score(item_ids=[i.pk for i in items])
    assert report.scored == {"local": 2}
    harm, fine = (i.scores.get() for i in items)
    assert harm.model_version == "local-v1"
    assert harm.scores["self-harm"] > fine.scores["self-harm"]
    assert all(0 <= v <= 1 for v in harm.scores.values())


def test_evaluate_command_cross_validates_and_prints_every_figure(tmp_path: Path, capsys: Any) -> None:
    path = write_jsonl(tmp_path / "eval.jsonl.gz", dataset_rows(500))
    call_command("classifier_evaluate", str(path), "--folds", "3", "--resamples", "200", "--json")
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "3-fold stratified cross-validation on eval.jsonl.gz"
    assert result["scored"] == 500
    sexual = result["categories"]["sexual"]
    assert sexual["prevalence"] == pytest.approx(sexual["positives"] / sexual["n"])
    for figure in ("auprc", "roc_auc", "recall_at_target"):
        estimate = sexual[figure]
        assert estimate["low"] <= estimate["value"] <= estimate["high"]
    assert sexual["target_precision"] == 0.9
    assert sexual["at_threshold"]["threshold"] == 0.5
    assert result["overall"]["auprc"]["value"] > result["overall"]["prevalence"]


def test_train_command_promotes_and_prints_the_card(tmp_path: Path, capsys: Any) -> None:
    labeled_import(path=write_jsonl(tmp_path / "set.jsonl.gz", dataset_rows(400)), dataset="set")
    examples = len(training_data().texts)
    call_command("classifier_train", "--promote", "--folds", "0")
    out = capsys.readouterr().out
    held_out = math.ceil(examples * 0.2)
    assert f"local-v1: {examples - held_out} training and {held_out} held-out examples" in out
    assert "seed:seed-slice" in out
    assert "is now active" in out
    assert ModelVersion.objects.get().status == ModelStatus.ACTIVE


def test_cached_char_ngrams_equal_sklearns_char_wb_features() -> None:
    from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer

    from routing.scoring.local_model import CharNgramCounts

    texts = [r["prompt"] for r in dataset_rows(400)] + ["a b", "Ünïcödé  façade\\tx", "😀 ok", "", "I"]
    train, test = texts[:300], texts[300:]
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True).fit(train)
    counts = CharNgramCounts(ngram_range=(2, 5), min_df=2).fit(train)
    ours = TfidfTransformer(sublinear_tf=True).fit(counts.transform(train))
    assert counts.vocabulary_ == reference.vocabulary_
    difference = reference.transform(test) - ours.transform(counts.transform(test))
    assert abs(difference).max() < 1e-12
    counts.transform(test)  # a second pass comes from the word cache and must give the same counts
    assert (counts.transform(test) != CharNgramCounts(ngram_range=(2, 5), min_df=2).fit(train).transform(test)).nnz == 0


def test_word_lists_count_words_stems_phrases_and_the_pairs_that_make_a_policy() -> None:
    from routing.scoring.wordlists import NAMES, PAIRS, WordLists

    texts = [
        "I will kill you, you IDIOT!!",
        "Strangled and beheaded: the butchers.",
        "nothing to see here",
        "she wants to end my life... I mean her own",
    ]
    features = WordLists().features(texts)
    assert features.shape == (len(texts), len(NAMES) + len(PAIRS))
    counts = dict(zip(NAMES, np.expm1(features[0, : len(NAMES)]).round(6), strict=True))
    assert counts["violence"] == 1
    assert counts["threat"] == 1
    assert counts["insult"] == 1
    assert counts["second_person"] == 2
    assert counts["sexual"] == 0
    pairs = dict(zip(PAIRS, features[0, len(NAMES) :], strict=True))
    assert pairs[("second_person", "insult")] == 1
    assert pairs[("second_person", "violence")] == 1
    assert pairs[("minor", "sexual")] == 0
    violence = NAMES.index("violence")
    assert np.expm1(features[1, violence]).round(6) == 3  # stems: strangl, behead, butcher
    assert not features[2].any()
    assert np.expm1(features[3, NAMES.index("self_harm_phrase")]).round(6) == 1


def test_word_lists_give_the_same_features_from_their_cache_and_after_pickling() -> None:
    import pickle

    from routing.scoring.wordlists import WordLists

    texts = [r["prompt"] for r in dataset_rows(200)]
    lists = WordLists()
    first = lists.features(texts)
    assert np.array_equal(lists.features(texts), first)  # the second pass reads the word cache
    restored = pickle.loads(pickle.dumps(lists))  # noqa: S301 (our own object, as the model registry stores it)
    assert restored._cache == {}  # the cache is not stored in the artifact
    assert np.array_equal(restored.features(texts), first)


def test_the_stackers_read_every_base_the_lexicons_and_the_word_lists(trained_classifier: Any) -> None:
    """Stack inputs: each category's base log-odds, any violation's, three lexicon log-odds, the word lists;
    scoring through those pieces by hand gives what ``predict`` gives."""
    from scipy.special import expit

    from routing.scoring.local_model import stack_inputs
    from routing.scoring.wordlists import WIDTH

    model = trained_classifier
    assert model.stack_weights.shape == (len(model.categories) + 1 + 3 + WIDTH, len(model.categories))
    assert model.any_weights.shape == (model.weights.shape[0],)
    assert model.any_weights.any()
    texts = ["I will kill you, you idiot", "a recipe for lemon cake", "the kids were naked in the photos"]
    features = model.vectorizer.transform(texts)
    inputs = stack_inputs(model.base(features), model.lexical(texts))
    by_hand = expit(inputs @ model.stack_weights + model.stack_intercepts)
    predicted = model.predict(texts)
    for j, category in enumerate(model.categories):
        assert np.allclose(predicted[category], by_hand[:, j])


def test_lexicon_scores_equal_the_packages_outputs() -> None:
    """The shipped arrays reproduce alt-profanity-check 1.9.1 and HateSonar 0.1.0 as the packages themselves
    scored these texts (``tests/routing/data/lexicon-reference.json``, written with the packages installed)."""
    from routing.scoring.lexicons import Lexicons

    reference = json.loads((Path(__file__).parent / "data" / "lexicon-reference.json").read_text())["rows"]
    ours = Lexicons.load().scores([r["text"] for r in reference])
    theirs = np.array([[r["profanity"], r["hate_speech"], r["offensive"]] for r in reference])
    assert np.abs(ours[:, 0] - theirs[:, 0]).max() < 1e-12
    assert np.abs(ours[:, 1:] - theirs[:, 1:]).max() < 1e-5  # HateSonar runs in float32 under onnxruntime
