"""Ids and whole numbers read from a request's form or query string: junk is refused with a 400 naming the field.

Django forms do this for the fields they declare; these are for views that read ``request.POST`` or
``request.GET`` themselves (a one-key decision, the checked items of a bulk batch, a drill-down link). Checking
``str.isdigit()`` is not enough: '²' passes it and ``int()`` refuses it, and 30 digits overflow every integer
column. Only ASCII digits are numbers here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from django import forms
from django.db.models import Model, QuerySet
from django.http import QueryDict

from ops_platform.core.errors import ApplicationError

M = TypeVar("M", bound=Model)

# The largest value a bigint primary key (BigAutoField) holds.
MAX_ID = 2**63 - 1
# The largest whole number any of our integer columns holds.
MAX_INT = 2**31 - 1
# Longer than any id: refused before int() spends time on a megabyte of digits.
MAX_DIGITS = 19


def _whole(raw: str, *, field: str) -> int:
    text = raw.strip()
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > MAX_DIGITS:
        raise ApplicationError(f"{field}: {_shown(raw)} is not a whole number.", field=field)
    return -int(digits) if negative else int(digits)


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "…")


def id_parse(raw: str, *, field: str) -> int:
    """An object id (a positive whole number a bigint column holds), or a 400 naming ``field``."""
    value = _whole(raw, field=field)
    if not 1 <= value <= MAX_ID:
        raise ApplicationError(f"{field}: {_shown(raw)} is not an id.", field=field)
    return value


def param_id(params: Mapping[str, Any], name: str, *, required: bool = False) -> int | None:
    """The id in ``params[name]``; None when absent or empty, unless ``required``."""
    raw = str(params.get(name) or "")
    if not raw.strip():
        if required:
            raise ApplicationError(f"{name}: choose one.", field=name)
        return None
    return id_parse(raw, field=name)


def param_ids(params: QueryDict, name: str) -> list[int]:
    """Every id sent under ``name`` (checkboxes, a multiple select); empty values are skipped."""
    return [id_parse(raw, field=name) for raw in params.getlist(name) if raw.strip()]


def param_int(
    params: Mapping[str, Any], name: str, *, minimum: int, maximum: int, default: int | None = None
) -> int | None:
    """The whole number in ``params[name]`` between ``minimum`` and ``maximum``; ``default`` when empty."""
    raw = str(params.get(name) or "")
    if not raw.strip():
        return default
    value = _whole(raw, field=name)
    if not minimum <= value <= maximum:
        raise ApplicationError(f"{name}: {value} is not between {minimum} and {maximum}.", field=name)
    return value


def object_parse(raw: str, queryset: QuerySet[M], *, field: str) -> M:
    """The object of ``queryset`` with the id ``raw``. ``queryset`` is what this person may choose: an id outside
    it is refused like one that does not exist, so ids cannot be probed."""
    pk = id_parse(raw, field=field)
    found = queryset.filter(pk=pk).first()
    if found is None:
        raise ApplicationError(f"{field}: no {queryset.model._meta.verbose_name} {pk} you may choose.", field=field)
    return found


def param_object(params: Mapping[str, Any], name: str, queryset: QuerySet[M], *, required: bool = False) -> M | None:
    """The object of ``queryset`` whose id is in ``params[name]`` (see ``object_parse``); None when empty."""
    raw = str(params.get(name) or "")
    if not raw.strip():
        if required:
            raise ApplicationError(f"{name}: choose one.", field=name)
        return None
    return object_parse(raw, queryset, field=name)


class ModelIdsChoiceField(forms.ModelMultipleChoiceField):
    """A multiple choice of objects whose submitted ids are checked as ids before Django queries them: Django
    looks the whole list up with ``IN (…)``, and a 30-digit id there overflows SQLite's integers (a 500)."""

    def clean(self, value: Any) -> Any:
        for pk in value if isinstance(value, list | tuple) else []:
            try:
                id_parse(str(pk), field=str(self.label or ""))
            except ApplicationError:
                raise forms.ValidationError(
                    self.error_messages["invalid_pk_value"], code="invalid_pk_value", params={"pk": pk}
                ) from None
        return super().clean(value)
