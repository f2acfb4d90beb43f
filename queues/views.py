"""The reviewer workspace: my queues, start reviewing (claim next), the item page, decide, skip, escalate.

An item page is shown only to the reviewer holding the item; anyone else gets a 404, so ids cannot be
probed. Content is rendered as escaped text: links are not clickable and media loads only when the
reviewer asks to see it.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import DecisionLabel, EnforcementAction, Policy, User
from ops_platform.core.params import MAX_INT, object_parse, param_ids, param_int, param_object
from ops_platform.core.refusals import refused
from queues import bulk, selectors, services, wellness
from queues.models import ExposureCategory, ItemState, Queue, ReviewItem
from queues.panels import panels_for
from queues.wellness import ExposureCapReached


def _reviewer(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User) or not user.has_perm("core.review_items"):
        raise PermissionDenied
    return user


def _held_item(request: HttpRequest, pk: int) -> tuple[User, ReviewItem]:
    user = _reviewer(request)
    item = (
        ReviewItem.objects.select_related("queue", "queue__exposure_category")
        .filter(pk=pk, state=ItemState.CLAIMED, assignee=user)
        .first()
    )
    if item is None:
        raise Http404("No item of yours has that id.")
    return user, item


@login_required
@require_GET
def my_queues(request: HttpRequest) -> HttpResponse:
    user = _reviewer(request)
    return render(request, "queues/my_queues.html", {"rows": selectors.queues_for_reviewer(user)})


@login_required
@require_POST
def start_reviewing(request: HttpRequest, slug: str) -> HttpResponse:
    user = _reviewer(request)
    queue = get_object_or_404(Queue, slug=slug, is_active=True)
    try:
        item = services.item_claim_next(queue=queue, actor=user)
    except ExposureCapReached as exc:
        return _offer_other_queues(request, user, queue, exc)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("review-queues")
    if item is None:
        messages.info(request, f"Nothing is waiting for you in {queue.name}.")
        return redirect("review-queues")
    return redirect("review-item", pk=item.pk)


@login_required
@require_GET
def item_page(request: HttpRequest, pk: int) -> HttpResponse:
    user, item = _held_item(request, pk)
    assert item.queue is not None
    profile = getattr(user, "reviewer_profile", None)
    policies = list(item.queue.policies.filter(is_active=True).prefetch_related("labels", "enforcement_actions"))
    return render(
        request,
        "queues/item.html",
        {
            "item": item,
            "queue": item.queue,
            "panels": panels_for(item),
            "policies": policies,
            "quick": selectors.quick_decisions(item.queue),
            "history": item.events.select_related("queue").order_by("at", "pk"),
            "author_history": selectors.author_history(item),
            "blur": profile.blur_media if profile else True,
            "greyscale": profile.greyscale_media if profile else True,
            "seniors": User.objects.filter(groups__permissions__codename="bulk_decide").exclude(pk=user.pk).distinct(),
            "lease_seconds": int(services.DEFAULT_LEASE.total_seconds()),
            "contested": services.appeal_contested(item) if item.appeal_of_id else None,
            "stretch": wellness.review_stretch(user),
            "exposure": _exposure_line(user, item.queue),
        },
    )


def _exposure_line(user: User, queue: Queue) -> tuple[int, int] | None:
    category = queue.exposure_category
    if category is None:
        return None
    return wellness.exposure_today(user).get(category.pk, 0), category.daily_cap


@login_required
@require_POST
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    user, item = _held_item(request, pk)
    post = request.POST
    quick = post.get("quick", "")
    if quick:  # a one-key decision: "none" or "policy:action:label" ids
        parts = ([*quick.split(":"), "", "", ""])[:3] if quick != "none" else ["", "", ""]
        violation = quick != "none"
        policy_id, action_id, label_ids = parts[0], parts[1], [parts[2]] if parts[2] else []
    else:
        violation = post.get("violation") == "yes"
        policy_id, action_id, label_ids = post.get("policy", ""), post.get("action", ""), post.getlist("labels")
    policy, action, labels = None, None, []
    if violation:
        # A one-key decision's ids are refused under the button's name: the only field the browser sent.
        fields = dict.fromkeys(("policy", "action", "labels"), "quick") if quick else {}
        if policy_id:
            policy = object_parse(policy_id, Policy.objects.all(), field=fields.get("policy", "policy"))
        if action_id:
            action = object_parse(action_id, EnforcementAction.objects.all(), field=fields.get("action", "action"))
        labels = [object_parse(i, DecisionLabel.objects.all(), field=fields.get("labels", "labels")) for i in label_ids]
    try:
        result = services.decision_record(
            item=item, actor=user, is_violation=violation, policy=policy, labels=labels, action=action,
            rationale=post.get("rationale", "")[:5000],
        )  # fmt: skip
    except ApplicationError as exc:
        return refused(request, exc, back=reverse("review-item", args=[item.pk]))
    if result.adjudication:
        messages.info(request, "Reviewers disagreed: the item went to adjudication.")
    elif not result.closed:
        messages.info(request, "Recorded. The item needs another independent review.")
    else:
        messages.success(request, "Decision recorded.")
    return _next_or_queues(request, user, item.queue)


def _next_or_queues(request: HttpRequest, user: User, queue: Queue | None) -> HttpResponse:
    if queue is not None:
        try:
            nxt = services.item_claim_next(queue=queue, actor=user)
        except ExposureCapReached as exc:
            return _offer_other_queues(request, user, queue, exc)
        except ApplicationError as exc:  # e.g. their access to the queue was withdrawn meanwhile
            messages.error(request, exc.message)
            return redirect("review-queues")
        if nxt is not None:
            return redirect("review-item", pk=nxt.pk)
        messages.info(request, f"{queue.name} is empty for now.")
    return redirect("review-queues")


def _offer_other_queues(request: HttpRequest, user: User, queue: Queue, exc: ExposureCapReached) -> HttpResponse:
    offers = selectors.queues_to_offer(user, instead_of=queue)
    if offers:
        listed = ", ".join(f"{row.queue.name} ({row.pending} waiting)" for row in offers[:5])
        messages.warning(request, f"{exc.message} With work now: {listed}.")
    else:
        messages.warning(request, f"{exc.message} No other queue of yours has work right now: time for a break.")
    return redirect("review-queues")


@login_required
@require_POST
def appeal_decide(request: HttpRequest, pk: int) -> HttpResponse:
    user, item = _held_item(request, pk)
    outcome = request.POST.get("outcome")
    if outcome not in ("uphold", "overturn"):
        messages.error(request, "Choose uphold or overturn.")
        return redirect("review-item", pk=item.pk)
    try:
        services.appeal_decide(
            item=item, actor=user, uphold=outcome == "uphold", rationale=request.POST.get("rationale", "")
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("review-item", pk=item.pk)
    messages.success(
        request, "Appeal upheld." if outcome == "uphold" else "Appeal granted: the decision is overturned."
    )
    return _next_or_queues(request, user, item.queue)


@login_required
@require_POST
def release(request: HttpRequest, pk: int) -> HttpResponse:
    user, item = _held_item(request, pk)
    try:
        services.item_release(item=item, actor=user, reason=request.POST.get("reason", ""))
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("review-item", pk=item.pk)
    messages.info(request, "Skipped: the item is back in its queue.")
    return redirect("review-queues")


@login_required
@require_POST
def escalate(request: HttpRequest, pk: int) -> HttpResponse:
    user, item = _held_item(request, pk)
    to_user = param_object(request.POST, "to_user", User.objects.filter(is_active=True))
    try:
        target = services.item_escalate(item=item, actor=user, reason=request.POST.get("reason", ""), to_user=to_user)
    except ApplicationError as exc:
        return refused(request, exc, back=reverse("review-item", args=[item.pk]))
    who = f" for {to_user.get_username()}" if to_user else ""
    messages.success(request, f"Escalated to {target.name}{who}.")
    return _next_or_queues(request, user, item.queue)


LEASE_LOST = "This item is no longer yours: its lease expired or it was released."


@login_required
@require_POST
def renew_lease(request: HttpRequest, pk: int) -> HttpResponse:
    user = _reviewer(request)
    # Only the reviewer's own items: another's item and no item at all answer the same 409, so the lease URL
    # cannot tell a reviewer which ids exist in queues they may not work.
    item = ReviewItem.objects.filter(pk=pk, assignee=user).first()
    if item is None:
        return JsonResponse({"error": LEASE_LOST}, status=409)
    try:
        expires = services.lease_renew(item=item, actor=user)
    except ApplicationError as exc:
        return JsonResponse({"error": exc.message}, status=409)
    return JsonResponse({"lease_expires_at": expires.isoformat()})


# --- wellness ------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    """A reviewer's own media display and break reminder settings."""
    user = _reviewer(request)
    if request.method == "POST":
        try:
            # Whole numbers only here; the service says which ones are allowed.
            minutes = param_int(request.POST, "break_reminder_minutes", minimum=-MAX_INT, maximum=MAX_INT)
            wellness.preferences_save(
                actor=user,
                blur_media=request.POST.get("blur_media") == "on",
                greyscale_media=request.POST.get("greyscale_media") == "on",
                break_reminder_minutes=-1 if minutes is None else minutes,
            )
        except ApplicationError as exc:
            return refused(request, exc, back=reverse("review-preferences"))
        messages.success(request, "Preferences saved.")
        return redirect("review-preferences")
    profile = getattr(user, "reviewer_profile", None)
    return render(request, "queues/preferences.html", {"profile": profile, "max_minutes": wellness.MAX_BREAK_MINUTES})


