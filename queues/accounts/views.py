"""The account page (``accounts:detail``), its forms (labels, actions, approvals, reversals, strikes), acting on an
account from an item, and bulk account actions (preview, then confirm). Views check the page's door; the services
check the rest (role, vendor scope, two-person approval)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import Policy, User
from ops_platform.core.permissions import has_any, permitted
from queues.accounts import actions, selectors, services, strikes
from queues.accounts.models import Account, AccountAction, ActionKind, Strike
from queues.models import ReviewItem

VIEW_PERMS = ("core.review_items", "core.act_on_accounts", "core.perform_qa", "core.view_analytics")
# Who may read the content of an account's items on its page: the people who review content.
CONTENT_PERMS = ("core.review_items", "core.act_on_accounts")


def _account(request: HttpRequest, pk: int) -> tuple[User, Account]:
    user = permitted(request, *VIEW_PERMS)
    account = selectors.accounts_visible_to(user).filter(pk=pk).first()
    if account is None:
        raise Http404("No account you may see has that id.")
    return user, account


def _acting(request: HttpRequest, pk: int) -> tuple[User, Account]:
    """The door of the forms that change an account: one the person may see (else 404), and the role (else 403)."""
    user, account = _account(request, pk)
    if not user.has_perm("core.act_on_accounts"):
        raise PermissionDenied
    return user, account


def _before(request: HttpRequest) -> int | None:
    """The items page's keyset (``?before=<item id>``: items older than it); anything but a whole number: the first
    page."""
    raw = request.GET.get("before", "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


def _render(
    request: HttpRequest, user: User, account: Account, *, status: int = 200, refusal: ApplicationError | None = None
) -> HttpResponse:
    show_content, before = has_any(user, *CONTENT_PERMS), _before(request)
    return render(
        request,
        "accounts/detail.html",
        {
            "account": account,
            "page": selectors.account_page(account, viewer=user, before=before, content=show_content),
            "before": before,
            "show_content": show_content,
            "may_act": user.has_perm("core.act_on_accounts"),
            "policies": Policy.objects.filter(is_active=True).order_by("slug"),
            "kinds": ActionKind.choices,
            "now": timezone.now(),
            "refusal": refusal,
        },
        status=status,
    )


def _refused(request: HttpRequest, user: User, account: Account, exc: ApplicationError) -> HttpResponse:
    """A refused change: the account page again, with why and the field, under the refusal's 4xx."""
    return _render(request, user, account, status=exc.status_code, refusal=exc)


@login_required
@require_GET
def account_detail(request: HttpRequest, pk: int) -> HttpResponse:
    user, account = _account(request, pk)
    return _render(request, user, account)


def _back(request: HttpRequest, account: Account) -> HttpResponse:
    next_url = request.POST.get("next", "")
    if next_url.startswith("/review/items/") and next_url.isascii():
        return redirect(next_url)
    return redirect("accounts:detail", pk=account.pk)


