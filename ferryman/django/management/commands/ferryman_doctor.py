"""``manage.py ferryman_doctor URL``: ask the app, through ferryman, what it saw; compare with the URL.

It requests ``<URL>/<path of the diagnostic view>`` through the real chain (client -> ferryman ->
app server), prints what the app saw (client address, host, scheme, port, script name, user,
absolute URI, the member that served it) beside what the URL implies, explains each difference,
and exits 1 when there is one (2 when the diagnostic view could not be asked at all).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import NoReverseMatch, get_script_prefix, reverse

from ferryman.django.conf import PublicURL

_FIXES = {
    "host": "Django did not get the public host: serve the app with ferryman.django.wsgi/asgi (see "
            "docs/django.md), or set USE_X_FORWARDED_HOST = True.",
    "scheme": "Django did not see the public scheme: serve the app with ferryman.django.wsgi/asgi, or set "
              "SECURE_PROXY_SSL_HEADER = ('HTTP_X_FORWARDED_PROTO', 'https').",
    "is_secure": "request.is_secure() is wrong: see scheme.",
    "port": "Django did not see the public port: serve the app with ferryman.django.wsgi/asgi, or set "
            "USE_X_FORWARDED_PORT = True.",
    "script_name": "URLs Django builds do not start with the public prefix: serve the app with "
                   "ferryman.django.wsgi/asgi (they apply X-Forwarded-Prefix), and remove FORCE_SCRIPT_NAME.",
    "client": "REMOTE_ADDR is not the client: serve the app with ferryman.django.wsgi/asgi and list every proxy "
              "in front of the app in FERRYMAN_TRUSTED_PROXIES (or use FERRYMAN_SIGNING_KEYS).",
    "user": "The user ferryman authenticated was not logged in: add "
            "ferryman.django.middleware.ProxyRemoteUserMiddleware after AuthenticationMiddleware and "
            "RemoteUserBackend to AUTHENTICATION_BACKENDS.",
    "absolute_uri": "build_absolute_uri() is not the public URL: see host, scheme and script_name.",
}


class _Connection(http.client.HTTPSConnection):
    """HTTPS to an address of our choice, with the URL's host as SNI and certificate name."""

    def __init__(self, address: tuple[str, int], server_hostname: str, context: ssl.SSLContext,
                 timeout: float) -> None:
        super().__init__(address[0], address[1], context=context, timeout=timeout)
        self._sni = server_hostname
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self._sni)


