"""QA's writes, each in a transaction and audited where people act:

- ``sampling``: the sampler that draws decisions and rule auto-actions for re-review, and the plans it applies;
- ``review``: blind re-review and adjudication, which record ground truth and correct a wrong original;
- ``golden``: golden items, their copies injected into live queues and scoring the decisions made on them;
- ``calibration``: calibration sessions and their ratings;
- ``labels``: labels made elsewhere, imported as ground truth or as calibration ratings with their provenance.

Callers import from this package; the modules above are its parts. Reads (statistics, scorecards, lists, the
calibration report) are in ``qa.selectors``.
"""

from qa.services.calibration import MAX_RATINGS, RatingRow, rating_submit, ratings_submit, session_close, session_create
from qa.services.golden import (
    GoldenContext,
    golden_answer_matches,
    golden_context_default,
    golden_copy,
    golden_create,
    golden_from_sample,
    golden_inject,
    golden_rate_set,
    golden_results_score,
)
from qa.services.labels import ExternalLabel, labels_import
from qa.services.review import (
    Verdict,
    adjudicate,
    default_severity,
    error_between,
    original_verdict,
    qa_review_submit,
    require_qa,
    sample_claim_next,
    sample_skip,
)
from qa.services.sampling import (
    RATE_FIELDS,
    Candidate,
    decisions_sample,
    draw,
    inclusion,
    plan_for,
    plan_rate_for,
    plan_sample_size,
    plan_save,
    samples_draw,
)

__all__ = [
    "MAX_RATINGS",
    "RATE_FIELDS",
    "Candidate",
    "ExternalLabel",
    "GoldenContext",
    "RatingRow",
    "Verdict",
    "adjudicate",
    "decisions_sample",
    "default_severity",
    "draw",
    "error_between",
    "golden_answer_matches",
    "golden_context_default",
    "golden_copy",
    "golden_create",
    "golden_from_sample",
    "golden_inject",
    "golden_rate_set",
    "golden_results_score",
    "inclusion",
    "labels_import",
    "original_verdict",
    "plan_for",
    "plan_rate_for",
    "plan_sample_size",
    "plan_save",
    "qa_review_submit",
    "rating_submit",
    "ratings_submit",
    "require_qa",
    "sample_claim_next",
    "sample_skip",
    "samples_draw",
    "session_close",
    "session_create",
]
