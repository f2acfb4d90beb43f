"""The reviewer workspace: my queues, start reviewing (claim next), the item page, decide, skip, escalate.

An item page is shown only to the reviewer holding the item; anyone else gets a 404, so ids cannot be
probed. Content is rendered as escaped text: links are not clickable and media loads only when the
reviewer asks to see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
from ops_platform.core.permissions import permitted
from ops_platform.core.refusals import refused
from queues import bulk, selectors, wellness
from queues.accounts.models import ActionKind
from queues.accounts.selectors import account_of_item, account_summary
from queues.models import Queue, ReviewItem
from queues.panels import panels_for
from queues.services import appeals, claims, decisions, escalation
from queues.wellness import ExposureCapReached


def _reviewer(request: HttpRequest) -> User:
    return permitted(request, "core.review_items")


def _held_item(request: HttpRequest, pk: int) -> tuple[User, ReviewItem]:
    user = _reviewer(request)
    item = selectors.item_held(pk=pk, reviewer=user)
    if item is None:
        raise Http404("No item of yours has that id.")
    return user, item


@login_required
@require_GET
def my_queues(request: HttpRequest) -> HttpResponse:
    user = _reviewer(request)
    rows = selectors.queues_for_reviewer(user)
    # Senior reviewers see who holds a reservation in their queues, and can give an item back to everyone.
    reserved = selectors.items_reserved(queues=[r.queue for r in rows]) if user.has_perm("core.bulk_decide") else None
    return render(request, "queues/my_queues.html", {"rows": rows, "reserved": reserved})


@login_required
@require_POST
def start_reviewing(request: HttpRequest, slug: str) -> HttpResponse:
    user = _reviewer(request)
    queue = get_object_or_404(selectors.queues_active(), slug=slug)
    try:
        item = claims.item_claim_next(queue=queue, actor=user)
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
    return _item_render(request, user, item)


def _refused(request: HttpRequest, user: User, item: ReviewItem, exc: ApplicationError) -> HttpResponse:
    """A refused act on the item: its page again, with why and the field it is about, under the refusal's 4xx."""
    return _item_render(request, user, item, status=exc.status_code, refusal=exc)


