"""System checks (``manage.py check``): settings that break an app behind ferryman, each with its fix.

They compare the settings with the public URLs the app is reached at (FERRYMAN_PUBLIC_URLS).

=============== =====================================================================================
ferryman.E001   neither FERRYMAN_TRUSTED_PROXIES nor FERRYMAN_SIGNING_KEYS: nothing can be believed
ferryman.E002   a FERRYMAN_* setting is malformed
ferryman.E003   a public host is not in ALLOWED_HOSTS (every request through ferryman gets 400)
ferryman.W001   a public URL is https but SECURE_PROXY_SSL_HEADER does not read X-Forwarded-Proto
ferryman.W002   a public origin is not in CSRF_TRUSTED_ORIGINS
ferryman.W003   USE_X_FORWARDED_HOST is off
ferryman.W004   SESSION_COOKIE_PATH / CSRF_COOKIE_PATH do not cover a public prefix
ferryman.W005   FORCE_SCRIPT_NAME is set while the prefix comes from X-Forwarded-Prefix
ferryman.W006   a RemoteUserMiddleware reads a header ferryman does not vouch for
ferryman.W007   ProxyRemoteUserMiddleware without RemoteUserBackend, or before AuthenticationMiddleware
ferryman.W008   the django.contrib.sites Site of SITE_ID does not name the public host
ferryman.W009   FERRYMAN_PUBLIC_URLS is empty: the checks above cannot compare anything
=============== =====================================================================================
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.http.request import validate_host
from django.utils.module_loading import import_string

from ferryman.django.conf import PublicURL, build_proxy_headers, public_urls, setting

PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
OUR_MIDDLEWARE = "ferryman.django.middleware.ProxyRemoteUserMiddleware"
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
REMOTE_USER_BACKEND = "django.contrib.auth.backends.RemoteUserBackend"


def _urls(errors: list[CheckMessage]) -> list[PublicURL]:
    try:
        urls = public_urls()
    except ValueError as e:
        errors.append(Error(f"FERRYMAN_PUBLIC_URLS: {e}.", hint='Write full URLs such as '
                            '["https://www.example.com/webapps"].', id="ferryman.E002"))
        return []
    if not urls:
        errors.append(Warning(
            "FERRYMAN_PUBLIC_URLS is empty, so the settings cannot be compared with the URLs the app is "
            "reached at.", hint='Set FERRYMAN_PUBLIC_URLS = ["https://www.example.com/webapps"] (every '
            "public URL, prefix included).", id="ferryman.W009"))
    return urls


def _origin_trusted(origin: str, trusted: set[str]) -> bool:
    """`origin` is in CSRF_TRUSTED_ORIGINS, literally or by a ``scheme://*.domain`` entry (as Django matches)."""
    if origin in trusted:
        return True
    scheme, _, host = origin.partition("://")
    for entry in trusted:
        e_scheme, _, e_host = entry.partition("://")
        if e_scheme == scheme and e_host.startswith("*.") and host.endswith(e_host[1:]):
            return True
    return False


def _covers(cookie_path: str, prefix: str) -> bool:
    """A cookie with Path `cookie_path` is sent for every URL under `prefix` (RFC 6265 5.1.4)."""
    base = cookie_path.rstrip("/")
    return base == "" or prefix == base or prefix.startswith(base + "/")


