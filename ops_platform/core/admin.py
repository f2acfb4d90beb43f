"""Admin for the kernel. Every change made here is written to the audit log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth.admin import UserAdmin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import CASCADE, PROTECT, RESTRICT, Field, Model, QuerySet
from django.forms.utils import flatatt
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from ops_platform.core.models import (
    ApiClient,
    ApiKey,
    ApiScope,
    AuditLog,
    DecisionLabel,
    EnforcementAction,
    Policy,
    ReviewerProfile,
    Skill,
    SsoIdentity,
    Team,
    User,
    Vendor,
    WebhookDelivery,
    WebhookEvent,
)
from ops_platform.core.services import api_key_issue, api_key_rotate, audit_record, webhook_secret_rotate
from ops_platform.core.webhooks import webhook_redeliver

SECRET_FIELDS = {"password", "webhook_secret", "digest"}
# (accessor, child model, its foreign key to the parent): rows edited inline, recorded with their parent.
Children = Sequence[tuple[str, type[Model], str]]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | dict):
        return json.loads(json.dumps(value, default=str))
    return str(value)  # dates, decimals, durations, uuids


def _snapshot(obj: Model, children: Children = ()) -> dict[str, Any]:
    """Every field of ``obj`` as stored (secrets left out), its many-to-many ids and its inline rows."""
    data: dict[str, Any] = {
        f.name: _plain(f.value_from_object(obj)) for f in obj._meta.concrete_fields if f.name not in SECRET_FIELDS
    }
    for m2m in obj._meta.many_to_many:
        data[m2m.name] = sorted(getattr(obj, m2m.name).values_list("pk", flat=True))
    for accessor, model, fk in children:
        rows = model._default_manager.filter(**{fk: obj.pk}).order_by("pk")
        data[accessor] = [_snapshot(row) for row in rows]
    return data


def _blocked(model: type[Model], rows: QuerySet[Any], depth: int = 2) -> bool:
    """Whether deleting ``rows`` would hit a PROTECT reference, directly or in rows their deletion cascades to."""
    for rel in model._meta.get_fields(include_hidden=True):
        if not (rel.auto_created and not rel.concrete and (rel.one_to_many or rel.one_to_one)):
            continue
        on_delete = rel.on_delete  # type: ignore[union-attr]
        if on_delete not in (PROTECT, RESTRICT, CASCADE):
            continue
        related = rel.related_model._base_manager.filter(**{f"{rel.field.name}__in": rows})  # type: ignore[union-attr]
        if on_delete in (PROTECT, RESTRICT) and related.exists():
            return True
        if on_delete is CASCADE and depth > 1 and _blocked(rel.related_model, related, depth - 1):  # type: ignore[arg-type]
            return True
    return False


# Below this many rows (PostgreSQL's estimate) an unfiltered changelist counts exactly.
ESTIMATE_ABOVE = 100_000


def estimated_rows(model: type[Model]) -> int | None:
    """PostgreSQL's estimate of the table's rows (kept by ANALYZE and autovacuum); None elsewhere or never analysed."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


class EstimatedCountPaginator(Paginator):
    """An unfiltered list of a large table is counted by the planner's estimate (counting reads every row); a
    filtered one, or a small table, exactly. ``estimated`` says which: the changelist then reads "about N"
    (templates/admin/pagination.html)."""

    estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            estimate = estimated_rows(queryset.model)
            if estimate is not None and estimate >= ESTIMATE_ABOVE:
                self.estimated = True
                return estimate
        return super().count


