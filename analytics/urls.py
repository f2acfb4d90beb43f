from django.urls import path

from analytics import alert_views, api, views

urlpatterns = [
    path("", views.home, name="analytics-home"),
    path("items", views.items, name="analytics-items"),
    path("account-rows", views.account_rows, name="analytics-account-rows"),
    path("item/<int:pk>/", views.item, name="analytics-item"),
    path("alert/<int:pk>/", alert_views.alert_detail, name="analytics-alert"),
    path("alert/<int:pk>/acknowledge", alert_views.alert_acknowledge, name="analytics-alert-acknowledge"),
    path("alert/<int:pk>/resolve", alert_views.alert_resolve, name="analytics-alert-resolve"),
    path("alert-rules/", alert_views.alert_rules, name="analytics-alert-rules"),
    path("alert-rules/new", alert_views.alert_rule_edit, name="analytics-alert-rule-new"),
    path("alert-rules/<int:pk>/", alert_views.alert_rule_edit, name="analytics-alert-rule"),
    path("<slug:area>/", views.area, name="analytics-area"),
    path("<slug:area>/<str:name>/", views.panel, name="analytics-panel"),
]

# Mounted under /api/v1/metrics/ by the root URLs.
api_urlpatterns = [
    path("", api.MetricsIndexApi.as_view(), name="api-metrics"),
    path("<str:name>", api.MetricApi.as_view(), name="api-metric"),
]
