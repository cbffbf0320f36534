"""``ASGI_APPLICATION`` for a Django project behind ferryman (uvicorn, daphne)::

    from ferryman.django.asgi import get_asgi_application
    application = get_asgi_application()
"""

from __future__ import annotations

from django.core.asgi import get_asgi_application as _django_asgi

from ferryman.asgi import ProxyHeadersMiddleware
from ferryman.django.conf import proxy_headers, setting


def get_asgi_application() -> ProxyHeadersMiddleware:
    """Django's ASGI app behind ferryman's middleware; ImproperlyConfigured when no trust is set."""
    app = _django_asgi()
    return ProxyHeadersMiddleware(app, proxy=proxy_headers(), mount=setting("FERRYMAN_MOUNT", "") or "")  # type: ignore[arg-type]