class AuditedAdmin(admin.ModelAdmin):
    """Records before/after of every add, change and delete made through the admin, inline rows and
    many-to-many included: before is read from the database before anything is saved, after once all is."""

    def _children(self) -> Children:
        out = []
        for inline in self.inlines:
            model = inline.model
            fk = next(
                f
                for f in model._meta.fields
                if f.is_relation and f.related_model is self.model and inline.fk_name in (None, f.name)
            )
            out.append((fk.remote_field.get_accessor_name() or fk.name, model, fk.name))
        return out

    def _stored(self, pk: Any) -> dict[str, Any]:
        return _snapshot(self.model._default_manager.get(pk=pk), self._children())

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        # The form has already changed ``obj`` in memory: the state before is the database's.
        before = self._stored(obj.pk) if change and obj.pk else None
        request.__dict__.setdefault("_audit_before", {})[id(obj)] = before
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # many-to-many and inline rows land here
        obj = form.instance
        audit_record(
            actor=request.user,  # type: ignore[arg-type]
            action=f"admin.{'change' if change else 'add'}",
            target=obj,
            before=request.__dict__.get("_audit_before", {}).pop(id(obj), None),
            after=self._stored(obj.pk),
        )

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        target, before = (obj._meta.label_lower, obj.pk), self._stored(obj.pk)
        super().delete_model(request, obj)
        audit_record(actor=request.user, action="admin.delete", target=target, before=before)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        gone = [((obj._meta.label_lower, obj.pk), self._stored(obj.pk)) for obj in queryset]
        super().delete_queryset(request, queryset)
        for target, before in gone:
            audit_record(actor=request.user, action="admin.delete", target=target, before=before)  # type: ignore[arg-type]


