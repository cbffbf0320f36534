from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from tests.apps.djangoproj import views

urlpatterns = [
    path("whoami/", views.whoami, name="whoami"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("go/", views.go, name="go"),
    path("admin/", admin.site.urls),
    path("ferryman/", include("ferryman.django.urls")),
]
