"""The ground-truth export: the latest verified label of every item, as CSV for training and audits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, StreamingHttpResponse
from django.views.decorators.http import require_GET

from ops_platform.core.csv_export import csv_response
from qa import selectors
from qa.views.common import qa_user

GROUND_TRUTH_COLUMNS = ["item_id", "source", "external_id", "is_violation", "policy", "origin", "recorded_at"]


def _lines() -> Iterator[Sequence[object]]:
    yield GROUND_TRUTH_COLUMNS
    for item_id, source, external_id, violation, policy, origin, recorded_at in selectors.ground_truth_rows():
        yield [item_id, source, external_id, int(violation), policy or "", origin, recorded_at.isoformat()]


@login_required
@require_GET
def ground_truth_csv(request: HttpRequest) -> StreamingHttpResponse:
    qa_user(request)
    return csv_response(_lines(), "ground-truth")
