"""The QA pages (mounted at /qa/)."""

from django.urls import path

from qa import views

urlpatterns = [
    path("", views.home, name="qa-home"),
    path("review/next", views.review_next, name="qa-review-next"),
    path("samples/<int:pk>/review", views.review_page, name="qa-review"),
    path("samples/<int:pk>/compare", views.compare, name="qa-compare"),
    path("adjudication/", views.adjudication_list, name="qa-adjudication"),
    path("samples/<int:pk>/adjudicate", views.adjudicate, name="qa-adjudicate"),
    path("samples/<int:pk>/golden", views.golden_from_sample, name="qa-sample-golden"),
    path("plans/", views.plans, name="qa-plans"),
    path("plans/new", views.plan_edit, name="qa-plan-new"),
    path("plans/<int:pk>/", views.plan_edit, name="qa-plan-edit"),
    path("golden/", views.golden_items, name="qa-golden"),
    path("calibration/", views.calibration_list, name="qa-calibration"),
    path("calibration/<int:pk>/", views.calibration_session, name="qa-calibration-session"),
    path("calibration/<int:pk>/items/<int:item_pk>/rate", views.calibration_rate, name="qa-calibration-rate"),
    path("calibration/<int:pk>/close", views.calibration_close, name="qa-calibration-close"),
    path("scorecards/", views.scorecards, name="qa-scorecards"),
    path("me/", views.coaching, name="qa-me"),
    path("ground-truth.csv", views.ground_truth_csv, name="qa-ground-truth"),
]
