"""The demo's layout (ports, routes, names) and the ferryman.toml it runs: the classic Apache deployment
(two Django app servers, each on a plain and a TLS port, behind one HTTP and one HTTPS site).

Pure: the same inputs give the same configuration text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AppServer:
    """One app server: the same Django project on a plain and a TLS port."""

    name: str          # "app-1"
    http_port: int
    https_port: int

    @property
    def number(self) -> str:
        return self.name.rsplit("-", 1)[-1]

    @property
    def http_route(self) -> str:
        return f"http-{self.number}"

    @property
    def https_route(self) -> str:
        return f"https-{self.number}"


@dataclass(frozen=True)
class Topology:
    host: str                  # where the front end listens
    http_port: int
    https_port: int
    apps: tuple[AppServer, ...]
    realm: str = "ferryman demo"

    def public(self, scheme: str) -> str:
        """The front end's base URL for `scheme`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"{scheme}://{host}:{self.http_port if scheme == 'http' else self.https_port}"


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ferryman_toml(t: Topology) -> str:
    """ferryman.toml of the demo; file names are relative to the state directory that holds it."""
    # As in the classic deployment: the second plain member takes twice the share of new sessions
    # (Apache loadfactor=2).
    http_members = ",\n".join(f'  {{ url = "http://127.0.0.1:{a.http_port}/webapps", route = "{a.http_route}"'
                              + (", weight = 2" if i == 1 else "") + " }"
                              for i, a in enumerate(t.apps))
    https_members = ",\n".join(f'  {{ url = "https://127.0.0.1:{a.https_port}/webapps", route = "{a.https_route}" }}'
                               for a in t.apps)
    return f"""\
# Written by `ferryman demo` at every start: the classic Apache mod_proxy_balancer deployment.

[[listener]]                      # Apache: Listen + <VirtualHost *:80>
name = "http"
bind = "{_bind(t.host, t.http_port)}"

[[listener]]                      # Apache: <VirtualHost *:443> with SSLEngine on
name = "https"
bind = "{_bind(t.host, t.https_port)}"
tls = {{ cert = "certs/front.pem", key = "certs/front-key.pem" }}

[pool.django-http]                # Apache: <Proxy balancer://django-http>
lbmethod = "byrequests"
sticky = "sessionid"              # Apache stickysession=sessionid
retry = "60s"
route_cookie = {{}}                # Django's sessionid carries no route: ferryman sets its own cookie
members = [
{http_members},
]

[pool.django-https]               # members on TLS, verified against the demo's CA
sticky = "sessionid"
tls = {{ ca = "certs/ca.pem" }}     # Apache: SSLProxyEngine on + SSLProxyCACertificateFile
route_cookie = {{}}
members = [
{https_members},
]

[[route]]                         # Apache: <Location /webapps> ProxyPass balancer://django-http
listener = "http"
path = "/webapps"
pool = "django-http"

[[route]]                         # the same app over HTTPS, behind Basic auth (Apache: AuthUserFile)
listener = "https"
path = "/webapps"
pool = "django-https"
auth = {{ htpasswd = "users.htpasswd", realm = "{t.realm}" }}

[[route]]                         # the same pool under another public prefix, Django's own login
path = "/public"
pool = "django-http"

[[route]]                         # the shared MEDIA_ROOT, served by ferryman itself (Apache: Alias /media + <Directory>)
path = "/media"
static = "media"
"""
