"""Forms for the QA pages: they parse and check input; ``qa.services`` decides what is allowed."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import Q, QuerySet

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import EnforcementAction, Policy, User, Vendor
from ops_platform.core.params import ModelIdsChoiceField, id_parse
from qa.models import SamplingPlan
from qa.services import RATE_FIELDS
from queues.models import ItemKind, ItemState, Queue

VIOLATION_CHOICES = [("no", "No violation"), ("yes", "Violation")]
GOLDEN_KIND_CHOICES = [(ItemKind.CONTENT.value, "Content"), (ItemKind.USER_REPORT.value, "User report")]


def reviewers() -> QuerySet[User]:
    """People who decide items (and so may be scoped by a plan or take part in calibration)."""
    perms = Q(groups__permissions__codename__in=["review_items", "perform_qa"])
    return User.objects.filter(perms, is_active=True).distinct().order_by("username")


class VerdictForm(forms.Form):
    """An outcome as QA records it: violation or not; for a violation, the policy and the action."""

    violation = forms.ChoiceField(choices=VIOLATION_CHOICES, widget=forms.RadioSelect)
    policy = forms.ModelChoiceField(Policy.objects.none(), required=False)
    action = forms.ModelChoiceField(EnforcementAction.objects.none(), required=False, empty_label="— no action")
    rationale = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=5000, required=False)

    def __init__(self, *args: Any, policies: Sequence[Policy], **kwargs: Any):
        super().__init__(*args, **kwargs)
        ids = [p.pk for p in policies]
        policy_field = self.fields["policy"]
        action_field = self.fields["action"]
        assert isinstance(policy_field, forms.ModelChoiceField)
        assert isinstance(action_field, forms.ModelChoiceField)
        policy_field.queryset = Policy.objects.filter(pk__in=ids)
        action_field.queryset = EnforcementAction.objects.filter(policies__in=ids, is_active=True).distinct()

    @property
    def is_violation(self) -> bool:
        return bool(self.cleaned_data.get("violation") == "yes")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("violation") != "yes":
            data["policy"] = data["action"] = None
            return data
        policy, action = data.get("policy"), data.get("action")
        if policy is None:
            self.add_error("policy", "A violation needs the policy it violates.")
        elif action is not None and not policy.enforcement_actions.filter(pk=action.pk).exists():
            self.add_error("action", f"'{action.name}' is not an action of {policy.name}.")
        return data


class AdjudicationForm(VerdictForm):
    severity = forms.FloatField(
        required=False, min_value=0, max_value=4, help_text="Weight of the original's error, above 0 and at most 4."
    )

    def __init__(self, *args: Any, policies: Sequence[Policy], **kwargs: Any):
        super().__init__(*args, policies=policies, **kwargs)
        self.fields["rationale"].required = True
        self.fields["rationale"].help_text = "The reviewer reads this on their coaching page."


class PlanForm(forms.ModelForm):
    reason = forms.CharField(max_length=500, required=False, help_text="Why this change (audit log).")

    class Meta:
        model = SamplingPlan
        fields = [
            "name",
            "queue",
            "policy",
            "vendor",
            "reviewer",
            "rate",
            "rate_violation",
            "rate_no_violation",
            "low_confidence_rate",
            "low_confidence_band",
            "auto_action_rate",
            "new_reviewer_decisions",
            "new_reviewer_rate",
            "is_active",
        ]
        labels = {
            "rate": "Random share",
            "rate_violation": "Rate for violations (stratified)",
            "rate_no_violation": "Rate for no-violation decisions (stratified)",
            "low_confidence_rate": "Rate for low-confidence classifier scores",
            "auto_action_rate": "Rate for rule auto-actions",
            "new_reviewer_decisions": "A reviewer's first N decisions",
            "new_reviewer_rate": "… drawn at this rate",
        }

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # A rate is a probability: refused on its own field, not only by the table's check constraint.
        for name in RATE_FIELDS:
            rate = self.fields[name]
            rate.validators += [MinValueValidator(0), MaxValueValidator(1)]
            rate.widget.attrs.update({"min": 0, "max": 1})
        reviewer = self.fields["reviewer"]
        assert isinstance(reviewer, forms.ModelChoiceField)
        reviewer.queryset = reviewers()
        queue = self.fields["queue"]
        assert isinstance(queue, forms.ModelChoiceField)
        queue.queryset = Queue.objects.filter(is_active=True).order_by("name")
        vendor = self.fields["vendor"]
        assert isinstance(vendor, forms.ModelChoiceField)
        vendor.queryset = Vendor.objects.order_by("name")


class SampleSizeForm(forms.Form):
    expected_error_rate = forms.FloatField(min_value=0, max_value=1, initial=0.05)
    margin = forms.FloatField(min_value=0.001, max_value=0.5, initial=0.02, help_text="± this much, e.g. 0.02")
    confidence = forms.TypedChoiceField(
        choices=[("0.9", "90%"), ("0.95", "95%"), ("0.99", "99%")], coerce=float, initial="0.95"
    )
    population = forms.IntegerField(min_value=1, required=False, help_text="Decisions in the period (optional).")
    decisions_per_month = forms.IntegerField(min_value=1, required=False, help_text="To turn n into a rate.")


def _yes(value: str) -> bool:
    return value == "yes"


class GoldenForm(forms.Form):
    queue = forms.ModelChoiceField(Queue.objects.filter(is_active=True).order_by("name"))
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "dir": "auto"}), max_length=20000)
    expected_is_violation = forms.TypedChoiceField(
        choices=VIOLATION_CHOICES, coerce=_yes, widget=forms.RadioSelect, label="Expected answer"
    )
    expected_policy = forms.ModelChoiceField(Policy.objects.filter(is_active=True), required=False)
    expected_action = forms.ModelChoiceField(EnforcementAction.objects.all(), required=False)
    rationale = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=5000, required=False)
    report_reasons = forms.CharField(max_length=500, required=False, help_text="Comma-separated.")
    kind = forms.ChoiceField(
        choices=[("", "content, or a user report when it has report reasons"), *GOLDEN_KIND_CHOICES], required=False
    )
    surface = forms.CharField(max_length=100, required=False)
    language = forms.CharField(max_length=16, required=False)
    # Copies must look like the queue's real items: left blank, these come from a recent real item of the queue.
    source = forms.SlugField(max_length=100, required=False, help_text="A client's source; blank: the queue's.")
    author_ref = forms.CharField(max_length=200, required=False, help_text="Blank: a recent author of the queue.")
    metadata = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="A JSON object as the client sends it; blank: a recent item's.",
    )

    def reasons(self) -> list[str]:
        return [r.strip() for r in self.cleaned_data.get("report_reasons", "").split(",") if r.strip()]

    def clean_metadata(self) -> dict[str, Any] | None:
        value = self.cleaned_data.get("metadata")
        if value in (None, "", {}):
            return None
        if not isinstance(value, dict):
            raise forms.ValidationError('Metadata is a JSON object, e.g. {"channel": "feed"}.')
        return value


class GoldenRateForm(forms.Form):
    queue = forms.ModelChoiceField(Queue.objects.filter(is_active=True).order_by("name"))
    rate = forms.FloatField(min_value=0, max_value=0.2, help_text="Share of the queue's intake, at most 0.2.")


MAX_SESSION_ITEMS = 100_000
MAX_ID_FILE_BYTES = 2_000_000  # 100,000 ids of up to 19 digits with separators


def ids_parse(tokens: list[str]) -> list[int]:
    if len(tokens) > MAX_SESSION_ITEMS:
        raise forms.ValidationError(f"At most {MAX_SESSION_ITEMS:,} items in a session.")
    try:
        return [id_parse(t, field="item_ids") for t in tokens]
    except ApplicationError:
        raise forms.ValidationError("Item ids are whole numbers.") from None


def ids_from_text(raw: str) -> list[int]:
    """Item ids separated by spaces, commas or new lines."""
    return ids_parse([p for p in re.split(r"[\s,]+", raw) if p])


def ids_from_csv(raw: str) -> list[int]:
    """The first column of a CSV file; a header line (not a number) is skipped."""
    rows = [row for row in csv.reader(io.StringIO(raw)) if row and row[0].strip()]
    if rows and not rows[0][0].strip().isdigit():
        rows = rows[1:]
    return ids_parse([row[0].strip() for row in rows])


class CalibrationForm(forms.Form):
    """A session's items from a list of ids (no length cap but the upload limit), a CSV file of ids, or a queue."""

    name = forms.CharField(max_length=200)
    item_ids = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Item ids, separated by spaces, commas or new lines.",
    )
    item_file = forms.FileField(required=False, label="or a CSV file", help_text="Item ids in the first column.")
    queue = forms.ModelChoiceField(
        Queue.objects.order_by("name"), required=False, label="or a queue's items", empty_label="—"
    )
    state = forms.ChoiceField(choices=[("", "any state"), *ItemState.choices], required=False)
    limit = forms.IntegerField(min_value=2, max_value=MAX_SESSION_ITEMS, initial=200, required=False)
    participants = ModelIdsChoiceField(User.objects.none(), widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        field = self.fields["participants"]
        assert isinstance(field, forms.ModelMultipleChoiceField)
        field.queryset = reviewers()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("item_file")
        sources = [bool(data.get("item_ids", "").strip()), upload is not None, data.get("queue") is not None]
        if sum(sources) != 1:
            raise forms.ValidationError("Give the items one way: ids, a CSV file, or a queue.")
        if upload is not None:
            if upload.size > MAX_ID_FILE_BYTES:
                self.add_error("item_file", "The file is too large for a session (at most 100,000 ids).")
                return data
            try:
                text = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                self.add_error("item_file", "The file is not UTF-8 text.")
                return data
            try:
                data["ids"] = ids_from_csv(text)
            except forms.ValidationError as exc:
                self.add_error("item_file", exc)
        elif data.get("queue") is None:
            try:
                data["ids"] = ids_from_text(data.get("item_ids", ""))
            except forms.ValidationError as exc:
                self.add_error("item_ids", exc)
        return data


class RatingForm(forms.Form):
    violation = forms.ChoiceField(choices=VIOLATION_CHOICES, widget=forms.RadioSelect)
    policy = forms.ModelChoiceField(Policy.objects.filter(is_active=True), required=False)
    rationale = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=5000, required=False)


