"""Media pages (mounted at /media/): stored copies behind signed links, and the hash banks."""

from django.urls import path

from routing.scoring.media import views

urlpatterns = [
    path("copy/<str:token>", views.media_copy, name="media-copy"),
    path("banks/", views.hash_banks, name="media-banks"),
    path("banks/<slug:slug>/active", views.hash_bank_active, name="media-bank-active"),
    path("banks/<slug:slug>/delete", views.hash_bank_delete, name="media-bank-delete"),
]
