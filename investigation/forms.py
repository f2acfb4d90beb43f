"""The investigation search's filter, one form for the page and the JSON API: a bad value is refused naming its
field (the page marks the input, the API lists the field)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms

from investigation.selectors import PAGE_SIZE, SearchFilter, search_scope_for
from ops_platform.core.models import ClassifierCategory, Policy, User
from ops_platform.core.params import MAX_ID
from queues.models import Queue

ISO = ["%Y-%m-%d"]  # what a date input submits and the API documents
DATE = forms.DateInput(attrs={"type": "date"})
MAX_TEXT = 200  # the words of a search, not a document
DECISIONS = [("", "Any decision"), ("violation", "Violation"), ("no_violation", "No violation"), ("none", "Undecided")]


class SearchForm(forms.Form):
    q = forms.CharField(label="Text", required=False, max_length=MAX_TEXT, strip=True)
    item = forms.IntegerField(label="Item id", required=False, min_value=1, max_value=MAX_ID)
    external_id = forms.CharField(label="External id", required=False, max_length=200)
    source = forms.SlugField(label="Source", required=False, max_length=100)
    author = forms.CharField(label="Author reference", required=False, max_length=200)
    queue = forms.ModelChoiceField(Queue.objects.order_by("name"), required=False, empty_label="Any queue")
    policy = forms.ModelChoiceField(Policy.objects.order_by("name"), required=False, empty_label="Any policy")
    decision = forms.ChoiceField(choices=DECISIONS, required=False)
    received_from = forms.DateField(
        label="Received from",
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    received_to = forms.DateField(
        label="Received to", required=False, input_formats=["%Y-%m-%d"], widget=forms.DateInput(attrs={"type": "date"})
    )
    score_category = forms.ChoiceField(
        label="Score category", choices=[("", "Any category"), *ClassifierCategory.choices], required=False
    )
    score_min = forms.FloatField(label="Score at least", required=False, min_value=0.0, max_value=1.0)
    score_max = forms.FloatField(label="Score at most", required=False, min_value=0.0, max_value=1.0)
    before = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID, widget=forms.HiddenInput)

    def __init__(self, *args: Any, queues: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if queues is not None:  # a vendor's people choose among the queues they may search
            self.fields["queue"].queryset = queues  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("received_from"), data.get("received_to")
        if isinstance(start, date) and isinstance(end, date) and start > end:
            self.add_error("received_to", "Must not be before 'received from'.")
        low, high = data.get("score_min"), data.get("score_max")
        if low is not None and high is not None and low > high:
            self.add_error("score_max", "Must not be below 'score at least'.")
        if not data.get("score_category"):
            for name in ("score_min", "score_max"):
                if data.get(name) is not None:
                    self.add_error(name, "Choose the category the score range is about.")
        return data

    def search_filter(self) -> SearchFilter:
        """The valid form's filter (call after ``is_valid()``)."""
        d = self.cleaned_data
        return SearchFilter(
            text=d.get("q") or "",
            item_id=d.get("item"),
            external_id=d.get("external_id") or "",
            source=d.get("source") or "",
            author=d.get("author") or "",
            queue_id=d["queue"].pk if d.get("queue") else None,
            policy_id=d["policy"].pk if d.get("policy") else None,
            decision=d.get("decision") or "",
            received_from=d.get("received_from"),
            received_to=d.get("received_to"),
            score_category=d.get("score_category") or "",
            score_min=d.get("score_min"),
            score_max=d.get("score_max"),
            before=d.get("before"),
            limit=PAGE_SIZE,
        )


def search_form_for(user: User, data: Any) -> SearchForm:
    """The search form as ``user`` may fill it: a vendor's people choose among the queues of their scope only (a
    queue outside it is refused like a queue that does not exist)."""
    scope = search_scope_for(user)
    queues = None if scope.queue_ids is None else Queue.objects.filter(pk__in=sorted(scope.queue_ids)).order_by("name")
    return SearchForm(data, queues=queues)
