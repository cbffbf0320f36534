"""HTTP URLs of the WebSocket test app; every path works under any prefix (/webapps/ready, /ready)."""

from django.urls import re_path

from tests.apps.ws_asgi import views

urlpatterns = [
    re_path(r"^(?:.*/)?ready/?$", views.ready),
    re_path(r"^(?:.*/)?who/?$", views.who),
    re_path(r"^(?:.*/)?release/?$", views.release),
    re_path(r"^(?:.*/)?stalled/?$", views.stalled),
    re_path(r"^(?:.*/)?open/?$", views.is_open),
]
