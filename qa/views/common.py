"""What every QA page shares: who may open it, the reviewer's media preferences, and how a refusal reaches a form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import User
from ops_platform.core.permissions import permitted
from qa.forms import VerdictForm


def qa_user(request: HttpRequest) -> User:
    return permitted(request, "core.perform_qa")


def reviewer_user(request: HttpRequest) -> User:
    """Anyone who reviews: calibration and coaching are for reviewers as much as for QA."""
    return permitted(request, "core.review_items", "core.perform_qa")


def media_prefs(user: User) -> dict[str, bool]:
    profile = getattr(user, "reviewer_profile", None)
    return {"blur": profile.blur_media if profile else True, "greyscale": profile.greyscale_media if profile else True}


def verdict_of(form: VerdictForm) -> dict[str, Any]:
    return {
        "is_violation": form.is_violation,
        "policy": form.cleaned_data.get("policy"),
        "action": form.cleaned_data.get("action"),
    }


def error_into(form: forms.BaseForm, exc: ApplicationError) -> None:
    """A service's refusal shown on the form, on the field it names when the form has it."""
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


def status_of(form: forms.BaseForm | None) -> int:
    """A form sent back with errors is a refusal: 400, so the answer says so, not only the page."""
    return 400 if form is not None and form.is_bound and form.errors else 200
