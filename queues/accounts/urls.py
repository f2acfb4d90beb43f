"""Account pages (mounted at /accounts/, namespace ``accounts``)."""

from django.urls import path

from queues.accounts import settings_views, views

app_name = "accounts"

urlpatterns = [
    path("<int:pk>/", views.account_detail, name="detail"),
    path("<int:pk>/act", views.account_act, name="act"),
    path("<int:pk>/actions/<int:action_pk>", views.action_decide, name="action"),
    path("<int:pk>/labels", views.label_change, name="label"),
    path("<int:pk>/strikes/<int:strike_pk>/remove", views.strike_remove, name="strike-remove"),
    path("bulk", views.bulk, name="bulk"),
    path("strike-settings/", settings_views.strike_settings, name="strike-settings"),
    path("strike-settings/policy", settings_views.policy_terms_set, name="strike-settings-policy"),
    path("strike-settings/label", settings_views.label_weight_set, name="strike-settings-label"),
    path("strike-settings/threshold", settings_views.threshold_save, name="strike-settings-threshold"),
]
