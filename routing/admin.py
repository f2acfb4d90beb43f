"""Intake, scoring and rules records in the admin, read-only: triage, scoring, training and the rule editor write
them, never the admin (rule sets change only through their draft/approval path; hash banks through their CSV import)."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from ops_platform.core.admin import IndexedValuesFilter, LargeTableAdmin, ReadOnlyAdmin
from routing.intake.models import DeadLetter
from routing.rules.models import RoutingDecision, Rule, RuleSet
from routing.scoring.media.models import BankHash, HashBank, MediaAsset, MediaMatch
from routing.scoring.models import ClassifierCall, ClassifierScore, LabeledExample, ModelVersion, ScoringIncident


@admin.register(ClassifierScore)
class ClassifierScoreAdmin(LargeTableAdmin, ReadOnlyAdmin):
    list_display = ["item", "backend", "model_version", "prompt_version", "created_at"]
    list_filter = [("backend", IndexedValuesFilter)]  # backend leads (backend, created_at)
    list_select_related = ["item"]
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


class RuleInline(admin.TabularInline):
    model = Rule
    fields = ("position", "name", "condition", "action", "queue", "priority", "policy", "daily_cap", "tags")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RuleSet)
class RuleSetAdmin(ReadOnlyAdmin):
    list_display = ["kind", "version", "title", "status", "shadow", "created_by", "approved_by", "activated_at"]
    list_filter = ["kind", "status"]
    inlines = [RuleInline]


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(LargeTableAdmin, ReadOnlyAdmin):
    list_display = ["at", "item", "rule_set", "matched", "destination", "shadow"]
    list_select_related = ["item", "rule_set"]
    list_filter = ["shadow", "action"]
    raw_id_fields = ["item", "rule_set", "rule", "queue"]


@admin.register(HashBank)
class HashBankAdmin(ReadOnlyAdmin):
    list_display = ["slug", "name", "is_active", "updated_at"]


@admin.register(BankHash)
class BankHashAdmin(ReadOnlyAdmin):
    list_display = ["bank", "kind", "value", "label", "created_at"]
    list_filter = ["kind", "bank"]
    search_fields = ["value"]


@admin.register(MediaAsset)
class MediaAssetAdmin(LargeTableAdmin, ReadOnlyAdmin):
    list_display = ["item", "position", "status", "refusal", "host", "content_type", "pdq_quality", "created_at"]
    list_select_related = ["item"]
    list_filter = ["status", "refusal"]
    raw_id_fields = ["item"]


@admin.register(MediaMatch)
class MediaMatchAdmin(LargeTableAdmin, ReadOnlyAdmin):
    list_display = ["item", "bank", "kind", "distance", "label", "created_at"]
    list_select_related = ["item", "bank"]
    list_filter = ["bank", "kind"]
    raw_id_fields = ["item", "asset"]
