"""``field__any``: the rows ``__in`` would give, with the list sent as one array on PostgreSQL."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from queues.models import ReviewItem
from routing.models import ClassifierScore

pytestmark = pytest.mark.django_db


def test_any_matches_what_in_matches_on_plain_fields_keys_and_foreign_keys() -> None:
    items = ReviewItem.objects.bulk_create(
        ReviewItem(source="s", external_id=str(n), author_ref=f"a{n % 3}", received_at=timezone.now()) for n in range(9)
    )
    ClassifierScore.objects.bulk_create(ClassifierScore(item=i, backend="local", scores={}) for i in items[:4])
    ids = [i.pk for i in items[2:6]]

    assert list(ReviewItem.objects.filter(pk__any=ids).order_by("pk")) == items[2:6]
    by_author = ReviewItem.objects.filter(author_ref__any={"a0", "a2", "nobody"})
    assert set(by_author.values_list("external_id", flat=True)) == {"0", "2", "3", "5", "6", "8"}
    assert ClassifierScore.objects.filter(item__any=ids).count() == 2
    assert ClassifierScore.objects.filter(item_id__any=ids).count() == 2
    assert not ReviewItem.objects.filter(pk__any=[]).exists()


@pytest.mark.postgres
def test_on_postgresql_the_list_is_one_parameter() -> None:
    with CaptureQueriesContext(connection) as run:
        list(ReviewItem.objects.filter(pk__any=list(range(1, 501))))
    (query,) = run.captured_queries
    assert '"queues_reviewitem"."id" = ANY(' in query["sql"]
