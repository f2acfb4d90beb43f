"""The rule editor's pages (mounted at /rules/)."""

from django.urls import path

from routing.rules import views

urlpatterns = [
    path("", views.rules_index, name="rules-index"),
    path("new", views.ruleset_new, name="rules-new"),
    path("check", views.condition_check, name="rules-check"),
    path("try", views.condition_try_view, name="rules-try"),
    path("rollback/<slug:kind>", views.ruleset_rollback_view, name="rules-rollback"),
    path("incidents/<int:pk>/resolve", views.rule_incident_resolve_view, name="rules-incident-resolve"),
    path("backtests/<int:pk>/", views.backtest_detail, name="rules-backtest"),
    path("<int:pk>/", views.ruleset_detail, name="rules-detail"),
    path("<int:pk>/meta", views.ruleset_meta, name="rules-meta"),
    path("<int:pk>/rules/", views.rule_save_view, name="rules-rule-add"),
    path("<int:pk>/rules/<int:rule_pk>/", views.rule_save_view, name="rules-rule-edit"),
    path("<int:pk>/rules/<int:rule_pk>/delete", views.rule_delete_view, name="rules-rule-delete"),
    path("<int:pk>/rules/<int:rule_pk>/move", views.rule_move_view, name="rules-rule-move"),
    path("<int:pk>/diff/", views.ruleset_diff_view, name="rules-diff"),
    path("<int:pk>/backtest", views.backtest_new, name="rules-backtest-new"),
    path("<int:pk>/shadow/", views.shadow_compare, name="rules-shadow"),
    path("<int:pk>/<slug:step>", views.ruleset_transition, name="rules-transition"),
]
