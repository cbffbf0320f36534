"""URLs, relative to the public prefix (/webapps or /public)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from django.views.static import serve as serve_media

from demo_site import settings
from showcase import views

urlpatterns = [
    path("", views.index, name="index"),
    path("whoami.json", views.whoami, name="whoami"),
    path("upload/", views.upload, name="upload"),
    path("ferryman/", include("ferryman.django.urls")),   # health/ (used by the pools) and diagnose/
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # The app servers serve static and uploaded files themselves in the demo.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
    re_path(r"^media/(?P<path>.*)$", serve_media, {"document_root": settings.MEDIA_ROOT}, name="media"),
]
