"""The ground-truth export: the latest verified label of every item, as CSV for training and audits."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, StreamingHttpResponse
from django.views.decorators.http import require_GET

from qa import selectors
from qa.views.common import qa_user

GROUND_TRUTH_COLUMNS = ["item_id", "source", "external_id", "is_violation", "policy", "origin", "recorded_at"]


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value: object) -> object:
    """Client-supplied strings must not run as spreadsheet formulas."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _ground_truth_rows() -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(GROUND_TRUTH_COLUMNS)
    rows = selectors.ground_truth_latest().values_list(
        "item_id", "item__source", "item__external_id", "is_violation", "policy__slug", "origin", "recorded_at"
    )
    for item_id, source, external_id, violation, policy, origin, recorded_at in rows.iterator(chunk_size=2000):
        yield writer.writerow(
            [item_id, _cell(source), _cell(external_id), int(violation), policy or "", origin, recorded_at.isoformat()]
        )


@login_required
@require_GET
def ground_truth_csv(request: HttpRequest) -> StreamingHttpResponse:
    qa_user(request)
    response = StreamingHttpResponse(_ground_truth_rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="ground-truth.csv"'
    return response
