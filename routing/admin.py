"""Scoring records in the admin, read-only: they are written by scoring and training, never by hand."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from routing.models import (
    ClassifierCall,
    ClassifierScore,
    DeadLetter,
    LabeledExample,
    ModelVersion,
    ScoringIncident,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ClassifierScore)
class ClassifierScoreAdmin(ReadOnlyAdmin):
    list_display = ["item", "backend", "model_version", "prompt_version", "created_at"]
    list_filter = ["backend"]
    raw_id_fields = ["item", "call"]


@admin.register(ClassifierCall)
class ClassifierCallAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "backend", "model_version", "outcome", "items", "latency_ms", "cost_usd"]
    list_filter = ["backend", "outcome"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "status", "trained_at", "promoted_at", "promoted_by"]
    exclude = ["artifact"]


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "task", "error_type", "retries", "redriven_at"]


@admin.register(ScoringIncident)
class ScoringIncidentAdmin(ReadOnlyAdmin):
    list_display = ["day", "kind", "backend", "occurrences", "last_seen_at"]


@admin.register(LabeledExample)
class LabeledExampleAdmin(ReadOnlyAdmin):
    list_display = ["dataset", "external_ref", "imported_at"]
    list_filter = ["dataset"]
    # The text is content: shown only on the detail page, escaped like everywhere else.
    search_fields = ["external_ref"]
