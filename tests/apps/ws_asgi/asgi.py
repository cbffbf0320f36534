"""The ASGI application: Django for plain HTTP, Channels consumers for WebSocket."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.ws_asgi.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_http = get_asgi_application()  # sets Django up before the consumers import models or settings

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from tests.apps.ws_asgi import consumers  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_http,
    "websocket": URLRouter([
        re_path(r"^(?:.*/)?ws/echo/?$", consumers.EchoConsumer.as_asgi()),
        re_path(r"^(?:.*/)?ws/big/?$", consumers.BigConsumer.as_asgi()),
        re_path(r"^(?:.*/)?ws/stall/?$", consumers.StallConsumer.as_asgi()),
        re_path(r"^(?:.*/)?ws/who/?$", consumers.WhoConsumer.as_asgi()),
        re_path(r"^(?:.*/)?ws/refuse/?$", consumers.RefuseConsumer.as_asgi()),
    ]),
})
