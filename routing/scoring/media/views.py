"""Stored media for reviewers (signed, expiring links only) and the hash-bank page for policy staff."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ops_platform.core.errors import ApplicationError
from ops_platform.core.permissions import permitted
from ops_platform.core.refusals import refused
from routing.scoring.media.models import HashBank, MediaAsset, MediaStatus
from routing.scoring.media.selectors import banks_summary
from routing.scoring.media.services import bank_active_set, bank_delete, banks_import
from routing.scoring.media.store import media_storage, media_token_read

BANK_EDITORS = ("core.edit_policies", "core.manage_platform")
MAX_CSV_BYTES = 20 * 1024 * 1024


@login_required
@require_GET
def media_copy(request: HttpRequest, token: str) -> FileResponse:
    """The stored copy or preview a signed token names; a forged, altered or expired token is a 404."""
    try:
        asset_id, variant = media_token_read(token)
    except signing.BadSignature:
        raise Http404("This media link is not valid or has expired.") from None
    asset = MediaAsset.objects.filter(pk=asset_id, status=MediaStatus.STORED).first()
    if asset is None:
        raise Http404("No such media.")
    name = asset.copy_name if variant == "copy" else asset.preview_name
    response = FileResponse(media_storage().open(name, "rb"), content_type="image/jpeg")
    response["Content-Disposition"] = "inline"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def hash_banks(request: HttpRequest) -> HttpResponse:
    """List the banks; policy staff import a ``hash,bank,label`` CSV."""
    user = permitted(request, *BANK_EDITORS)
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            messages.error(request, "Choose a CSV file of hash,bank,label rows.")
        elif upload.size is not None and upload.size > MAX_CSV_BYTES:
            messages.error(request, f"The file is over {MAX_CSV_BYTES // (1024 * 1024)} MB.")
        else:
            try:
                text = upload.read().decode("utf-8-sig")
                report = banks_import(text=text, actor=user)
            except UnicodeDecodeError:
                messages.error(request, "The file is not UTF-8 text.")
            except ApplicationError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(
                    request,
                    f"Added {report.added} hashes to {', '.join(report.banks)} ({report.already} already there).",
                )
        return redirect("media-banks")
    return render(request, "routing/hash_banks.html", {"banks": banks_summary()})


@login_required
@require_POST
def hash_bank_active(request: HttpRequest, slug: str) -> HttpResponse:
    """Switch a bank on (``active=on``) or off (``active=off``)."""
    user = permitted(request, *BANK_EDITORS)
    bank = get_object_or_404(HashBank, slug=slug)
    value = request.POST.get("active")
    if value not in ("on", "off"):
        return refused(request, ApplicationError("Say on or off.", field="active"), back=reverse("media-banks"))
    bank_active_set(bank=bank, active=value == "on", actor=user)
    messages.success(request, f"{bank.slug} is now {value}.")
    return redirect("media-banks")


@login_required
@require_POST
def hash_bank_delete(request: HttpRequest, slug: str) -> HttpResponse:
    """Delete a bank once its slug is typed again in ``confirm``."""
    user = permitted(request, *BANK_EDITORS)
    bank = get_object_or_404(HashBank, slug=slug)
    try:
        entries = bank_delete(bank=bank, actor=user, confirm=request.POST.get("confirm", ""))
    except ApplicationError as exc:
        return refused(request, exc, back=reverse("media-banks"))
    messages.success(request, f"Deleted {slug} and its {entries} hashes.")
    return redirect("media-banks")
