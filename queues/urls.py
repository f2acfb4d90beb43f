"""The reviewer workspace (mounted at /review/)."""

from django.urls import path

from queues import views

urlpatterns = [
    path("", views.my_queues, name="review-queues"),
    path("queues/<slug:slug>/next", views.start_reviewing, name="review-next"),
    path("items/<int:pk>/", views.item_page, name="review-item"),
    path("items/<int:pk>/decide", views.decide, name="review-decide"),
    path("items/<int:pk>/release", views.release, name="review-release"),
    path("items/<int:pk>/appeal", views.appeal_decide, name="review-appeal"),
    path("items/<int:pk>/escalate", views.escalate, name="review-escalate"),
    path("items/<int:pk>/lease", views.renew_lease, name="review-lease"),
    path("items/<int:pk>/reservation/release", views.reservation_release, name="review-reservation-release"),
    path("queues/<slug:slug>/bulk", views.bulk_decide, name="review-bulk"),
    path("preferences", views.preferences, name="review-preferences"),
    path("wellness", views.wellness_settings, name="review-wellness"),
]
