"""Scoring pages for ops (mounted at /scoring/; a dead letter's re-drive is intake's, at /scoring/dead-letters/)."""

from django.urls import path

from routing.scoring import views

urlpatterns = [
    path("", views.scoring_overview, name="scoring-overview"),
    path("models/<int:pk>/", views.model_card, name="scoring-model-card"),
]