class SampleScopeForm(forms.Form):
    """The re-review queue's scope: samples drawn by a plan, or of a vendor's, a queue's or a policy's decisions."""

    plan = forms.ModelChoiceField(SamplingPlan.objects.order_by("name"), required=False, empty_label="any plan")
    vendor = forms.ModelChoiceField(Vendor.objects.order_by("name"), required=False, empty_label="any vendor")
    queue = forms.ModelChoiceField(Queue.objects.order_by("name"), required=False, empty_label="any queue")
    policy = forms.ModelChoiceField(Policy.objects.order_by("name"), required=False, empty_label="any policy")

    def scope(self) -> dict[str, int | None]:
        """The chosen scope by ids (``SampleScope``'s fields); empty when the form is invalid."""
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        return {
            f"{name}_id": data[name].pk if data.get(name) else None for name in ("plan", "vendor", "queue", "policy")
        }


class SkipForm(forms.Form):
    reason = forms.CharField(max_length=500)


class ScorecardFilterForm(forms.Form):
    queue = forms.ModelChoiceField(Queue.objects.order_by("name"), required=False)
    policy = forms.ModelChoiceField(Policy.objects.all(), required=False)
    vendor = forms.ModelChoiceField(Vendor.objects.order_by("name"), required=False)
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Before")
