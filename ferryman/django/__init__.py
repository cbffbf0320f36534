"""ferryman's Django app: the app side of a deployment behind ferryman.

``INSTALLED_APPS += ["ferryman.django"]`` gives: system checks (``ferryman.E001``...) that compare the
settings with the public URLs in ``FERRYMAN_PUBLIC_URLS``; ``ProxyRemoteUserMiddleware``; a health view
and a diagnostic view (``ferryman.django.urls``); ``manage.py ferryman_doctor URL``; and WSGI/ASGI
entry points that apply the forwarded values (``ferryman.django.wsgi``/``.asgi``). See docs/django.md.
"""
