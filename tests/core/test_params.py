"""Ids and numbers read from forms and query strings: junk is refused naming the field, never a 500."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.http import QueryDict
from django.test import Client

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import User
from ops_platform.core.params import (
    MAX_ID,
    ModelIdsChoiceField,
    id_parse,
    param_id,
    param_ids,
    param_int,
    param_object,
)
from queues.models import Queue

pytestmark = pytest.mark.django_db

JUNK = ["²", "١٢", "٣", "9" * 30, str(MAX_ID + 1), "-7", "0", "abc", "1.5", "1e3", " ", "x" * 100_000, "\x00"]


@pytest.mark.parametrize("raw", JUNK, ids=range(len(JUNK)))
def test_anything_but_an_ascii_id_in_range_is_refused_naming_the_field(raw: str):
    with pytest.raises(ApplicationError) as refused:
        id_parse(raw, field="to_user")

    assert refused.value.field == "to_user"
    assert refused.value.status_code == 400
    assert len(refused.value.message) < 200, "the refusal does not echo a long value back"


def test_ids_in_range_are_read():
    assert id_parse("1", field="f") == 1
    assert id_parse(f" {MAX_ID} ", field="f") == MAX_ID
    assert param_id(QueryDict("a=42"), "a") == 42
    assert param_id(QueryDict("a="), "a") is None
    assert param_ids(QueryDict("items=3&items=&items=5"), "items") == [3, 5]
    with pytest.raises(ApplicationError, match="choose one"):
        param_id(QueryDict(""), "a", required=True)


def test_whole_numbers_are_read_within_their_bounds():
    assert param_int(QueryDict("n=-3"), "n", minimum=-10, maximum=10) == -3
    assert param_int(QueryDict("n="), "n", minimum=0, maximum=10, default=7) == 7
    for raw in ("11", "²", "9" * 30, "--1", "4.0"):
        with pytest.raises(ApplicationError) as refused:
            param_int(QueryDict(f"n={raw}"), "n", minimum=-10, maximum=10)
        assert refused.value.field == "n"


def test_an_object_outside_what_the_person_may_choose_is_refused_like_a_missing_one(intake_queue):
    retired = Queue.objects.create(slug="old", name="Old", is_active=False)
    active = Queue.objects.filter(is_active=True)

    assert param_object(QueryDict(f"queue={intake_queue.pk}"), "queue", active) == intake_queue
    for pk in (retired.pk, retired.pk + 1000):
        with pytest.raises(ApplicationError) as refused:
            param_object(QueryDict(f"queue={pk}"), "queue", active)
        assert refused.value.field == "queue"
        assert refused.value.message == f"queue: no queue {pk} you may choose."


@pytest.mark.parametrize("raw", ["9" * 30, "²", "-1", "abc"])
def test_a_multiple_choice_of_objects_refuses_junk_ids_as_invalid_not_with_a_crash(reviewer, raw: str):
    field = ModelIdsChoiceField(User.objects.all())

    with pytest.raises(ValidationError, match="is not a valid value"):
        field.clean([str(reviewer.pk), raw])

    assert field.clean([str(reviewer.pk)]).get() == reviewer


def test_a_page_view_that_lets_a_refusal_through_answers_its_4xx_naming_the_field(reviewer):
    client = Client(raise_request_exception=False)
    client.force_login(reviewer, backend="django.contrib.auth.backends.ModelBackend")

    response = client.post("/review/preferences", {"break_reminder_minutes": "²"})

    assert response.status_code == 400
    assert 'data-field="break_reminder_minutes"' in response.content.decode()
    assert "is not a whole number" in response.content.decode()
