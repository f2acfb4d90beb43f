"""The classifier panels' truth sources (final decisions, QA ground truth, imported labels) and the binary "any
violation" view, checked against scikit-learn, the drill-down's items and through the pages and the metrics API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.test import Client
from sklearn.metrics import confusion_matrix, precision_score, recall_score

from analytics.adapters import classifier_drift_table, classifier_pr_table, classifier_summary_table
from analytics.filters import TRUTHS, VIEWS, MetricFilter
from analytics.models import ClassifierView, TruthSource
from analytics.rollups import classifier_rollups_rebuild, classifier_rollups_refresh
from analytics.selectors.classifiers import classifier_items, classifier_metrics_at
from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import User
from qa.models import LabelTarget
from qa.services import ExternalLabel, labels_import
from queues.models import Decision
from tests.analytics import test_classifiers as generated
from tests.analytics.test_classifiers import HATE, MONDAY, PERIOD, World, at, generate

pytestmark = pytest.mark.django_db
world = generated.world  # the generated world's fixture
ANY_V1 = {"category": "any", "backend": "local", "model_version": "v1"}
CELLS = ("tp", "fp", "fn", "tn")


def _cells(y: np.ndarray, flagged: np.ndarray) -> dict[str, np.ndarray]:
    return {"tp": (y == 1) & flagged, "fp": (y == 0) & flagged, "fn": (y == 1) & ~flagged, "tn": (y == 0) & ~flagged}


def _login(user: User) -> Client:
    http = Client()
    http.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return http


def test_the_filters_choices_are_the_models_and_bad_ones_are_refused_by_field() -> None:
    assert tuple(TruthSource.values) == TRUTHS
    assert tuple(ClassifierView.values) == VIEWS
    for field, value in (("truth", "gut"), ("view", "pie")):
        with pytest.raises(ApplicationError) as refused:
            MetricFilter(start=MONDAY, end=MONDAY, **{field: value})
        assert refused.value.field == field


def test_any_violation_view_is_the_highest_score_against_any_violation(world: World) -> None:
    generate(world)
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    ids = np.array(world.items)
    s = np.array(world.scores)
    top = np.maximum(s, 1 - s)  # local:v1 scores hate s and violence 1 - s
    violations = dict(Decision.objects.filter(item_id__in=world.items).values_list("item_id", "is_violation"))
    y = np.array([int(violations[pk]) for pk in world.items])
    tn, fp, fn, tp = confusion_matrix(y, top >= 0.5).ravel()

    got = classifier_metrics_at(PERIOD, **ANY_V1)

    assert (got.tp, got.fp, got.fn, got.tn) == (tp, fp, fn, tn)
    assert got.precision == pytest.approx(precision_score(y, top >= 0.5))
    assert got.recall == pytest.approx(recall_score(y, top >= 0.5))
    for cell, mask in _cells(y, top >= 0.5).items():
        listed = classifier_items(PERIOD, **ANY_V1, cell=cell).values_list("pk", flat=True)
        assert set(listed) == set(ids[mask].tolist()), cell
    # The per-category view (the default) is as it was: no "any" rows.
    assert {r["category"] for r in classifier_summary_table(PERIOD).rows} == {"hate", "violence"}
    binary = MetricFilter(start=PERIOD.start, end=PERIOD.end, view="any")
    assert {r["category"] for r in classifier_summary_table(binary).rows} == {"any"}
    assert {r["category"] for r in classifier_pr_table(binary).rows} == {"any"}


def _import(qa_lead: User, world: World, picks: list[int], flips: set[int]) -> np.ndarray:
    """Ground truth imported for the picked items: the generated hate label, flipped for ``flips``."""
    labels = []
    for i in picks:
        hate = bool(world.labels[i]) ^ (i in flips)
        labels.append(
            ExternalLabel(
                item_id=world.items[i],
                rater="golden-team",
                labelled_at=at(MONDAY + timedelta(days=22)),
                is_violation=hate,
                policy=world.hate if hate else None,
            )
        )
    labels_import(actor=qa_lead, target=LabelTarget.GROUND_TRUTH, source="policy-golden-set", labels=labels)
    return np.array([int(x.is_violation) for x in labels])


def test_imported_labels_are_a_truth_source_of_their_own(world: World, qa_lead: User) -> None:
    generate(world)
    classifier_rollups_refresh()
    picks = list(range(0, len(world.items), 3))
    y = _import(qa_lead, world, picks, flips=set(picks[::7]))
    assert classifier_rollups_refresh()  # the import's weeks are recomputed
    s = np.array(world.scores)[picks]
    ids = np.array(world.items)[picks]
    tn, fp, fn, tp = confusion_matrix(y, s >= 0.5).ravel()

    got = classifier_metrics_at(PERIOD, **HATE, truth="imported")

    assert (got.tp, got.fp, got.fn, got.tn) == (tp, fp, fn, tn)
    assert got.precision == pytest.approx(precision_score(y, s >= 0.5))
    for cell, mask in _cells(y, s >= 0.5).items():
        listed = classifier_items(PERIOD, **HATE, truth="imported", cell=cell).values_list("pk", flat=True)
        assert set(listed) == set(ids[mask].tolist()), cell
    # The decision truth is untouched by the import.
    assert classifier_metrics_at(PERIOD, **HATE).n == len(world.items)
    # Imported labels have no vendor: a vendor's slice holds none of them.
    by_vendor = MetricFilter(start=PERIOD.start, end=PERIOD.end, vendor_id=world.vendor.pk)
    assert classifier_metrics_at(by_vendor, **HATE, truth="imported").n == 0
    assert not classifier_items(by_vendor, **HATE, truth="imported", cell="all").exists()


def _drilled(http: Client, url: str) -> set[int]:
    response = http.get(url)
    assert response.status_code == 200, url
    return set(response.context["listed"].values_list("pk", flat=True))


@pytest.mark.parametrize(("truth", "view"), [("decision", "any"), ("imported", "category"), ("imported", "any")])
def test_the_panels_figures_are_the_items_their_drill_downs_list(
    world: World, qa_lead: User, ops_manager: User, truth: str, view: str
) -> None:
    generate(world, n=300)
    _import(qa_lead, world, list(range(0, 300, 2)), flips=set(range(0, 300, 22)))
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    http = _login(ops_manager)
    f = MetricFilter(start=PERIOD.start, end=PERIOD.end, truth=truth, view=view)

    table = classifier_summary_table(f)

    assert table.rows
    assert table.drill is not None
    assert TruthSource(truth).label in table.title
    for row in table.rows:
        assert (row["category"] == "any") == (view == "any")
        fp_url = str(table.drill(row))
        assert f"clf_truth={truth}" in fp_url
        fp, tp = _drilled(http, fp_url), _drilled(http, fp_url.replace("clf_cell=fp", "clf_cell=tp"))
        assert (len(fp), len(tp)) == (row["fp"], row["tp"]), row
        if tp or fp:
            assert row["precision"] == pytest.approx(len(tp) / (len(tp) + len(fp)))
            assert row["precision_low"] <= row["precision"] <= row["precision_high"]
        expected = classifier_items(
            f,
            category=row["category"],
            backend=row["backend"],
            model_version=row["model_version"],
            truth=truth,
            cell="tp",
        )
        assert tp == set(expected.values_list("pk", flat=True))
    # The drift panel's weekly figures carry their intervals (or "too few"), like the summary's.
    drift = classifier_drift_table(f)
    assert drift.column("precision").interval == ("precision_low", "precision_high")
    assert all(r["precision_low"] is None or r["precision_low"] <= r["precision"] for r in drift.rows)


def test_the_truth_and_view_are_chosen_on_the_page_and_in_the_api(
    world: World, qa_lead: User, ops_manager: User
) -> None:
    generate(world, n=240)
    _import(qa_lead, world, list(range(0, 240, 2)), flips=set())
    classifier_rollups_rebuild(PERIOD.start, PERIOD.end)
    http = _login(ops_manager)
    period: dict[str, Any] = {"start": PERIOD.start, "end": PERIOD.end}

    page = http.get("/analytics/classifiers/", {**period, "truth": "imported", "view": "any"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="truth"' in html
    assert 'name="view"' in html
    assert "Imported labels (golden sets, crowd, vendor tools); any violation vs any category flagged" in html
    # Other areas carry the choices hidden.
    ops = http.get("/analytics/operations/", period).content.decode()
    assert '<input type="hidden" name="truth"' in ops

    api = http.get("/api/v1/metrics/classifier_summary", {**period, "truth": "imported", "view": "any"})
    assert api.status_code == 200, api.content
    body = api.json()
    assert body["filter"]["truth"] == "imported"
    assert body["filter"]["view"] == "any"
    categories = {row["category"] for row in body["rows"]}
    assert categories == {"any"}
    default = http.get("/api/v1/metrics/classifier_summary", period).json()
    assert "any" not in {row["category"] for row in default["rows"]}
    assert all("truth=imported" in url for url in body["drill"])

    refused = http.get("/api/v1/metrics/classifier_summary", {**period, "truth": "gut"})
    assert refused.status_code == 400
    assert [e["field"] for e in refused.json()["errors"]] == ["truth"]
