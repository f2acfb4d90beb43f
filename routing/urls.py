from django.urls import path

from routing import api

urlpatterns = [
    path("items", api.ItemsApi.as_view(), name="api-items"),
    path("items/<int:pk>", api.ItemDetailApi.as_view(), name="api-item-detail"),
    path("appeals", api.AppealsApi.as_view(), name="api-appeals"),
]
