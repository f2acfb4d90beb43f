"""The QA pages (mounted at /qa/)."""

from django.urls import path

from qa.views import calibration, golden, ground_truth, plans, review, scorecards

urlpatterns = [
    path("", review.home, name="qa-home"),
    path("review/next", review.review_next, name="qa-review-next"),
    path("samples/<int:pk>/review", review.review_page, name="qa-review"),
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
    path("calibration/<int:pk>/items/<int:item_pk>/rate", calibration.calibration_rate, name="qa-calibration-rate"),
    path("calibration/<int:pk>/close", calibration.calibration_close, name="qa-calibration-close"),
    path("scorecards/", scorecards.scorecards, name="qa-scorecards"),
    path("me/", scorecards.coaching, name="qa-me"),
    path("ground-truth.csv", ground_truth.ground_truth_csv, name="qa-ground-truth"),
]
