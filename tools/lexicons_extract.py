"""Extract the two offline lexicon models the local classifier uses as features into plain arrays.

Run by hand (never at run time) when upgrading either package; needs the packages, not the project:

    pip install --target /tmp/lex alt-profanity-check==1.9.1 hatesonar==0.1.0 onnx onnxruntime
    PYTHONPATH=/tmp/lex python tools/lexicons_extract.py

- alt-profanity-check 1.9.1 (MIT): TF-IDF over 15,442 words and five sigmoid-calibrated linear SVMs, averaged.
- HateSonar 0.1.0 (MIT; trained on Davidson et al. 2017, MIT data): TF-IDF over 28,302 words and a softmax
  logistic regression over hate speech / offensive language / neither, shipped as ONNX.

Writes ``routing/scoring/seed/profanity-check.npz`` and ``hatesonar.npz`` and checks on the seed set that the
project's re-implementation (``routing.scoring.lexicons``) gives the packages' own outputs.
"""

from __future__ import annotations

import gzip
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "routing" / "scoring" / "seed"


def profanity_extract() -> None:
    import profanity_check  # type: ignore[import-not-found]

    vectorizer, model = profanity_check.profanity_check.vectorizer, profanity_check.profanity_check.model
    vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    fitted = model.calibrated_classifiers_
    assert all(f.method == "sigmoid" for f in fitted)
    np.savez_compressed(
        SEED / "profanity-check.npz",
        vocabulary=np.array(vocabulary),
        idf=vectorizer.idf_,
        coef=np.vstack([f.estimator.coef_.ravel() for f in fitted]),
        intercept=np.array([f.estimator.intercept_[0] for f in fitted]),
        a=np.array([f.calibrators[0].a_ for f in fitted]),
        b=np.array([f.calibrators[0].b_ for f in fitted]),
        token_pattern=np.array(vectorizer.token_pattern),
    )


def hatesonar_extract() -> None:
    import hatesonar  # type: ignore[import-not-found]
    import onnx  # type: ignore[import-not-found]
    from onnx import helper, numpy_helper

    path = Path(hatesonar.__file__).parent / "model" / "model.onnx"
    graph = onnx.load(str(path)).graph
    nodes = {n.op_type: n for n in graph.node}
    attr = {a.name: helper.get_attribute_value(a) for a in nodes["TfIdfVectorizer"].attribute}
    assert attr["mode"] == b"TF"
    assert attr["min_gram_length"] == attr["max_gram_length"] == 1
    tokenizer = {a.name: helper.get_attribute_value(a) for a in nodes["Tokenizer"].attribute}
    linear = {a.name: helper.get_attribute_value(a) for a in nodes["LinearClassifier"].attribute}
    assert linear["post_transform"] == b"SOFTMAX"
    assert list(linear["classlabels_ints"]) == [0, 1, 2]
    pool = [s.decode("utf-8") for s in attr["pool_strings"]]
    columns = list(attr["ngram_indexes"])
    vocabulary = [""] * len(pool)
    for word, column in zip(pool, columns, strict=True):
        vocabulary[column] = word
    idf = numpy_helper.to_array(next(i for i in graph.initializer if i.name == "idfcst"))
    coef = np.array(linear["coefficients"], dtype=np.float64).reshape(3, len(pool))
    np.savez_compressed(
        SEED / "hatesonar.npz",
        vocabulary=np.array(vocabulary),
        idf=idf.astype(np.float64),
        coef=coef,
        intercept=np.array(linear["intercepts"], dtype=np.float64),
        token_pattern=np.array(tokenizer["tokenexp"].decode()),
        classes=np.array(["hate_speech", "offensive_language", "neither"]),
    )


def _onnx_with_locale() -> Path:
    """The package's model with its lower-casing locale set to one every machine has (en_US may be absent)."""
    import hatesonar
    import onnx
    from onnx import helper

    model = onnx.load(str(Path(hatesonar.__file__).parent / "model" / "model.onnx"))
    for node in model.graph.node:
        if node.op_type == "StringNormalizer":
            node.attribute.append(helper.make_attribute("locale", "C.UTF-8"))
    path = Path(tempfile.mkdtemp()) / "hatesonar-c-locale.onnx"
    onnx.save(model, str(path))
    return path


def check() -> None:
    import hatesonar
    import profanity_check

    sys.path.insert(0, str(ROOT))
    from routing.scoring.lexicons import Lexicons

    with gzip.open(SEED / "openai-moderation-samples-1680.jsonl.gz", "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["prompt"] for line in f if line.strip()]
    ours = Lexicons.load().scores(texts)
    theirs = profanity_check.predict_prob(texts)
    print("profanity max |difference|", float(np.abs(ours[:, 0] - theirs).max()))
    sonar = hatesonar.Sonar(_onnx_with_locale())
    pinged = np.array([[c["confidence"] for c in sonar.ping(t)["classes"]][:2] for t in texts])
    print("hatesonar max |difference|", float(np.abs(ours[:, 1:] - pinged).max()))


if __name__ == "__main__":
    profanity_extract()
    hatesonar_extract()
    check()
