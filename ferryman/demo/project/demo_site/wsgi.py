"""WSGI entry point of every demo app server: Django behind ferryman's forwarded headers."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from showcase.forwarded import BehindFerryman

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

application = BehindFerryman(get_wsgi_application(), mount="/webapps")
