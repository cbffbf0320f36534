"""``path("ferryman/", include("ferryman.django.urls"))``: ``health/`` and ``diagnose/``."""

from django.urls import path

from ferryman.django import views

urlpatterns = [
    path("health/", views.health, name="ferryman-health"),
    path("diagnose/", views.diagnose, name="ferryman-diagnose"),
]