class RetireNotDeleteAdmin(AuditedAdmin):
    """Taxonomy that decisions, rules or QA records point to is retired (``is_active``), never deleted: deleting a
    label stripped it from final decisions. The models protect it; here the delete button goes too."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and _blocked(self.model, self.model._default_manager.filter(pk=obj.pk)):
            return False
        return super().has_delete_permission(request, obj)


class ReviewerProfileInline(admin.StackedInline):
    model = ReviewerProfile
    can_delete = False
    filter_horizontal = ["skills"]


class LongFilteredSelectMultiple(FilteredSelectMultiple):
    """The admin's two-box picker, its options written in Python: a user's permissions are ~400 options, and the
    template of one option per include cost ~1 ms each (most of the user page). Same markup as Django's
    ``select.html`` and ``select_option.html``: every label and value escaped by ``format_html``."""

    def _render(self, template_name: str, context: dict[str, Any], renderer: Any = None) -> SafeString:
        w = context["widget"]
        parts = []
        for group_name, group_choices, _ in w["optgroups"]:
            options = format_html_join(
                "",
                '<option value="{}"{}>{}</option>',
                ((str(o["value"]), flatatt(o["attrs"]), o["label"]) for o in group_choices),
            )
            parts.append(
                format_html('<optgroup label="{}">{}</optgroup>', group_name, options) if group_name else options
            )
        return format_html('<select name="{}"{}>{}</select>', w["name"], flatatt(w["attrs"]), mark_safe("".join(parts)))  # noqa: S308 - each part built by format_html


@admin.register(User)
class PlatformUserAdmin(AuditedAdmin, UserAdmin):
    inlines = [ReviewerProfileInline]
    list_display = ["username", "first_name", "last_name", "role_list", "is_active"]
    list_filter = ["groups", "is_active"]
    # Thousands of reviewers: no second count of the whole table, an estimate ("about") when unfiltered and large.
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name == "user_permissions" and field is not None:
            field.widget = LongFilteredSelectMultiple(db_field.verbose_name, is_stacked=False)
        return field

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        # The roles column reads each listed user's groups: one query for the page, not one per row.
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="roles")
    def role_list(self, obj: User) -> str:
        return ", ".join(sorted(group.name for group in obj.groups.all()))


@admin.register(Vendor)
class VendorAdmin(AuditedAdmin):
    list_display = [
        "name",
        "slug",
        "target_sla_attainment",
        "target_quality_score",
        "cost_per_decision",
        "is_active",
    ]


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    list_display = ["name", "slug", "vendor"]
    list_filter = ["vendor"]


@admin.register(Skill)
class SkillAdmin(AuditedAdmin):
    list_display = ["name", "slug"]


class DecisionLabelInline(admin.TabularInline):
    model = DecisionLabel
    extra = 0
    fields = ["slug", "name", "is_violation", "is_active"]


@admin.register(Policy)
class PolicyAdmin(RetireNotDeleteAdmin):
    list_display = ["name", "slug", "severity", "guidelines_version", "human_review_only", "is_active"]
    list_filter = ["is_active"]
    inlines = [DecisionLabelInline]
    filter_horizontal = ["enforcement_actions"]
    readonly_fields = ["guidelines_version"]

    def save_model(self, request: HttpRequest, obj: Policy, form: Any, change: bool) -> None:  # type: ignore[override]
        if change and "guidelines" in form.changed_data:
            obj.guidelines_version += 1
        super().save_model(request, obj, form, change)


@admin.register(EnforcementAction)
class EnforcementActionAdmin(RetireNotDeleteAdmin):
    list_display = ["name", "slug", "strength", "is_active"]
    list_filter = ["is_active"]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("lookup", "created_at", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are made by api_client_create / api_key_rotate, which show the key once


class ApiClientForm(forms.ModelForm):
    # One checkbox per scope, with what it allows: nobody should have to type JSON to grant a permission.
    scopes = forms.MultipleChoiceField(
        choices=[(scope.value, f"{scope.value}: {scope.label}") for scope in ApiScope],
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    class Meta:
        model = ApiClient
        # Not the webhook secret: it is issued by its action and shown once, never edited.
        fields = ["name", "source", "scopes", "callback_url", "rate_limit_per_minute", "vendor", "is_active"]


@admin.register(ApiClient)
class ApiClientAdmin(AuditedAdmin):
    form = ApiClientForm
    list_display = ["name", "source", "scopes", "callback_url", "rate_limit_per_minute", "is_active"]
    inlines = [ApiKeyInline]
    actions = ["rotate_api_key", "new_webhook_secret"]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if change:
            return
        # A client is made to be used: its first key (and its webhook secret, when it has a callback URL) are
        # issued with it and shown here once; only digests are kept.
        client = form.instance
        _, raw = api_key_issue(actor=request.user, client=client)  # type: ignore[arg-type]
        self.message_user(
            request, f"{client.source}: API key {raw} (copy it now: it is shown only once)", messages.WARNING
        )
        if client.callback_url:
            secret = webhook_secret_rotate(actor=request.user, client=client)  # type: ignore[arg-type]
            self.message_user(request, f"{client.source}: webhook secret {secret} (shown only once)", messages.WARNING)

    @admin.action(
        description="Rotate API key (new key shown once here; old keys work 24 h more)", permissions=["change"]
    )
    def rotate_api_key(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        for client in queryset:
            _, raw = api_key_rotate(actor=request.user, client=client)  # type: ignore[arg-type]
            self.message_user(request, f"{client.source}: new API key {raw}", messages.WARNING)

    @admin.action(description="New webhook signing secret (shown once here)", permissions=["change"])
    def new_webhook_secret(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        for client in queryset:
            secret = webhook_secret_rotate(actor=request.user, client=client)  # type: ignore[arg-type]
            self.message_user(request, f"{client.source}: new webhook secret {secret}", messages.WARNING)


# --- changelists of tables that grow with traffic (items, decisions, scores: millions of rows) ----------------


def distinct_values(model: type[Model], field: str) -> list[Any]:
    """The distinct values of a column that leads an index, in order: on PostgreSQL by a loose index scan (one
    index probe per value, a recursive CTE) instead of SELECT DISTINCT over every row; elsewhere SELECT DISTINCT."""
    if connection.vendor != "postgresql":
        return list(model._default_manager.order_by(field).values_list(field, flat=True).distinct())
    concrete = model._meta.get_field(field)
    if not isinstance(concrete, Field) or not concrete.column:
        raise TypeError(f"{field} is not a column")
    column = connection.ops.quote_name(concrete.column)
    table = connection.ops.quote_name(model._meta.db_table)
    # Identifiers from the model's metadata, quoted; no value from the request.
    first = f"SELECT min({column}) FROM {table}"  # noqa: S608 - names from _meta
    following = f"SELECT (SELECT min({column}) FROM {table} WHERE {column} > t.v) FROM t WHERE t.v IS NOT NULL"  # noqa: S608 - names from _meta
    query = f"WITH RECURSIVE t(v) AS ({first} UNION ALL {following}) SELECT v FROM t WHERE v IS NOT NULL"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(query)
        return [v for (v,) in cursor.fetchall()]


class IndexedValuesFilter(admin.AllValuesFieldListFilter):
    """``AllValuesFieldListFilter`` for a column that leads an index, its choices read by ``distinct_values``."""

    def __init__(
        self, field: Field[Any, Any], request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str
    ) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        self.lookup_choices = distinct_values(model, field_path)  # type: ignore[assignment]


class LargeTableAdmin(admin.ModelAdmin):
    """A changelist that stays fast at millions of rows: no second count of the whole table, an estimated count
    when unfiltered, related rows of the listed columns fetched in the same query (set ``list_select_related``),
    and list filters over large columns through ``IndexedValuesFilter``. Keep ``ordering`` on indexed columns."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = ("attempt", "at", "status_code", "error", "duration_ms", "delivered")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class WebhookStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("pending", "Pending"), ("delivered", "Delivered"), ("gave_up", "Given up")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> QuerySet[WebhookEvent]:
        if self.value() == "pending":
            return queryset.pending()  # type: ignore[attr-defined]
        if self.value() == "delivered":
            return queryset.filter(delivered_at__isnull=False)
        if self.value() == "gave_up":
            return queryset.filter(gave_up_at__isnull=False)
        return queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "client", "event_type", "state", "attempts", "created_at", "delivered_at", "gave_up_at"]
    list_filter = [WebhookStateFilter, "event_type", "client"]
    list_select_related = ["client"]
    search_fields = ["=event_id"]
    readonly_fields = tuple(f.name for f in WebhookEvent._meta.fields)
    inlines = [WebhookDeliveryInline]
    actions = ["redeliver"]

    @admin.action(description="Re-deliver (given-up events, same event id)", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        given_up = list(queryset.filter(gave_up_at__isnull=False))
        for event in given_up:
            webhook_redeliver(event=event, actor=request.user)  # type: ignore[arg-type]
        skipped = queryset.count() - len(given_up)
        self.message_user(request, f"Re-delivering {len(given_up)} event(s); {skipped} not given up were left alone.")

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("core.manage_platform")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["event", "attempt", "at", "status_code", "error", "duration_ms", "delivered"]
    list_filter = ["delivered", "error"]
    list_select_related = ["event"]
    search_fields = ["=event__event_id"]
    readonly_fields = tuple(f.name for f in WebhookDelivery._meta.fields)


@admin.register(SsoIdentity)
class SsoIdentityAdmin(ReadOnlyAdmin):
    """Who signs in through which provider account. Made and kept by ``sso_sign_in`` only: an identity edited
    by hand would hand one person's provider account to another (docs/sso.md)."""

    list_display = ["user", "issuer", "subject", "created_at", "last_sign_in_at"]
    list_filter = ["issuer"]
    list_select_related = ["user"]
    search_fields = ["user__username", "=subject"]
    readonly_fields = ("user", "issuer", "subject", "created_at", "last_sign_in_at")


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ["at", "actor_label", "action", "target_type", "target_id"]
    list_filter = ["action", "target_type"]
    search_fields = ["actor_label", "target_id", "action"]
    readonly_fields = tuple(f.name for f in AuditLog._meta.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
