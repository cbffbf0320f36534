"""``WSGI_APPLICATION`` for a Django project behind ferryman (the project's wsgi.py)::

    import os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from ferryman.django.wsgi import get_wsgi_application
    application = get_wsgi_application()

Django's application wrapped in ``ferryman.wsgi.ProxyHeadersMiddleware``, configured from the
FERRYMAN_* settings. It must wrap Django (a Django middleware is too late): ``SCRIPT_NAME`` is read
before any middleware runs, so the public prefix has to be in the environ by then.
"""

from __future__ import annotations

from django.core.wsgi import get_wsgi_application as _django_wsgi

from ferryman.django.conf import proxy_headers, setting
from ferryman.wsgi import ProxyHeadersMiddleware


def get_wsgi_application() -> ProxyHeadersMiddleware:
    """Django's WSGI app behind ferryman's middleware; ImproperlyConfigured when no trust is set."""
    app = _django_wsgi()
    return ProxyHeadersMiddleware(app, proxy=proxy_headers(), mount=setting("FERRYMAN_MOUNT", "") or "")