@register()
def check_trust(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    trusted = setting("FERRYMAN_TRUSTED_PROXIES") or ()
    keys = setting("FERRYMAN_SIGNING_KEYS") or ()
    if not trusted and not keys:
        return [Error(
            "FERRYMAN_TRUSTED_PROXIES and FERRYMAN_SIGNING_KEYS are both empty: no request can be believed "
            "to come through ferryman, so the app would never see the client's address, host, scheme or user.",
            hint='Set FERRYMAN_TRUSTED_PROXIES = ["127.0.0.1"] (ferryman\'s address as the app server sees it) '
                 "or FERRYMAN_SIGNING_KEYS to the keys of ferryman's [signing] table.", id="ferryman.E001")]
    try:
        build_proxy_headers()
    except ImproperlyConfigured as e:
        return [Error(str(e), hint="Fix the FERRYMAN_* setting named in the message.", id="ferryman.E002")]
    return []


@register()
def check_public_urls(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    out: list[CheckMessage] = []
    urls = _urls(out)
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    trusted_origins = set(settings.CSRF_TRUSTED_ORIGINS)
    for u in urls:
        if not validate_host(u.hostname if ":" not in u.hostname else f"[{u.hostname}]", allowed):
            out.append(Error(
                f"The public host {u.hostname!r} of {u.url} is not in ALLOWED_HOSTS, so Django answers every "
                "request through ferryman with 400 (DisallowedHost).",
                hint=f"Add {u.hostname!r} to ALLOWED_HOSTS.", id="ferryman.E003"))
        if not _origin_trusted(u.origin, trusted_origins):
            out.append(Warning(
                f"The public origin {u.origin} is not in CSRF_TRUSTED_ORIGINS: a form POST is refused "
                "(403, CSRF origin check) whenever the request's host or scheme reach Django other than "
                "the browser sent them.",
                hint=f"Add {u.origin!r} to CSRF_TRUSTED_ORIGINS.", id="ferryman.W002"))
    if any(u.scheme == "https" for u in urls) and tuple(settings.SECURE_PROXY_SSL_HEADER or ()) != PROXY_SSL_HEADER:
        now = settings.SECURE_PROXY_SSL_HEADER
        out.append(Warning(
            f"ferryman terminates TLS for {next(u.url for u in urls if u.scheme == 'https')}, but "
            f"SECURE_PROXY_SSL_HEADER is {now!r}: request.is_secure() is False there unless the app is served "
            "through ferryman.django.wsgi/asgi, so redirects and build_absolute_uri() say http://.",
            hint=f"Set SECURE_PROXY_SSL_HEADER = {PROXY_SSL_HEADER!r} (safe behind ferryman: client copies "
                 "of X-Forwarded-Proto are removed).", id="ferryman.W001"))
    if urls and not settings.USE_X_FORWARDED_HOST:
        out.append(Warning(
            "USE_X_FORWARDED_HOST is off: unless the app is served through ferryman.django.wsgi/asgi, "
            "request.get_host() is the app server's address, not the public host "
            f"{urls[0].host!r}, and absolute URLs and redirects point inside.",
            hint="Set USE_X_FORWARDED_HOST = True (safe behind ferryman: client copies of X-Forwarded-Host "
                 "are removed).", id="ferryman.W003"))
    member_path = (setting("FERRYMAN_MEMBER_PATH") or setting("FERRYMAN_MOUNT") or "").rstrip("/")
    for name in ("SESSION_COOKIE_PATH", "CSRF_COOKIE_PATH"):
        path = getattr(settings, name, "/") or "/"
        for u in urls:
            # a Path under the member's path reaches the browser rewritten onto the public prefix
            rewritten = bool(member_path) and path.rstrip("/") == member_path
            if not (_covers(path, u.prefix) or rewritten):
                out.append(Warning(
                    f"{name} is {path!r}, so browsers do not send that cookie to {u.url} (public prefix "
                    f"{u.prefix or '/'!r}): logins and CSRF fail there.",
                    hint=f"Set {name} = \"/\", or to a prefix shared by every public URL, or to the member URL's "
                         "path with FERRYMAN_MEMBER_PATH set to it (ferryman then rewrites the cookie's Path).",
                    id="ferryman.W004"))
    force = settings.FORCE_SCRIPT_NAME
    prefixed = [u for u in urls if u.prefix]
    if force is not None and prefixed:
        wrong = [u.url for u in urls if u.prefix != force.rstrip("/")]
        out.append(Warning(
            f"FORCE_SCRIPT_NAME is {force!r} while ferryman sends the public prefix in X-Forwarded-Prefix: "
            f"Django ignores the header, so URLs it builds start {force!r} "
            + (f"even under {', '.join(wrong)}" if wrong else "whatever the route") +
            " (a double or wrong prefix).",
            hint="Remove FORCE_SCRIPT_NAME; ferryman.django.wsgi/asgi set SCRIPT_NAME from X-Forwarded-Prefix.",
            id="ferryman.W005"))
    out += _sites(urls)
    return out


def _sites(urls: list[PublicURL]) -> list[CheckMessage]:
    if not urls or not apps.is_installed("django.contrib.sites"):
        return []
    site_id = getattr(settings, "SITE_ID", None)
    if site_id is None:
        return []
    from django.contrib.sites.models import Site
    from django.db import DatabaseError

    try:
        site = Site.objects.filter(pk=site_id).first()
    except DatabaseError:  # not migrated yet (checks run before migrate): nothing to compare
        return []
    hosts = {u.host for u in urls} | {u.hostname for u in urls}
    if site is not None and site.domain in hosts:
        return []
    now = repr(site.domain) if site is not None else "missing"
    return [Warning(
        f"The Site of SITE_ID = {site_id!r} is {now}, not the public host {urls[0].host!r}: "
        "get_current_site() and the links it builds (password reset e-mails, sitemaps, the admin's "
        "'view on site') point elsewhere.",
        hint=f"Set that Site's domain to {urls[0].host!r} (admin > Sites, or "
             f"Site.objects.update_or_create(pk={site_id!r}, defaults={{'domain': {urls[0].host!r}, "
             f"'name': {urls[0].hostname!r}}})).", id="ferryman.W008")]


@register()
def check_remote_user(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    from django.contrib.auth.middleware import RemoteUserMiddleware

    out: list[CheckMessage] = []
    middleware = list(settings.MIDDLEWARE or ())
    for path in middleware:
        try:
            cls = import_string(path)
        except ImportError:
            continue
        if not (isinstance(cls, type) and issubclass(cls, RemoteUserMiddleware)):
            continue
        if path == OUR_MIDDLEWARE or getattr(cls, "_ferryman_checked", False):
            continue
        header = getattr(cls, "header", "REMOTE_USER")
        if header == "REMOTE_USER":
            why = ("reads REMOTE_USER, which only ferryman.django.wsgi/asgi set: the user is honoured without "
                   "checking the request came through ferryman when the app is served any other way")
        elif header == "HTTP_REMOTE_USER":
            why = ("reads HTTP_REMOTE_USER, a header any client can send straight to the app server: "
                   "anyone who reaches it can log in as anybody")
        else:
            why = (f"reads {header}, a header ferryman never sends (it sends Remote-User and removes every "
                   "other identity header from clients): nobody is ever logged in")
        out.append(Warning(f"{path} {why}.", hint=f"Replace it with {OUR_MIDDLEWARE!r}, which honours "
                           "Remote-User only from a trusted proxy or with a valid signature.", id="ferryman.W006"))
    if OUR_MIDDLEWARE in middleware:
        backends = list(getattr(settings, "AUTHENTICATION_BACKENDS", ()))
        if not any(_is_remote_backend(b) for b in backends):
            out.append(Warning(
                f"{OUR_MIDDLEWARE} is installed but no RemoteUserBackend is in AUTHENTICATION_BACKENDS: "
                "the user ferryman authenticated is never logged in.",
                hint=f"Add {REMOTE_USER_BACKEND!r} to AUTHENTICATION_BACKENDS.", id="ferryman.W007"))
        if AUTH_MIDDLEWARE not in middleware or middleware.index(AUTH_MIDDLEWARE) > middleware.index(OUR_MIDDLEWARE):
            out.append(Warning(
                f"{OUR_MIDDLEWARE} must come after {AUTH_MIDDLEWARE} in MIDDLEWARE.",
                hint=f"Put {OUR_MIDDLEWARE!r} right after {AUTH_MIDDLEWARE!r}.", id="ferryman.W007"))
    return out


def _is_remote_backend(path: str) -> bool:
    from django.contrib.auth.backends import RemoteUserBackend

    try:
        cls = import_string(path)
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, RemoteUserBackend)
