"""Intake's URLs: the REST API (mounted at /api/v1/) and the dead letters' re-drive (at /scoring/dead-letters/)."""

from django.urls import path

from routing.intake import api, views

urlpatterns = [
    path("items", api.ItemsApi.as_view(), name="api-items"),
    path("items/<int:pk>", api.ItemDetailApi.as_view(), name="api-item-detail"),
    path("appeals", api.AppealsApi.as_view(), name="api-appeals"),
]

# Mounted at /scoring/dead-letters/ (the scoring overview lists the dead letters with a re-drive button).
dead_letter_urlpatterns = [
    path("<int:pk>/redrive", views.dead_letter_redrive_view, name="scoring-dead-letter-redrive"),
]
