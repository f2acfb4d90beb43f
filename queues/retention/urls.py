"""Mounted at /api/v1/."""

from django.urls import path

from queues.retention import api

urlpatterns = [
    path("erasures", api.ErasuresApi.as_view(), name="api-erasures"),
    path("erasures/<int:pk>", api.ErasureDetailApi.as_view(), name="api-erasure-detail"),
    path("legal-holds", api.LegalHoldsApi.as_view(), name="api-legal-holds"),
    path("legal-holds/<int:pk>/clear", api.LegalHoldClearApi.as_view(), name="api-legal-hold-clear"),
]
