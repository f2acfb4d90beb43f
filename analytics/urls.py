from django.urls import path

from analytics import api, views

urlpatterns = [
    path("", views.home, name="analytics-home"),
    path("items", views.items, name="analytics-items"),
    path("<slug:area>/", views.area, name="analytics-area"),
    path("<slug:area>/<str:name>/", views.panel, name="analytics-panel"),
]

# Mounted under /api/v1/metrics/ by the root URLs.
api_urlpatterns = [
    path("", api.MetricsIndexApi.as_view(), name="api-metrics"),
    path("<str:name>", api.MetricApi.as_view(), name="api-metric"),
]