def _duration(request: HttpRequest) -> timedelta | None:
    """The action's duration from the form's whole days (empty: until reversed); anything else is a 400."""
    raw = request.POST.get("duration_days", "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 5:
        raise ApplicationError("Give the duration in whole days, or leave it empty.", field="duration")
    return timedelta(days=int(raw))


def _policy(request: HttpRequest) -> Policy | None:
    raw = request.POST.get("policy", "")
    return Policy.objects.filter(pk=int(raw)).first() if raw.isascii() and raw.isdigit() else None


@login_required
@require_POST
def account_act(request: HttpRequest, pk: int) -> HttpResponse:
    """Act on the account (from its page or from an item page): warn, restrict, suspend or a custom action."""
    user, account = _acting(request, pk)
    item_raw = request.POST.get("item", "")
    decision_ids: list[int] = []
    if item_raw.isascii() and item_raw.isdigit():
        item = ReviewItem.objects.filter(pk=int(item_raw), source=account.source, author_ref=account.ref).first()
        if item is not None:
            decision_ids = list(item.decisions.filter(is_final=True).values_list("pk", flat=True))
    try:
        action = actions.account_action_request(
            account=account,
            actor=user,
            kind=request.POST.get("kind", ""),
            policy=_policy(request),
            reason=request.POST.get("reason", ""),
            custom_action=request.POST.get("custom_action", ""),
            decision_ids=decision_ids,
            duration=_duration(request),
        )
    except ApplicationError as exc:
        return _refused(request, user, account, exc)
    if action.state == "pending_approval":
        messages.info(request, "The suspension waits for a second person's approval.")
    else:
        messages.success(request, f"{action.name} is in force on {account}.")
    return _back(request, account)


@login_required
@require_POST
def action_decide(request: HttpRequest, pk: int, action_pk: int) -> HttpResponse:
    """Approve, reject or reverse one of the account's actions."""
    user, account = _acting(request, pk)
    action = get_object_or_404(AccountAction, pk=action_pk, account=account)
    verb = request.POST.get("do", "")
    reason = request.POST.get("reason", "")
    try:
        if verb == "approve":
            actions.account_action_approve(action=action, actor=user)
        elif verb == "reject":
            actions.account_action_reject(action=action, actor=user, reason=reason)
        elif verb == "reverse":
            actions.account_action_reverse(action=action, actor=user, reason=reason)
        else:
            raise ApplicationError("Choose approve, reject or reverse.", field="do")
    except ApplicationError as exc:
        return _refused(request, user, account, exc)
    messages.success(request, f"Action {action.pk}: {verb} done.")
    return _back(request, account)


@login_required
@require_POST
def label_change(request: HttpRequest, pk: int) -> HttpResponse:
    user, account = _acting(request, pk)
    label = request.POST.get("label", "")
    try:
        if request.POST.get("do") == "remove":
            services.account_label_remove(
                account=account, label=label, actor=user, reason=request.POST.get("reason", "")
            )
        else:
            days = request.POST.get("days", "")
            if days and (not (days.isascii() and days.isdigit()) or not 1 <= int(days) <= 3650):
                raise ApplicationError("Days must be a whole number from 1 to 3650.", field="days")
            expires_at = timezone.now() + timedelta(days=int(days)) if days else None
            services.account_label_set(
                account=account, label=label, actor=user, reason=request.POST.get("reason", ""), expires_at=expires_at
            )
    except ApplicationError as exc:
        return _refused(request, user, account, exc)
    return _back(request, account)


@login_required
@require_POST
def strike_remove(request: HttpRequest, pk: int, strike_pk: int) -> HttpResponse:
    user, account = _acting(request, pk)
    strike = get_object_or_404(Strike, pk=strike_pk, account=account)
    try:
        strikes.strike_remove(strike=strike, actor=user, reason=request.POST.get("reason", ""))
    except ApplicationError as exc:
        return _refused(request, user, account, exc)
    return _back(request, account)


def _ids(raw: str) -> list[int]:
    parts = [p.strip() for p in raw.replace("\n", ",").split(",") if p.strip()]
    if any(not (p.isascii() and p.isdigit()) or len(p) > 12 for p in parts):
        raise ApplicationError("Account ids are whole numbers, separated by commas.", field="accounts")
    return [int(p) for p in parts]


@login_required
@require_http_methods(["GET", "POST"])
def bulk(request: HttpRequest) -> HttpResponse:
    """Bulk account actions for seniors: the first POST previews, the second (``confirm``) acts."""
    user = permitted(request, "core.bulk_decide")
    context: dict[str, object] = {"policies": Policy.objects.filter(is_active=True), "kinds": ActionKind.choices}
    if request.method == "POST":
        post = request.POST
        context["form"] = post
        try:
            ids = _ids(post.get("accounts", ""))
            preview = actions.account_actions_preview(actor=user, account_ids=ids)
            if post.get("confirm") == "yes":
                if post.get("confirmed_count", "") != str(len(preview.accounts)):
                    raise ApplicationError(
                        f"Type the number of accounts previewed ({len(preview.accounts)}) to confirm.",
                        field="confirmed_count",
                    )
                batch = actions.account_actions_bulk(
                    actor=user,
                    account_ids=ids,
                    kind=post.get("kind", ""),
                    policy=_policy(request),
                    reason=post.get("reason", ""),
                    custom_action=post.get("custom_action", ""),
                    duration=_duration(request),
                )
                messages.success(request, f"Bulk account action {batch} applied to {len(preview.accounts)} accounts.")
                return redirect("accounts:bulk")
            context["preview"] = preview
        except ApplicationError as exc:
            context["refusal"] = exc
            return render(request, "accounts/bulk.html", context, status=exc.status_code)
    return render(request, "accounts/bulk.html", context)
