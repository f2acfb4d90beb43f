from django.urls import path

from investigation import api, views

urlpatterns = [
    path("", views.search, name="investigation-search"),
    path("items/<int:pk>/", views.item, name="investigation-item"),
]

# Mounted under /api/v1/ by the root URLs.
api_urlpatterns = [
    path("search/items", api.ItemSearchApi.as_view(), name="api-search-items"),
]
