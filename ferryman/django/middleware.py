"""``ProxyRemoteUserMiddleware``: Django's ``RemoteUserMiddleware``, honoured only behind ferryman.

MIDDLEWARE = [
    ...,
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ferryman.django.middleware.ProxyRemoteUserMiddleware",
    ...,
]
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.RemoteUserBackend", ...]

The user is the one ferryman authenticated (htpasswd or a trusted SSO header), and only when the
request is believed: it came from a trusted proxy, or carries a valid signature. Any other request
is treated as carrying no user at all, whatever ``Remote-User`` spelling it sent, so a session
that RemoteUserBackend opened is closed (``force_logout_if_no_header``).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.middleware import RemoteUserMiddleware
from django.http import HttpRequest

from ferryman.django.conf import proxy_headers
from ferryman.django.request import request_facts


class ProxyRemoteUserMiddleware(RemoteUserMiddleware):
    """See the module's documentation. Raises ImproperlyConfigured at start when neither
    FERRYMAN_TRUSTED_PROXIES nor FERRYMAN_SIGNING_KEYS is set."""

    header = "REMOTE_USER"

    def __init__(self, get_response: Any) -> None:
        proxy_headers()  # refuse to start without any trust configured
        super().__init__(get_response)

    def _set_user(self, request: HttpRequest) -> None:
        facts = request_facts(request)
        user = facts.user if facts is not None else None
        for key in ("REMOTE_USER", "HTTP_REMOTE_USER"):  # Django's async path reads HTTP_ + header
            if user is None:
                request.META.pop(key, None)
            else:
                request.META[key] = user

    def process_request(self, request: HttpRequest) -> None:
        self._set_user(request)
        super().process_request(request)

    async def aprocess_request(self, request: HttpRequest) -> None:
        self._set_user(request)
        await super().aprocess_request(request)