def _wellness_manager(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User) or not user.has_perm("core.manage_wellness"):
        raise PermissionDenied
    return user


@login_required
@require_http_methods(["GET", "POST"])
def wellness_settings(request: HttpRequest) -> HttpResponse:
    """Ops managers: exposure categories and their daily caps, which queues count toward them, and who is
    near a cap today."""
    user = _wellness_manager(request)
    if request.method == "POST":
        post = request.POST
        try:
            if post.get("form") == "category":
                cap = param_int(post, "daily_cap", minimum=-MAX_INT, maximum=MAX_INT)
                wellness.exposure_category_save(
                    actor=user,
                    slug=slugify(post.get("slug", "") or post.get("name", ""))[:50],
                    name=post.get("name", "")[:200],
                    daily_cap=0 if cap is None else cap,
                    reason=post.get("reason", "")[:500],
                )
                messages.success(request, "Exposure cap saved.")
            elif post.get("form") == "queue":
                queue = param_object(post, "queue", Queue.objects.filter(is_active=True), required=True)
                category = param_object(post, "category", ExposureCategory.objects.all())
                assert queue is not None
                wellness.queue_exposure_set(actor=user, queue=queue, category=category)
                messages.success(request, f"{queue.name}: {category.name if category else 'no exposure cap'}.")
        except ApplicationError as exc:
            return refused(request, exc, back=reverse("review-wellness"))
        return redirect("review-wellness")
    categories, board = selectors.exposure_board()
    return render(
        request,
        "queues/wellness.html",
        {
            "categories": categories,
            "board": [(row, [(c, row.opened.get(c.pk, 0)) for c in categories]) for row in board],
            "queues": Queue.objects.filter(is_active=True).select_related("exposure_category"),
        },
    )


