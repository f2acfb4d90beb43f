"""Lists of tables that grow with traffic: keyset pages (every row once, in order, whatever the keys' directions)
and the admin's changelists (estimated count when unfiltered, filter choices by a loose index scan)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F, FloatField, Value
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ops_platform.core.admin import EstimatedCountPaginator, distinct_values
from ops_platform.core.errors import ApplicationError
from ops_platform.core.keyset import keyset_page
from queues.models import Decision, ItemState, Queue, ReviewItem
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _items(queue: Queue, n: int) -> list[ReviewItem]:
    now = timezone.now()
    return [
        ReviewItem.objects.create(
            source=("web", "app", "api")[i % 3],
            external_id=f"k{i}",
            received_at=now - timedelta(minutes=i // 3),  # ties of three across page boundaries
            state=ItemState.QUEUED,
            queue=queue,
            priority=i % 4,
            text=f"item {i}",
        )
        for i in range(n)
    ]


def _walk(queryset, size: int) -> list[int]:
    seen, cursor = [], None
    while True:
        page = keyset_page(queryset, cursor, size)
        seen += [row.pk for row in page.rows]
        if not page.has_next:
            return seen
        cursor = page.after


def test_keyset_pages_list_every_row_once_in_the_lists_order(intake_queue: Queue) -> None:
    _items(intake_queue, 23)
    for ordering in (["-received_at", "-id"], ["priority", "-received_at", "pk"], ["-priority", "id"]):
        queryset = ReviewItem.objects.order_by(*ordering)
        assert _walk(queryset, 5) == list(queryset.values_list("pk", flat=True)), ordering
    # An annotation as a key (the classifier drill-down orders by its score, highest first).
    scored = ReviewItem.objects.annotate(score=F("priority") * Value(0.25, output_field=FloatField()))
    scored = scored.order_by("-score", "pk")
    assert _walk(scored, 4) == list(scored.values_list("pk", flat=True))


@pytest.mark.parametrize("cursor", ["not json", "[1]", '["yesterday", 3]', "[null, 3]", '{"a": 1}'])
def test_a_cursor_that_is_not_a_position_is_refused_naming_its_parameter(intake_queue: Queue, cursor: str) -> None:
    _items(intake_queue, 3)
    with pytest.raises(ApplicationError) as refused:
        keyset_page(ReviewItem.objects.order_by("-received_at", "-id"), cursor, 2)
    assert refused.value.field == "after"


def test_distinct_values_reads_each_value_once(intake_queue: Queue) -> None:
    _items(intake_queue, 7)
    assert distinct_values(ReviewItem, "source") == ["api", "app", "web"]


def test_an_unfiltered_large_list_is_counted_by_the_estimate_a_filtered_one_exactly(
    intake_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    _items(intake_queue, 6)
    monkeypatch.setattr("ops_platform.core.admin.estimated_rows", lambda model: 2_000_000)
    assert EstimatedCountPaginator(ReviewItem.objects.order_by("-pk"), 50).count == 2_000_000
    assert EstimatedCountPaginator(ReviewItem.objects.filter(source="web").order_by("-pk"), 50).count == 2
    monkeypatch.setattr("ops_platform.core.admin.estimated_rows", lambda model: 40)  # small: counted
    assert EstimatedCountPaginator(ReviewItem.objects.order_by("-pk"), 50).count == 6


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the estimate is PostgreSQL's")
def test_the_estimate_is_postgresqls_after_analyze(intake_queue: Queue) -> None:
    from ops_platform.core.admin import estimated_rows

    _items(intake_queue, 9)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE queues_reviewitem")
    assert estimated_rows(ReviewItem) == 9


def test_item_and_decision_changelists_show_with_their_filters(admin_user, intake_queue: Queue, reviewer) -> None:
    items = _items(intake_queue, 4)
    Decision.objects.create(
        item=items[0], reviewer=reviewer, queue=intake_queue, is_violation=False, decided_at=timezone.now()
    )
    client = Client()
    assert client.login(username=admin_user.username, password=PASSWORD)
    page = client.get("/admin/queues/reviewitem/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "?source=api" in html  # the source filter's choices
    assert "?source=web" in html
    assert client.get("/admin/queues/reviewitem/?source=web").context["cl"].result_count == 2
    decisions = client.get("/admin/queues/decision/")
    assert decisions.status_code == 200
    assert decisions.context["cl"].result_count == 1


def test_an_estimated_changelist_count_says_about_and_an_exact_one_does_not(
    admin_user, intake_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    _items(intake_queue, 3)
    client = Client()
    assert client.login(username=admin_user.username, password=PASSWORD)
    monkeypatch.setattr("ops_platform.core.admin.estimated_rows", lambda model: 2_000_000)
    estimated = client.get("/admin/queues/reviewitem/")
    assert estimated.status_code == 200
    assert "about 2000000 review items" in " ".join(estimated.content.decode().split())
    filtered = client.get("/admin/queues/reviewitem/?source=web")
    assert "about" not in filtered.content.decode().split("result-count", 1)[1].split("</span>", 1)[0]
    # The users' list too: thousands of reviewers are counted by the estimate when unfiltered.
    users = client.get("/admin/core/user/")
    assert users.status_code == 200
    assert users.context["cl"].paginator.estimated
    assert "about 2000000 users" in " ".join(users.content.decode().split())


def test_the_user_changelist_reads_roles_without_a_query_per_row(admin_user) -> None:
    from ops_platform.core.models import Role, User
    from ops_platform.core.services import user_create

    def page_queries() -> int:
        client = Client()
        assert client.login(username=admin_user.username, password=PASSWORD)
        with CaptureQueriesContext(connection) as seen:
            response = client.get("/admin/core/user/")
        assert response.status_code == 200
        return len(seen.captured_queries)

    user_create(actor="test", username="few-0", password="x" * 20, roles=[Role.REVIEWER])
    few = page_queries()
    for i in range(1, 12):
        user_create(actor="test", username=f"few-{i}", password="x" * 20, roles=[Role.REVIEWER, Role.SENIOR_REVIEWER])
    assert page_queries() == few
    assert User.objects.count() >= 13


def test_the_user_page_lists_every_permission_escaped_and_the_held_ones_selected(admin_user) -> None:
    from django.contrib.auth.models import Permission

    from ops_platform.core.models import User

    held = Permission.objects.get(codename="view_analytics")
    target = User.objects.create_user(username="perm-holder", password="x" * 20)
    target.user_permissions.add(held)
    client = Client()
    assert client.login(username=admin_user.username, password=PASSWORD)
    page = client.get(f"/admin/core/user/{target.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    picker = html.split('name="user_permissions"', 1)[1].split("</select>", 1)[0]
    assert picker.count("<option ") == Permission.objects.count()
    assert f'<option value="{held.pk}" selected>' in picker
    assert 'class="selectfilter"' in html.split('name="user_permissions"', 1)[1].split(">", 1)[0]
