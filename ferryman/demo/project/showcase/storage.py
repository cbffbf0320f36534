"""Static file URLs that follow the public prefix of each request.

Django caches ``STATIC_URL`` with the script prefix of the first request, but one app server is
reached under two public prefixes (/webapps and /public); these URLs are built per request instead.
"""

from __future__ import annotations

from urllib.parse import quote

from django.contrib.staticfiles.storage import StaticFilesStorage
from django.urls import get_script_prefix


class PrefixStaticFilesStorage(StaticFilesStorage):
    """`StaticFilesStorage` whose URLs start with the current request's script prefix."""

    def url(self, name: str | None) -> str:
        return f"{get_script_prefix()}static/{quote((name or '').lstrip('/'))}"
