"""The rule editor for policy staff: rule sets and their versions, live validation, approval, rollback,
diff, backtests and shadow comparison. Anyone signed in with a role may read; only policy staff (and
admins) change anything, which the services enforce.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import User
from ops_platform.core.params import MAX_INT, param_int, param_object
from ops_platform.core.permissions import permitted
from ops_platform.core.refusals import refusal_response, refused
from routing.rules import lifecycle, selectors
from routing.rules.backtest import backtest_request
from routing.rules.coverage import ScoresNotProduced, condition_warnings, ruleset_unproduced_scores, vocabulary_rows
from routing.rules.engine import ACTIONS_BY_KIND, vocabulary_for
from routing.rules.incidents import rule_incident_resolve
from routing.rules.language import RuleLanguageError, parse
from routing.rules.models import (
    BacktestStatus,
    Rule,
    RuleAction,
    RuleIncident,
    RuleSet,
    RuleSetKind,
)
from routing.rules.trial import condition_try
from routing.scoring.selectors import model_versions

READERS = (
    "core.edit_rules",
    "core.approve_rules",
    "core.view_analytics",
    "core.review_items",
    "core.perform_qa",
    "core.manage_platform",
)


# Editors are readers too (both permissions are in READERS), so one check is the whole door.
EDITORS = ("core.edit_rules", "core.approve_rules")


class RuleForm(forms.Form):
    name = forms.CharField(max_length=80)
    description = forms.CharField(max_length=300, required=False)
    condition = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}), max_length=4000)
    action = forms.ChoiceField(choices=RuleAction.choices)
    queue = forms.ModelChoiceField(selectors.queues_active(), required=False)
    priority = forms.IntegerField(initial=0, min_value=-100, max_value=100)
    policy = forms.ModelChoiceField(selectors.policies_active(), required=False)
    label = forms.ModelChoiceField(selectors.labels_active(), required=False)
    enforcement_action = forms.ModelChoiceField(selectors.enforcement_actions_active(), required=False)
    daily_cap = forms.IntegerField(min_value=1, required=False)
    required_reviews = forms.IntegerField(initial=1, min_value=1, max_value=lifecycle.MAX_REQUIRED_REVIEWS)
    tags = forms.CharField(required=False, help_text="Comma-separated.")
    notify = forms.BooleanField(required=False)

    def __init__(self, *args: Any, kind: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        allowed = ACTIONS_BY_KIND.get(kind, ())
        choices = [(value, label) for value, label in RuleAction.choices if value in allowed]
        self.fields["action"].choices = choices  # type: ignore[attr-defined]
        # Live validation while typing (htmx): the fragment lands in the form's .check element.
        self.fields["condition"].widget.attrs.update(
            {
                "hx-post": reverse("rules-check"),
                "hx-trigger": "input changed delay:300ms",
                "hx-target": "next .check",
                "hx-vals": json.dumps({"kind": kind}),
                "class": "code",
            }
        )

    def rule_data(self) -> lifecycle.RuleData:
        data = self.cleaned_data
        return lifecycle.RuleData(
            name=data["name"],
            description=data.get("description", ""),
            condition=data["condition"],
            action=data["action"],
            queue_id=data["queue"].pk if data.get("queue") else None,
            priority=data.get("priority") or 0,
            policy_id=data["policy"].pk if data.get("policy") else None,
            label_id=data["label"].pk if data.get("label") else None,
            enforcement_action_id=data["enforcement_action"].pk if data.get("enforcement_action") else None,
            daily_cap=data.get("daily_cap"),
            required_reviews=data.get("required_reviews") or 1,
            tags=[t.strip() for t in (data.get("tags") or "").split(",") if t.strip()],
            notify=bool(data.get("notify")),
        )

    @classmethod
    def for_rule(cls, rule: Rule) -> RuleForm:
        return cls(
            kind=rule.rule_set.kind,
            initial={
                "name": rule.name,
                "description": rule.description,
                "condition": rule.condition,
                "action": rule.action,
                "queue": rule.queue_id,
                "priority": rule.priority,
                "policy": rule.policy_id,
                "label": rule.label_id,
                "enforcement_action": rule.enforcement_action_id,
                "daily_cap": rule.daily_cap,
                "required_reviews": rule.required_reviews,
                "tags": ", ".join(rule.tags),
                "notify": rule.notify,
            },
            prefix=f"r{rule.pk}",
        )


def _problems_into(form: forms.Form, exc: ApplicationError) -> None:
    problems = exc.extra.get("problems")
    if not isinstance(problems, dict):
        form.add_error(None, exc.message)
        return
    for field, texts in problems.items():
        target = field if field in form.fields else None
        for text in texts:
            form.add_error(target, text)


@login_required
@require_GET
def rules_index(request: HttpRequest) -> HttpResponse:
    user = permitted(request, *READERS)
    return render(
        request,
        "routing/rules/index.html",
        {
            "kinds": selectors.rulesets_by_kind(),
            "can_edit": user.has_perm("core.edit_rules"),
            "can_resolve": user.has_perm("core.edit_rules") or user.has_perm("core.approve_rules"),
            "kind_choices": RuleSetKind.choices,
            "incidents": selectors.rule_incidents_open()[:100],
            # Policy staff judge the classifiers their rules lean on: their model cards, newest first.
            "model_cards": list(model_versions().order_by("-trained_at")[:10])
            if user.has_perm("core.edit_policies")
            else [],
        },
    )


@login_required
@require_POST
def rule_incident_resolve_view(request: HttpRequest, pk: int) -> HttpResponse:
    user = permitted(request, *EDITORS)
    incident = get_object_or_404(RuleIncident, pk=pk)
    try:
        rule_incident_resolve(actor=user, incident=incident, note=request.POST.get("note", "")[:500])
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Incident of rule '{incident.rule.name}' resolved.")
    return redirect("rules-index")


@login_required
@require_POST
def ruleset_new(request: HttpRequest) -> HttpResponse:
    user = permitted(request, *EDITORS)
    based_on = param_object(request.POST, "based_on", selectors.rulesets_all())
    try:
        draft = lifecycle.ruleset_draft_create(
            actor=user, kind=request.POST.get("kind", ""), based_on=based_on, title=request.POST.get("title", "")
        )
    except ApplicationError as exc:
        return refused(request, exc, back=reverse("rules-index"))
    messages.success(request, f"Draft {draft} created.")
    return redirect("rules-detail", pk=draft.pk)


def _detail_context(
    request: HttpRequest,
    rule_set: RuleSet,
    *,
    add_form: RuleForm | None = None,
    edit_forms: dict[int, RuleForm] | None = None,
) -> dict[str, Any]:
    user = permitted(request, *READERS)
    rules = selectors.ruleset_rules(rule_set)
    edit_forms = edit_forms or {}
    editable = rule_set.is_editable and user.has_perm("core.edit_rules")
    return {
        "rule_set": rule_set,
        "rules": [(r, edit_forms.get(r.pk) or RuleForm.for_rule(r)) for r in rules],
        "editable": editable,
        "can_approve": user.has_perm("core.approve_rules"),
        "add_form": add_form or RuleForm(kind=rule_set.kind, prefix="new"),
        "vocabulary": vocabulary_rows(rule_set.kind),
        # Scores the version reads that no active backend produces: approving or activating it needs each
        # acknowledged.
        "unproduced": ruleset_unproduced_scores(rule_set),
        "queues": selectors.queues_active(),
        "versions": selectors.ruleset_other_versions(rule_set),
        "backtests": selectors.ruleset_backtests_recent(rule_set),
        "history": selectors.ruleset_history(rule_set),
        "default_start": (timezone.now() - timedelta(days=14)).strftime("%Y-%m-%d"),
        "default_end": (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d"),
        "is_author": user.pk in selectors.ruleset_writers(rule_set),
        "editors": selectors.ruleset_editors(rule_set),
    }


@login_required
@require_GET
def ruleset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    rule_set = get_object_or_404(selectors.ruleset_for_detail(), pk=pk)
    return render(request, "routing/rules/detail.html", _detail_context(request, rule_set))


@login_required
@require_POST
def ruleset_meta(request: HttpRequest, pk: int) -> HttpResponse:
    user = permitted(request, *EDITORS)
    rule_set = get_object_or_404(RuleSet, pk=pk)
    queue = param_object(request.POST, "default_queue", selectors.queues_active())
    try:
        lifecycle.ruleset_update(
            actor=user,
            rule_set=rule_set,
            title=request.POST.get("title", ""),
            change_note=request.POST.get("change_note", ""),
            default_queue=queue,
        )
    except ApplicationError as exc:
        return refused(request, exc, back=reverse("rules-detail", args=[pk]))
    return redirect("rules-detail", pk=pk)


@login_required
@require_POST
def rule_save_view(request: HttpRequest, pk: int, rule_pk: int | None = None) -> HttpResponse:
    user = permitted(request, *EDITORS)
    rule_set = get_object_or_404(RuleSet, pk=pk)
    rule = get_object_or_404(Rule, pk=rule_pk, rule_set=rule_set) if rule_pk else None
    form = RuleForm(request.POST, kind=rule_set.kind, prefix=f"r{rule.pk}" if rule else "new")
    if form.is_valid():
        try:
            saved = lifecycle.rule_save(actor=user, rule_set=rule_set, data=form.rule_data(), rule=rule)
        except ApplicationError as exc:
            _problems_into(form, exc)
        else:
            messages.success(request, f"Rule '{saved.name}' saved.")
            for warning in condition_warnings(rule_set.kind, saved.condition):
                messages.warning(request, f"Rule '{saved.name}': {warning}.")
            return redirect("rules-detail", pk=pk)
    context = _detail_context(
        request, rule_set, add_form=None if rule else form, edit_forms={rule.pk: form} if rule else None
    )
    context["open_rule"] = rule.pk if rule else "new"
    return render(request, "routing/rules/detail.html", context, status=400)


@login_required
@require_POST
def rule_delete_view(request: HttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    user = permitted(request, *EDITORS)
    rule = get_object_or_404(Rule, pk=rule_pk, rule_set_id=pk)
    try:
        lifecycle.rule_delete(actor=user, rule=rule)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("rules-detail", pk=pk)


@login_required
@require_POST
def rule_move_view(request: HttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    user = permitted(request, *EDITORS)
    rule = get_object_or_404(Rule, pk=rule_pk, rule_set_id=pk)
    try:
        lifecycle.rule_move(actor=user, rule=rule, offset=-1 if request.POST.get("direction") == "up" else 1)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("rules-detail", pk=pk)


@login_required
@require_POST
def condition_check(request: HttpRequest) -> HttpResponse:
    """htmx: validate the condition being typed; returns a small fragment."""
    permitted(request, *READERS)
    kind = request.POST.get("kind", RuleSetKind.INTAKE)
    condition = next((str(v) for k, v in request.POST.items() if k.endswith("condition")), "")
    problems: list[str] = []
    try:
        parse(condition, vocabulary_for(kind))
    except RuleLanguageError as exc:
        problems = [str(p) for p in exc.problems]
    warnings = [] if problems else condition_warnings(kind, condition)
    return render(
        request, "routing/rules/_check.html", {"problems": problems, "warnings": warnings, "condition": condition}
    )


@login_required
@require_POST
def condition_try_view(request: HttpRequest) -> HttpResponse:
    """htmx: score pasted text with the active classifiers and evaluate the condition on it."""
    permitted(request, *READERS)
    try:
        report_count = max(0, min(10_000, int(request.POST.get("report_count") or 0)))
        prior = max(0, min(10_000, int(request.POST.get("prior_violations") or 0)))
    except ValueError:
        report_count = prior = 0
    trial = condition_try(
        kind=request.POST.get("kind", RuleSetKind.INTAKE),
        condition=request.POST.get("condition", ""),
        text=request.POST.get("text", ""),
        fields={
            "kind": request.POST.get("item_kind", "content"),
            "surface": request.POST.get("surface", "")[:100],
            "language": request.POST.get("language", "")[:16],
            "report_count": report_count,
            "prior_violations": prior,
        },
    )
    return render(request, "routing/rules/_trial.html", {"trial": trial})


def _transition(step: str, user: User, rule_set: RuleSet, post: Any) -> RuleSet:
    if step == "submit":
        return lifecycle.ruleset_submit(actor=user, rule_set=rule_set, change_note=post.get("note", ""))
    acknowledge = post.getlist("acknowledge")
    if step == "approve":
        return lifecycle.ruleset_approve(actor=user, rule_set=rule_set, acknowledge=acknowledge)
    if step == "reject":
        return lifecycle.ruleset_reject(actor=user, rule_set=rule_set, reason=post.get("reason", ""))
    if step == "activate":
        return lifecycle.ruleset_activate(
            actor=user, rule_set=rule_set, reason=post.get("reason", ""), acknowledge=acknowledge
        )
    return lifecycle.ruleset_shadow(actor=user, rule_set=rule_set, on=step == "shadow-on")


STEPS = ("submit", "approve", "reject", "activate", "shadow-on", "shadow-off")


@login_required
@require_POST
def ruleset_transition(request: HttpRequest, pk: int, step: str) -> HttpResponse:
    user = permitted(request, *EDITORS)
    rule_set = get_object_or_404(RuleSet, pk=pk)
    if step not in STEPS:
        raise PermissionDenied
    try:
        done = _transition(step, user, rule_set, request.POST)
    except ScoresNotProduced as exc:  # a 4xx naming the scores, not a flash: nothing happened
        return refusal_response(request, exc, back=reverse("rules-detail", args=[pk]))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"{done}: {done.get_status_display().lower()}{' (shadow on)' if done.shadow else ''}."
        )
    return redirect("rules-detail", pk=pk)


@login_required
@require_http_methods(["GET", "POST"])
def ruleset_rollback_view(request: HttpRequest, kind: str) -> HttpResponse:
    """Rollback in two steps: this page names the version a rollback restores (and the one it retires), and
    only its form, naming that version, rolls back."""
    user = permitted(request, *EDITORS)
    if kind not in RuleSetKind.values:
        raise Http404("No such kind of rule set.")
    error: ApplicationError | None = None
    if request.method == "POST":
        try:
            to_version = param_int(request.POST, "to_version", minimum=1, maximum=MAX_INT)
            if to_version is None:
                raise ApplicationError("Name the version to restore, as this page shows it.", field="to_version")
            active = lifecycle.ruleset_rollback(
                actor=user,
                kind=kind,
                to_version=to_version,
                reason=request.POST.get("reason", "")[:5000],
                acknowledge=request.POST.getlist("acknowledge"),
            )
        except ApplicationError as exc:
            error = exc
        else:
            messages.success(request, f"Rolled back: {active} is active again.")
            return redirect("rules-detail", pk=active.pk)
    target = selectors.ruleset_rollback_target(kind)
    return render(
        request,
        "routing/rules/rollback.html",
        {
            "kind": kind,
            "label": RuleSetKind(kind).label,
            "active": selectors.ruleset_active(kind),
            "target": target,
            "unproduced": ruleset_unproduced_scores(target) if target else [],
            "error": error,
        },
        status=error.status_code if error else 200,
    )


@login_required
@require_GET
def ruleset_diff_view(request: HttpRequest, pk: int) -> HttpResponse:
    permitted(request, *READERS)
    new = get_object_or_404(RuleSet, pk=pk)
    old = param_object(request.GET, "against", selectors.rulesets_of_kind(new.kind)) or selectors.ruleset_diff_base(new)
    lines = lifecycle.ruleset_diff(old, new) if old else []
    return render(
        request,
        "routing/rules/diff.html",
        {
            "old": old,
            "new": new,
            "lines": lines,
            "versions": selectors.rulesets_of_kind(new.kind).exclude(pk=pk),
        },
    )


def _day(value: str, fallback: datetime) -> datetime:
    try:
        parsed = datetime.strptime(value, "%Y-%m-%d")
    except (TypeError, ValueError):
        return fallback
    return timezone.make_aware(parsed)


@login_required
@require_POST
def backtest_new(request: HttpRequest, pk: int) -> HttpResponse:
    user = permitted(request, *EDITORS)
    rule_set = get_object_or_404(RuleSet, pk=pk)
    now = timezone.now()
    start = _day(request.POST.get("start", ""), now - timedelta(days=14))
    end = _day(request.POST.get("end", ""), now)
    try:
        backtest = backtest_request(actor=user, rule_set=rule_set, start=start, end=end)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("rules-detail", pk=pk)
    return redirect("rules-backtest", pk=backtest.pk)


@login_required
@require_GET
def backtest_detail(request: HttpRequest, pk: int) -> HttpResponse:
    permitted(request, *READERS)
    backtest = get_object_or_404(selectors.backtests_for_detail(), pk=pk)
    context = {
        "backtest": backtest,
        "running": backtest.status in (BacktestStatus.PENDING, BacktestStatus.RUNNING),
        "chart": selectors.destination_chart(backtest.result) if backtest.result else [],
        "matrix": selectors.transition_table(backtest.result.get("transitions", [])) if backtest.result else None,
    }
    template = "routing/rules/_backtest_body.html" if request.htmx else "routing/rules/backtest.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@login_required
@require_GET
def shadow_compare(request: HttpRequest, pk: int) -> HttpResponse:
    permitted(request, *READERS)
    rule_set = get_object_or_404(RuleSet, pk=pk)
    comparison = selectors.shadow_comparison(rule_set)
    return render(
        request,
        "routing/rules/shadow.html",
        {
            "rule_set": rule_set,
            "comparison": comparison,
            "matrix": selectors.transition_table(comparison["transitions"]),
            "chart": selectors.destination_chart({"destinations": comparison["shadow"], "current": comparison["live"]}),
        },
    )
