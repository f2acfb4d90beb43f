"""Scoring pages for ops (the API's urls are in ``routing/urls.py``)."""

from django.urls import path

from routing import views

urlpatterns = [
    path("", views.scoring_overview, name="scoring-overview"),
    path("models/<int:pk>/", views.model_card, name="scoring-model-card"),
    path("dead-letters/<int:pk>/redrive", views.dead_letter_redrive_view, name="scoring-dead-letter-redrive"),
]