# --- bulk decisions -----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def bulk_decide(request: HttpRequest, slug: str) -> HttpResponse:
    """Senior reviewers: filter a queue, select many waiting items, apply one decision."""
    user = _reviewer(request)
    queue = get_object_or_404(Queue, slug=slug, is_active=True)
    if not user.has_perm("core.bulk_decide") or not services.reviewer_may_work(queue, user):
        raise PermissionDenied
    source = request.POST if request.method == "POST" else request.GET
    filters = bulk.BulkFilter(
        text=source.get("text", "")[:200],
        tag=source.get("tag", "")[:100],
        surface=source.get("surface", "")[:100],
        language=source.get("language", "")[:16],
        min_priority=param_int(source, "min_priority", minimum=-MAX_INT, maximum=MAX_INT),
    )
    if request.method == "POST":
        post = request.POST
        violation = post.get("violation") == "yes"
        policy = param_object(post, "policy", Policy.objects.all()) if violation else None
        action = param_object(post, "action", EnforcementAction.objects.all()) if violation else None
        labels = [object_parse(i, DecisionLabel.objects.all(), field="labels") for i in post.getlist("labels") if i]
        back = f"{reverse('review-bulk', args=[queue.slug])}?{filters_query(filters)}"
        try:
            result = bulk.items_bulk_decide(
                queue=queue,
                item_ids=param_ids(post, "items"),
                actor=user,
                is_violation=violation,
                policy=policy,
                labels=labels if violation else [],
                action=action,
                rationale=post.get("rationale", ""),
            )
        except ApplicationError as exc:
            return refused(request, exc, back=back)
        skipped = f"; {len(result.skipped)} skipped (taken or decided meanwhile)" if result.skipped else ""
        messages.success(request, f"Batch {result.batch_id}: {len(result.decided)} decided{skipped}.")
        return redirect(back)
    candidates = bulk.bulk_candidates(queue, user, filters)
    shown = list(candidates[: bulk.bulk_max()])
    return render(
        request,
        "queues/bulk.html",
        {
            "queue": queue,
            "filters": filters,
            "items": shown,
            "total": candidates.count(),
            "cap": bulk.bulk_max(),
            "policies": queue.policies.filter(is_active=True).prefetch_related("labels", "enforcement_actions"),
        },
    )


def filters_query(filters: bulk.BulkFilter) -> str:
    values = {
        "text": filters.text,
        "tag": filters.tag,
        "surface": filters.surface,
        "language": filters.language,
        "min_priority": "" if filters.min_priority is None else str(filters.min_priority),
    }
    return urlencode({k: v for k, v in values.items() if v})
