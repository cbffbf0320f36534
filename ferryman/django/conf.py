"""ferryman's Django settings, read in one place.

``FERRYMAN_TRUSTED_PROXIES``  addresses/CIDR networks of ferryman (list of strings).
``FERRYMAN_SIGNING_KEYS``     the keys of ferryman's ``[signing]``: strings (``"env:NAME"`` and
                              ``"file:PATH"`` are read) or bytes; with them only signed requests count.
``FERRYMAN_FORWARDED``        read RFC 7239 ``Forwarded`` instead of ``X-Forwarded-*`` (default False).
``FERRYMAN_MAX_SKEW``         seconds a signature's timestamp may be off (default 30).
``FERRYMAN_REPLAY_CACHE``     nonces remembered per process (default 65536; 0: off).
``FERRYMAN_PUBLIC_URLS``      the URLs the app is reached at, e.g. ["https://www.example.com/webapps"].
``FERRYMAN_MOUNT``            the path the app is served under on the app server (ferryman's member URL
                              path) when the server does not set SCRIPT_NAME/root_path itself (uvicorn).
``FERRYMAN_MEMBER_PATH``      the path of ferryman's member URL for this app (e.g. ``/webapps``; default:
                              FERRYMAN_MOUNT). ferryman rewrites a cookie Path under it to the public
                              prefix (as Apache's ProxyPassReverseCookiePath), so check W004 accepts it.
``FERRYMAN_MEMBER_NAME``      how this app server names itself in diagnostics (default: its address).
``FERRYMAN_DRAIN_FILE``       while this file exists the health view answers 503 "draining".
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ferryman.proxyheaders import ProxyHeaders

NAMES = ("FERRYMAN_TRUSTED_PROXIES", "FERRYMAN_SIGNING_KEYS")


def setting(name: str, default: Any = None) -> Any:
    return getattr(settings, name, default)


def build_proxy_headers() -> ProxyHeaders:
    """A :class:`ProxyHeaders` from the settings.

    Raises:
        ImproperlyConfigured: naming FERRYMAN_TRUSTED_PROXIES / FERRYMAN_SIGNING_KEYS when neither is
            set (nothing could be believed) or a value is malformed.
    """
    try:
        return ProxyHeaders(
            setting("FERRYMAN_TRUSTED_PROXIES", ()) or (), setting("FERRYMAN_SIGNING_KEYS", ()) or (),
            forwarded=bool(setting("FERRYMAN_FORWARDED", False)),
            max_skew=float(setting("FERRYMAN_MAX_SKEW", 30.0)),
            replay_cache=int(setting("FERRYMAN_REPLAY_CACHE", 65536)),
            setting_names=NAMES)
    except ValueError as e:
        raise ImproperlyConfigured(f"ferryman: {e}") from None


@lru_cache(maxsize=1)
def proxy_headers() -> ProxyHeaders:
    """The process-wide :class:`ProxyHeaders` (one replay cache per process)."""
    return build_proxy_headers()


class PublicURL:
    """One entry of FERRYMAN_PUBLIC_URLS, split into what the app should see."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL such as \"https://www.example.com/webapps\"")
        self.url = url
        self.scheme = parts.scheme
        self.hostname = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default = parts.port is None or parts.port == (443 if parts.scheme == "https" else 80)
        self.host = parts.hostname if default else f"{parts.hostname}:{parts.port}"
        if ":" in parts.hostname:
            self.host = f"[{parts.hostname}]" if default else f"[{parts.hostname}]:{parts.port}"
        self.origin = f"{self.scheme}://{self.host}"
        self.prefix = parts.path.rstrip("/")


def public_urls() -> list[PublicURL]:
    """FERRYMAN_PUBLIC_URLS parsed; raises ValueError on a malformed entry."""
    value = setting("FERRYMAN_PUBLIC_URLS", ()) or ()
    if isinstance(value, str):
        value = [value]
    return [PublicURL(u) for u in value]