def _item_render(
    request: HttpRequest,
    user: User,
    item: ReviewItem,
    *,
    status: int = 200,
    refusal: ApplicationError | None = None,
) -> HttpResponse:
    assert item.queue is not None
    profile = getattr(user, "reviewer_profile", None)
    policies = selectors.queue_policies(item.queue)
    panels = panels_for(item)
    account = account_of_item(item)
    return render(
        request,
        "queues/item.html",
        {
            "item": item,
            "queue": item.queue,
            "panels": [p for p in panels if p.placement != "content"],
            "content_panels": [p for p in panels if p.placement == "content"],
            "policies": policies,
            "quick": selectors.quick_decisions(item.queue),
            "history": selectors.item_history(item, viewer=user),
            "author_history": selectors.author_history(item),
            "blur": profile.blur_media if profile else True,
            "greyscale": profile.greyscale_media if profile else True,
            "seniors": selectors.escalation_seniors(item, reviewer=user),
            "lease_seconds": int(claims.DEFAULT_LEASE.total_seconds()),
            "contested": appeals.appeal_contested(item) if item.appeal_of_id else None,
            "stretch": wellness.review_stretch(user),
            "exposure": _exposure_line(user, item.queue),
            "refusal": refusal,
            "account_summary": account_summary(account) if account else None,
            "account": account,
            "may_act_on_account": user.has_perm("core.act_on_accounts"),
            "kinds": ActionKind.choices,
        },
        status=status,
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
            policy = object_parse(policy_id, selectors.policies_all(), field=fields.get("policy", "policy"))
        if action_id:
            action = object_parse(action_id, selectors.enforcement_actions_all(), field=fields.get("action", "action"))
        labels = [
            object_parse(i, selectors.decision_labels_all(), field=fields.get("labels", "labels")) for i in label_ids
        ]
    try:
        result = decisions.decision_record(
            item=item,
            actor=user,
            is_violation=violation,
            policy=policy,
            labels=labels,
            action=action,
            rationale=post.get("rationale", "")[:5000],
        )
    except ApplicationError as exc:
        return _refused(request, user, item, exc)
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
            nxt = claims.item_claim_next(queue=queue, actor=user)
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
        return _refused(request, user, item, ApplicationError("Choose uphold or overturn.", field="outcome"))
    try:
        appeals.appeal_decide(
            item=item, actor=user, uphold=outcome == "uphold", rationale=request.POST.get("rationale", "")
        )
    except ApplicationError as exc:
        return _refused(request, user, item, exc)
    messages.success(
        request, "Appeal upheld." if outcome == "uphold" else "Appeal granted: the decision is overturned."
    )
    return _next_or_queues(request, user, item.queue)


@login_required
@require_POST
def release(request: HttpRequest, pk: int) -> HttpResponse:
    user, item = _held_item(request, pk)
    try:
        claims.item_release(item=item, actor=user, reason=request.POST.get("reason", ""))
    except ApplicationError as exc:
        return _refused(request, user, item, exc)
    messages.info(request, "Skipped: the item is back in its queue.")
    return redirect("review-queues")


@login_required
@require_POST
def escalate(request: HttpRequest, pk: int) -> HttpResponse:
    user, item = _held_item(request, pk)
    to_user = param_object(request.POST, "to_user", selectors.people_active())
    try:
        target = escalation.item_escalate(item=item, actor=user, reason=request.POST.get("reason", ""), to_user=to_user)
    except ApplicationError as exc:
        return _refused(request, user, item, exc)
    who = f" for {to_user.get_username()}" if to_user else ""
    messages.success(request, f"Escalated to {target.name}{who}.")
    return _next_or_queues(request, user, item.queue)


@login_required
@require_POST
def reservation_release(request: HttpRequest, pk: int) -> HttpResponse:
    """Leads (senior reviewers of the queue, ops managers): give an item reserved for a named colleague back to
    everyone who may work its queue."""
    user = permitted(request, "core.bulk_decide", "core.manage_wellness")
    item = get_object_or_404(selectors.items_all(), pk=pk)
    back = "review-queues" if user.has_perm("core.review_items") else "review-wellness"
    try:
        claims.item_reservation_release(item=item, actor=user, reason=request.POST.get("reason", ""))
    except ApplicationError as exc:
        if exc.status_code == 403:
            raise PermissionDenied from exc
        return HttpResponse(exc.message, status=exc.status_code, content_type="text/plain; charset=utf-8")
    messages.success(
        request, f"Item {item.pk} is back in {item.queue.name if item.queue else 'its queue'} for everyone."
    )
    return redirect(back)


LEASE_LOST = "This item is no longer yours: its lease expired or it was released."


@login_required
@require_POST
def renew_lease(request: HttpRequest, pk: int) -> HttpResponse:
    user = _reviewer(request)
    # Only the reviewer's own items: another's item and no item at all answer the same 409, so the lease URL
    # cannot tell a reviewer which ids exist in queues they may not work.
    item = selectors.item_assigned(pk=pk, reviewer=user)
    if item is None:
        return JsonResponse({"error": LEASE_LOST}, status=409)
    try:
        expires = claims.lease_renew(item=item, actor=user)
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
    return permitted(request, "core.manage_wellness")


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
                queue = param_object(post, "queue", selectors.queues_active(), required=True)
                category = param_object(post, "category", selectors.exposure_categories())
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
            "reserved": selectors.items_reserved(),
            "categories": categories,
            "board": [(row, [(c, row.opened.get(c.pk, 0)) for c in categories]) for row in board],
            "queues": selectors.queues_with_exposure(),
        },
    )


# --- bulk decisions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BulkChoice:
    """The selection and the decision as the bulk form posts them (objects looked up, not yet validated)."""

    item_ids: list[int]
    violation: str  # "yes", "no", or "" when neither was chosen
    policy: Policy | None
    labels: list[DecisionLabel]
    action: EnforcementAction | None
    rationale: str

    @classmethod
    def from_post(cls, post: Any) -> _BulkChoice:
        """Junk ids are refused naming their field; an id of no object is left for the services to refuse."""
        violation = post.get("violation", "")
        violation = violation if violation in ("yes", "no") else ""
        is_violation = violation == "yes"
        return cls(
            item_ids=param_ids(post, "items"),
            violation=violation,
            policy=param_object(post, "policy", selectors.policies_all()) if is_violation else None,
            labels=selectors.decision_labels_by_ids(param_ids(post, "labels")) if is_violation else [],
            action=param_object(post, "action", selectors.enforcement_actions_all()) if is_violation else None,
            # Browsers send a textarea's line breaks as CRLF and may not a hidden field's: the confirmation is
            # for this exact text.
            rationale=post.get("rationale", "").replace("\r\n", "\n")[:5000],
        )

    def decision(self) -> dict[str, Any]:
        if not self.violation:
            raise ApplicationError(
                "Choose 'No violation' or 'Violation': a bulk decision has no default.", field="violation"
            )
        return {
            "is_violation": self.violation == "yes",
            "policy": self.policy,
            "labels": self.labels,
            "action": self.action,
            "rationale": self.rationale,
        }


def _bulk_filters(source: Any) -> selectors.BulkFilter:
    return selectors.BulkFilter(
        text=source.get("text", "")[:200],
        tag=source.get("tag", "")[:100],
        surface=source.get("surface", "")[:100],
        language=source.get("language", "")[:16],
        min_priority=param_int(source, "min_priority", minimum=-MAX_INT, maximum=MAX_INT),
    )


