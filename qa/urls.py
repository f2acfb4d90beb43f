"""The QA pages (mounted at /qa/)."""

from django.urls import path

from qa import api
from qa.views import calibration, golden, ground_truth, plans, review, scorecards

urlpatterns = [
    path("", review.home, name="qa-home"),
    path("review/next", review.review_next, name="qa-review-next"),
    path("samples/<int:pk>/review", review.review_page, name="qa-review"),
    path("samples/<int:pk>/skip", review.review_skip, name="qa-review-skip"),
    path("samples/<int:pk>/compare", review.compare, name="qa-compare"),
    path("adjudication/", review.adjudication_list, name="qa-adjudication"),
    path("samples/<int:pk>/adjudicate", review.adjudicate, name="qa-adjudicate"),
    path("samples/<int:pk>/golden", golden.golden_from_sample, name="qa-sample-golden"),
    path("plans/", plans.plans, name="qa-plans"),
    path("plans/new", plans.plan_edit, name="qa-plan-new"),
    path("plans/<int:pk>/", plans.plan_edit, name="qa-plan-edit"),
    path("golden/", golden.golden_items, name="qa-golden"),
    path("calibration/", calibration.calibration_list, name="qa-calibration"),
    path("calibration/<int:pk>/", calibration.calibration_session, name="qa-calibration-session"),
    path("calibration/<int:pk>/rate", calibration.calibration_rate_page, name="qa-calibration-rate-next"),
    path("calibration/<int:pk>/items/<int:item_pk>/rate", calibration.calibration_rate, name="qa-calibration-rate"),
    path("calibration/<int:pk>/close", calibration.calibration_close, name="qa-calibration-close"),
    path("scorecards/", scorecards.scorecards, name="qa-scorecards"),
    path("me/", scorecards.coaching, name="qa-me"),
    path("ground-truth.csv", ground_truth.ground_truth_csv, name="qa-ground-truth"),
]

# Mounted at /api/v1/: review and QA by API (qa/api.py).
api_urlpatterns = [
    path("queues/<slug:slug>/claim-next", api.QueueClaimNextApi.as_view(), name="api-queue-claim-next"),
    path("review-items/<int:pk>/decision", api.ReviewItemDecisionApi.as_view(), name="api-review-item-decision"),
    path("review-items/<int:pk>/release", api.ReviewItemReleaseApi.as_view(), name="api-review-item-release"),
    path("qa/samples/claim-next", api.QaSampleClaimNextApi.as_view(), name="api-qa-sample-claim-next"),
    path("qa/samples/<int:pk>/skip", api.QaSampleSkipApi.as_view(), name="api-qa-sample-skip"),
    path("qa/samples/<int:pk>/re-review", api.QaSampleReReviewApi.as_view(), name="api-qa-sample-re-review"),
    path("qa/samples/<int:pk>/adjudication", api.QaSampleAdjudicationApi.as_view(), name="api-qa-sample-adjudicate"),
]
api_urlpatterns += [
    path("qa/calibration-sessions", api.CalibrationSessionsApi.as_view(), name="api-calibration-sessions"),
    path("qa/calibration-sessions/<int:pk>/ratings", api.CalibrationRatingsApi.as_view(), name="api-calibration-rate"),
    path(
        "qa/calibration-sessions/<int:pk>/rating-batches",
        api.CalibrationRatingBatchApi.as_view(),
        name="api-calibration-rate-batch",
    ),
    path("qa/calibration-sessions/<int:pk>/close", api.CalibrationCloseApi.as_view(), name="api-calibration-close"),
    path("qa/calibration-sessions/<int:pk>/report", api.CalibrationReportApi.as_view(), name="api-calibration-report"),
    path("qa/label-imports", api.LabelImportsApi.as_view(), name="api-qa-label-imports"),
]
