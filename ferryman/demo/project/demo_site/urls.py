"""URLs, relative to the public prefix (/webapps or /public)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path

from showcase import views

urlpatterns = [
    path("", views.index, name="index"),
    path("whoami.json", views.whoami, name="whoami"),
    path("upload/", views.upload, name="upload"),
    path("ferryman/", include("ferryman.django.urls")),   # health/ (used by the pools) and diagnose/
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # The app servers serve the project's static files themselves in the demo; uploaded files
    # (MEDIA_ROOT) are served by the front end's /media static route, never by Django.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
]
