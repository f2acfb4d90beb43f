"""Labels made elsewhere imported by API (POST /api/v1/qa/label-imports) as ground truth or as calibration ratings:
provenance kept, all or nothing, the bad row named, replayed by Idempotency-Key, the rating service's checks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import ApiScope, Policy, User
from qa.models import CalibrationRating, ImportedLabel, LabelImport, LabelTarget
from qa.services import ExternalLabel, labels_import, session_create
from queues.models import GroundTruth, GroundTruthOrigin, Queue, ReviewItem
from queues.selectors import ground_truth_latest
from tests.qa.factories import qa_person
from tests.qa.test_review_api import Caller, api_caller, assert_error
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db

URL = "/api/v1/qa/label-imports"


@pytest.fixture
def hate(db: None) -> Policy:
    return Policy.objects.create(slug="hate", name="Hate")


@pytest.fixture
def items(intake_queue: Queue) -> list[ReviewItem]:
    return [item_queued(intake_queue, text=f"post {n}") for n in range(4)]


@pytest.fixture
def qa_tool(db: None) -> Caller:
    return api_caller(scopes=[ApiScope.QA_WRITE, ApiScope.QA_READ], vendor=None, source="qa-tool")


def _when(minutes_ago: int = 60) -> str:
    return (timezone.now() - timedelta(minutes=minutes_ago)).isoformat()


def _truth_body(items: list[ReviewItem], **changes: Any) -> dict[str, Any]:
    body = {
        "reviewer": "quinn",
        "target": "ground_truth",
        "source": "policy-golden-set",
        "labels": [
            {
                "item": items[0].pk,
                "is_violation": True,
                "policy": "hate",
                "rater": "ana@policy",
                "labelled_at": _when(),
            },
            {"item": items[1].pk, "is_violation": False, "rater": "ana@policy", "labelled_at": _when(30)},
        ],
    }
    return {**body, **changes}


def test_ground_truth_is_imported_with_its_provenance_and_replays_by_key(qa_tool, qa_lead, items, hate):
    body = _truth_body(items)
    first = qa_tool.post(URL, body, **{"Idempotency-Key": "golden-1"})
    assert first.status_code == 201, first.json()
    out = first.json()
    assert (out["target"], out["source"], out["imported"], out["session"]) == (
        "ground_truth",
        "policy-golden-set",
        2,
        None,
    )

    truths = {t.item_id: t for t in GroundTruth.objects.all()}
    assert set(truths) == {items[0].pk, items[1].pk}
    assert {t.origin for t in truths.values()} == {GroundTruthOrigin.IMPORTED}
    assert (truths[items[0].pk].is_violation, truths[items[0].pk].policy) == (True, hate)
    assert truths[items[0].pk].recorded_by == qa_lead
    latest = {row.item_id: row.origin for row in ground_truth_latest()}
    assert latest[items[1].pk] == GroundTruthOrigin.IMPORTED
    label = ImportedLabel.objects.select_related("batch__client").get(item=items[0])
    assert (label.rater, label.batch.source, label.batch.imported_by) == ("ana@policy", "policy-golden-set", qa_lead)
    assert label.batch.client is not None
    assert label.batch.client.name == "qa-tool"
    assert label.ground_truth == truths[items[0].pk]
    assert abs((label.labelled_at - (timezone.now() - timedelta(minutes=60))).total_seconds()) < 60

    again = qa_tool.post(URL, body, **{"Idempotency-Key": "golden-1"})
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == out
    assert (GroundTruth.objects.count(), LabelImport.objects.count()) == (2, 1)
    other = {**body, "source": "another"}
    assert_error(qa_tool.post(URL, other, **{"Idempotency-Key": "golden-1"}), 422, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"policy": "no-such-policy"}, "labels[1].policy"),
        ({"item": 987654321}, "labels[1].item"),
        ({"is_violation": True, "policy": None}, "labels[1].policy"),
        ({"labelled_at": (timezone.now() + timedelta(days=2)).isoformat()}, "labels[1].labelled_at"),
        ({"rater": "   "}, "labels[1].rater"),
        ({"labelled_at": "yesterday"}, "labels[1].labelled_at"),
    ],
)
def test_a_bad_row_is_refused_by_its_index_and_nothing_is_written(qa_tool, qa_lead, items, hate, row, field):
    body = _truth_body(items)
    body["labels"][1] = {**body["labels"][1], **row}

    assert_error(qa_tool.post(URL, body), 400, field=field)
    assert (GroundTruth.objects.count(), ImportedLabel.objects.count(), LabelImport.objects.count()) == (0, 0, 0)


def test_imports_need_the_qa_role_and_the_scope(qa_tool, qa_lead, reviewer, items, hate, vendor_a, vendor_reviewer):
    assert_error(qa_tool.post(URL, _truth_body(items, reviewer="alice")), 403, "forbidden")
    no_scope = api_caller(scopes=[ApiScope.REVIEWS_WRITE], vendor=None, source="reviews-only")
    assert no_scope.post(URL, _truth_body(items)).status_code == 403
    vendor_tool = api_caller(scopes=[ApiScope.QA_WRITE], vendor=vendor_a, source="vendor-qa")
    assert_error(vendor_tool.post(URL, _truth_body(items)), 403, field="reviewer")  # quinn is no vendor A person
    with pytest.raises(NotPermitted):
        labels_import(
            actor=reviewer,
            target=LabelTarget.GROUND_TRUTH,
            source="s",
            labels=[ExternalLabel(items[0].pk, "x", timezone.now(), False, None)],
        )
    assert_error(qa_tool.post(URL, _truth_body(items, labels=[])), 400, field="labels")
    assert_error(qa_tool.post(URL, _truth_body(items, session=1)), 400, field="session")


def test_calibration_ratings_are_imported_through_the_rating_service(
    qa_tool, qa_lead, reviewer, in_house_team, items, hate
):
    rita = qa_person("rita", in_house_team)
    session = session_create(
        actor=qa_lead, name="Crowd", item_ids=[i.pk for i in items[:3]], participants=[reviewer, rita]
    )
    row = {"is_violation": True, "policy": "hate", "labelled_at": _when()}
    body = {
        "reviewer": "quinn",
        "target": "calibration",
        "source": "crowd-platform",
        "session": session.pk,
        "labels": [
            {**row, "item": items[0].pk, "participant": "alice", "rater": "worker-17"},
            {**row, "item": items[0].pk, "participant": "rita", "rater": "worker-99", "is_violation": False},
            {**row, "item": items[1].pk, "participant": "alice", "rater": "worker-17", "rationale": "slur"},
        ],
    }

    done = qa_tool.post(URL, body)
    assert done.status_code == 201, done.json()
    ratings = {(r.session_item.item_id, r.participant.username): r for r in CalibrationRating.objects.all()}
    assert set(ratings) == {(items[0].pk, "alice"), (items[0].pk, "rita"), (items[1].pk, "alice")}
    assert ratings[(items[0].pk, "rita")].is_violation is False
    assert ratings[(items[1].pk, "alice")].rationale == "slur"
    assert ratings[(items[0].pk, "alice")].imported_label.rater == "worker-17"
    assert not GroundTruth.objects.exists()

    # Ratings are final: a row repeating one (earlier or in the batch) is a conflict naming it; nothing lands.
    repeat = {**body, "labels": [{**row, "item": items[2].pk, "participant": "rita", "rater": "w"}, body["labels"][0]]}
    assert_error(qa_tool.post(URL, repeat), 409, "conflict", field="labels[1].item")
    twice = {**body, "labels": [body["labels"][0] | {"item": items[2].pk}] * 2}
    assert_error(qa_tool.post(URL, twice), 409, "conflict", field="labels[1].item")
    assert CalibrationRating.objects.count() == 3
    # Only the session's items and participants; a participant the key may name.
    outside = {**body, "labels": [{**row, "item": items[3].pk, "participant": "alice", "rater": "w"}]}
    assert_error(qa_tool.post(URL, outside), 400, field="labels[0].item")
    stranger = {**body, "labels": [{**row, "item": items[2].pk, "participant": "quinn", "rater": "w"}]}
    assert_error(qa_tool.post(URL, stranger), 400, field="labels[0].participant")
    nobody = {**body, "labels": [{**row, "item": items[2].pk, "rater": "w"}]}
    assert_error(qa_tool.post(URL, nobody), 400, field="labels[0].participant")
    assert_error(qa_tool.post(URL, {**body, "session": None}), 400)
    # Closed: no rating lands any more.
    qa_tool.post(f"/api/v1/qa/calibration-sessions/{session.pk}/close", {"reviewer": "quinn"})
    late = {**body, "labels": [{**row, "item": items[2].pk, "participant": "rita", "rater": "w"}]}
    assert_error(qa_tool.post(URL, late), 409, "conflict", field="session")
    assert CalibrationRating.objects.count() == 3


def test_a_signed_in_qa_lead_imports_and_a_vendor_participant_is_not_nameable_by_key(
    qa_lead, reviewer, vendor_reviewer, items, hate
):
    session = session_create(
        actor=qa_lead, name="Mixed", item_ids=[i.pk for i in items[:2]], participants=[reviewer, vendor_reviewer]
    )
    body = {
        "target": "calibration",
        "source": "vendor-tool",
        "session": session.pk,
        "labels": [
            {"item": items[0].pk, "is_violation": False, "participant": "vic", "rater": "v", "labelled_at": _when()}
        ],
    }
    in_house_tool = api_caller(scopes=[ApiScope.QA_WRITE], vendor=None, source="in-house")
    assert_error(in_house_tool.post(URL, {**body, "reviewer": "quinn"}), 400, field="labels[0].participant")
    signed_in = Caller(user=User.objects.get(username="quinn"))
    assert signed_in.post(URL, body).status_code == 201
    assert CalibrationRating.objects.get().participant == vendor_reviewer
    assert LabelImport.objects.get().client is None


def _by_ref(item: ReviewItem, **row: Any) -> dict[str, Any]:
    return {"item_source": item.source, "external_id": item.external_id, **row}


def test_items_are_named_by_the_integrating_services_external_id(
    qa_tool, qa_lead, reviewer, in_house_team, items, hate
):
    body = _truth_body(items)
    body["labels"][1] = _by_ref(items[1], **{k: v for k, v in body["labels"][1].items() if k != "item"})
    done = qa_tool.post(URL, body)
    assert done.status_code == 201, done.json()
    assert set(GroundTruth.objects.values_list("item_id", flat=True)) == {items[0].pk, items[1].pk}
    assert ImportedLabel.objects.get(item=items[1]).rater == "ana@policy"

    # Calibration ratings too, through the same resolution.
    rita = qa_person("rita", in_house_team)
    session = session_create(
        actor=qa_lead, name="Ext", item_ids=[i.pk for i in items[:2]], participants=[reviewer, rita]
    )
    rating = {"is_violation": False, "participant": "rita", "rater": "w", "labelled_at": _when()}
    calibration = {**body, "target": "calibration", "session": session.pk, "labels": [_by_ref(items[0], **rating)]}
    assert qa_tool.post(URL, calibration).status_code == 201
    assert CalibrationRating.objects.get().session_item.item_id == items[0].pk
    outside = {**calibration, "labels": [_by_ref(items[3], **rating)]}
    assert_error(qa_tool.post(URL, outside), 400, field="labels[0].external_id")


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"item_source": "claims", "external_id": "never-sent"}, "labels[1].external_id"),
        ({"item_source": "elsewhere"}, "labels[1].external_id"),  # the item's external id, from another service
        ({"item_source": None}, "labels[1].item_source"),
        ({"external_id": None}, "labels[1].external_id"),
        ({"item": 1}, "labels[1].item"),  # both an id and a reference
    ],
)
def test_an_unknown_or_ambiguous_external_reference_is_refused_by_its_row_and_nothing_is_stored(
    qa_tool, qa_lead, items, hate, row, field
):
    body = _truth_body(items)
    reference = _by_ref(items[1], **{k: v for k, v in body["labels"][1].items() if k != "item"})
    body["labels"][1] = {k: v for k, v in {**reference, **row}.items() if v is not None}

    assert_error(qa_tool.post(URL, body), 400, field=field)
    assert (GroundTruth.objects.count(), ImportedLabel.objects.count(), LabelImport.objects.count()) == (0, 0, 0)

    # The service refuses the same rows itself, whoever calls it.
    good = ExternalLabel(items[0].pk, "r", timezone.now(), False, None)
    bad = ExternalLabel(
        row.get("item"),
        "r",
        timezone.now(),
        False,
        None,
        item_source=row.get("item_source", items[1].source) or "",
        external_id=row.get("external_id", items[1].external_id) or "",
    )
    with pytest.raises(ApplicationError) as refused:
        labels_import(actor=qa_lead, target=LabelTarget.GROUND_TRUTH, source="s", labels=[good, bad])
    assert refused.value.field == field
    assert not GroundTruth.objects.exists()