@login_required
@require_http_methods(["GET", "POST"])
def bulk_decide(request: HttpRequest, slug: str) -> HttpResponse:
    """Senior reviewers: filter a queue, select waiting items, choose one decision, preview the batch (its count
    and items), confirm it by typing the count; revert a recent batch. Refusals answer 4xx naming the field."""
    user = _reviewer(request)
    queue = get_object_or_404(selectors.queues_active(), slug=slug)
    if not user.has_perm("core.bulk_decide") or not claims.reviewer_may_work(queue, user):
        raise PermissionDenied
    filters = _bulk_filters(request.POST if request.method == "POST" else request.GET)
    if request.method == "GET":
        return _bulk_page(request, queue, user, filters)
    post = request.POST
    step = post.get("step", "preview")
    back = f"{reverse('review-bulk', args=[queue.slug])}?{filters_query(filters)}"
    if step == "revert":
        try:
            reverted = bulk.decision_batch_revert(
                batch_id=post.get("batch", ""), actor=user, reason=post.get("reason", "")[:5000]
            )
        except ApplicationError as exc:
            return _bulk_page(request, queue, user, filters, error=exc)
        kept = f"; {len(reverted.kept)} kept (corrected, appealed or reopened since)" if reverted.kept else ""
        back_in_queue = f"{len(reverted.reverted)} back in the queue{kept}"
        messages.success(request, f"Batch {reverted.batch_id} reverted: {back_in_queue}.")
        return redirect(back)
    chosen: _BulkChoice | None = None
    try:
        chosen = _BulkChoice.from_post(post)
        decision = chosen.decision()
        if step == "confirm":
            result = bulk.items_bulk_decide(
                queue=queue,
                item_ids=chosen.item_ids,
                actor=user,
                confirmation=post.get("confirmation", ""),
                confirmed_count=param_int(post, "confirmed_count", minimum=0, maximum=MAX_INT),
                **decision,
            )
            skipped = f"; {len(result.skipped)} skipped (taken or decided meanwhile)" if result.skipped else ""
            messages.success(
                request,
                f"Batch {result.batch_id}: {len(result.decided)} decided{skipped}. It can be "
                "reverted below for a while.",
            )
            return redirect(back)
        preview = bulk.items_bulk_preview(queue=queue, item_ids=chosen.item_ids, actor=user, **decision)
    except ApplicationError as exc:
        if step == "confirm" and exc.field == "confirmed_count" and chosen is not None:
            return _bulk_confirm_page(request, queue, user, filters, chosen, error=exc)
        return _bulk_page(request, queue, user, filters, error=exc, chosen=chosen)
    return _bulk_confirm_page(request, queue, user, filters, chosen, preview=preview)


def _bulk_page(
    request: HttpRequest,
    queue: Queue,
    user: User,
    filters: selectors.BulkFilter,
    *,
    error: ApplicationError | None = None,
    chosen: _BulkChoice | None = None,
) -> HttpResponse:
    candidates = selectors.bulk_candidates(queue, user, filters)
    return render(
        request,
        "queues/bulk.html",
        {
            "queue": queue,
            "filters": filters,
            "filters_query": filters_query(filters),
            "items": list(candidates[: bulk.bulk_max()]),
            "total": candidates.count(),
            "cap": bulk.bulk_max(),
            "policies": selectors.queue_policies(queue),
            "batches": selectors.bulk_batches_recent(queue),
            "error": error,
            "chosen": chosen,
            "chosen_ids": set(chosen.item_ids) if chosen else set(),
            "chosen_labels": {label.pk for label in chosen.labels} if chosen else set(),
        },
        status=error.status_code if error else 200,
    )


def _bulk_confirm_page(
    request: HttpRequest,
    queue: Queue,
    user: User,
    filters: selectors.BulkFilter,
    chosen: _BulkChoice,
    *,
    preview: bulk.BulkPreview | None = None,
    error: ApplicationError | None = None,
) -> HttpResponse:
    if preview is None:  # a wrong count: show the batch again, as it stands now
        try:
            preview = bulk.items_bulk_preview(queue=queue, item_ids=chosen.item_ids, actor=user, **chosen.decision())
        except ApplicationError as exc:
            return _bulk_page(request, queue, user, filters, error=exc, chosen=chosen)
    return render(
        request,
        "queues/bulk_confirm.html",
        {
            "queue": queue,
            "filters": filters,
            "filters_query": filters_query(filters),
            "preview": preview,
            "chosen": chosen,
            "error": error,
        },
        status=error.status_code if error else 200,
    )


def filters_query(filters: selectors.BulkFilter) -> str:
    values = {
        "text": filters.text,
        "tag": filters.tag,
        "surface": filters.surface,
        "language": filters.language,
        "min_priority": "" if filters.min_priority is None else str(filters.min_priority),
    }
    return urlencode({k: v for k, v in values.items() if v})