class Command(BaseCommand):
    help = "Request a public URL through ferryman and compare what the app saw with what it should see."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="a public URL of the app, e.g. https://www.example.com/webapps")
        parser.add_argument("--connect", metavar="HOST:PORT",
                            help="connect here instead of the URL's host (like curl --connect-to)")
        parser.add_argument("--user", help="user for ferryman's Basic authentication (then expected in Django)")
        parser.add_argument("--password", default="", help="password for --user")
        parser.add_argument("--cafile", help="CA certificates (PEM) to verify ferryman's certificate")
        parser.add_argument("--insecure", action="store_true", help="do not verify ferryman's certificate")
        parser.add_argument("--client", help="the address ferryman should see for this machine "
                                             "(default: this connection's local address)")
        parser.add_argument("--timeout", type=float, default=15.0)

    def handle(self, *args: Any, **opts: Any) -> None:
        url = opts["url"].rstrip("/")
        try:
            public = PublicURL(url)
        except ValueError as e:
            raise CommandError(str(e), returncode=2) from None
        try:
            view = reverse("ferryman-diagnose")
        except NoReverseMatch:
            raise CommandError('the diagnostic view is not in the URLconf; add path("ferryman/", '
                               'include("ferryman.django.urls")) to urlpatterns', returncode=2) from None
        here = get_script_prefix()
        target = public.prefix + "/" + view[len(here):] if view.startswith(here) else public.prefix + view
        status, body, local = self._get(public, target, opts)
        if status != 200:
            hint = {404: "the app did not believe the request came through ferryman (check "
                         "FERRYMAN_TRUSTED_PROXIES against ferryman's address, or FERRYMAN_SIGNING_KEYS "
                         "against ferryman's [signing] keys and both clocks), or the URL does not reach this "
                         "app", 400: "Django refused the host (ALLOWED_HOSTS; see manage.py check)",
                    401: "ferryman wants credentials: pass --user and --password",
                    403: "refused (CSRF or permissions)"}.get(status, "unexpected answer")
            if status == 404:
                hint += self._trust_note()
            self.stderr.write(f"GET {public.origin}{target} answered {status}: {hint}\n{body[:500]!r}")
            raise CommandError(f"the diagnostic view answered {status}", returncode=2)
        try:
            saw = json.loads(body)
        except ValueError:
            raise CommandError(f"the diagnostic view answered 200 but not JSON: {body[:200]!r}",
                               returncode=2) from None
        expected = {
            "client": opts["client"] or local,
            "host": public.host,
            "scheme": public.scheme,
            "is_secure": public.scheme == "https",
            "port": str(public.port),
            "script_name": public.prefix,
            "user": opts["user"],
            "absolute_uri": public.origin + public.prefix + "/",
        }
        width = max(len(k) for k in expected)
        self.stdout.write(f"{url} served by member {saw.get('member')} (mode {saw.get('mode')})")
        self.stdout.write(f"{'':{width}}  {'the app saw':40}  should be")
        bad = []
        for key, want in expected.items():
            got = saw.get(key)
            ok = str(got) == str(want) if key != "is_secure" else got == want
            mark = "ok" if ok else "MISMATCH"
            self.stdout.write(f"{key:{width}}  {str(got):40}  {str(want):40} {mark}")
            if not ok:
                bad.append(key)
        if bad:
            self.stdout.write("")
            force = getattr(settings, "FORCE_SCRIPT_NAME", None)
            for key in bad:
                fix = _FIXES[key]
                if key == "script_name" and force is not None:
                    fix = (f"FORCE_SCRIPT_NAME = {force!r} overrides the public prefix: remove it; "
                           "ferryman.django.wsgi/asgi apply X-Forwarded-Prefix.")
                self.stdout.write(f"{key}: {fix}")
            raise CommandError(f"{len(bad)} mismatch(es): {', '.join(bad)}", returncode=1)
        self.stdout.write("all as the public URL implies")

    def _trust_note(self) -> str:
        from ferryman.core.signing import key_id
        from ferryman.django.conf import proxy_headers

        proxy = proxy_headers()
        note = []
        if proxy.keys:
            note.append("this app accepts signing keys " + ", ".join(key_id(k) for k in proxy.keys)
                        + " (`ferryman check` prints the one ferryman signs with)")
        if proxy.trusted:
            note.append("this app trusts " + ", ".join(str(n) for n in proxy.trusted.networks))
        return ("; " + "; ".join(note)) if note else ""

    def _get(self, public: PublicURL, target: str, opts: dict[str, Any]) -> tuple[int, str, str]:
        address = (public.hostname, public.port)
        if opts["connect"]:
            host, _, port = opts["connect"].rpartition(":")
            address = (host.strip("[]"), int(port))
        headers = {"Host": public.host, "Accept": "application/json", "Connection": "close"}
        if opts["user"]:
            token = base64.b64encode(f"{opts['user']}:{opts['password']}".encode()).decode()
            headers["Authorization"] = "Basic " + token
        conn: http.client.HTTPConnection
        if public.scheme == "https":
            ctx = ssl.create_default_context(cafile=opts["cafile"])
            if opts["insecure"]:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            conn = _Connection(address, public.hostname, ctx, opts["timeout"])
        else:
            conn = http.client.HTTPConnection(address[0], address[1], timeout=opts["timeout"])
        try:
            conn.request("GET", target, headers=headers)
            local = conn.sock.getsockname()[0] if conn.sock is not None else ""
            resp = conn.getresponse()
            body = resp.read(1 << 20).decode("utf-8", "replace")
            return resp.status, body, local
        except (OSError, http.client.HTTPException) as e:
            raise CommandError(f"cannot reach {address[0]}:{address[1]}: {e}", returncode=2) from None
        finally:
            conn.close()
