"""pytest plugin: run the app under test behind a real ferryman, and talk to it as a browser would.

Installed with ferryman (entry point ``pytest11``: ``ferryman = ferryman.testing``), it gives the
fixture ``ferryman_chain``, a factory::

    def test_redirects_stay_public(ferryman_chain):
        chain = ferryman_chain("mysite.wsgi:application", routes=["/webapps"], mount="/webapps",
                               env={"DJANGO_SETTINGS_MODULE": "mysite.settings"})
        client = chain.client("https")
        r = client.get("/webapps/accounts/login/?next=/webapps/")
        assert r.status == 200
        r = client.get("/webapps/private/")
        assert chain.is_public(r.headers["location"])

What runs: gunicorn serving the WSGI app on 127.0.0.1 (mounted at ``mount``: gunicorn gets
``SCRIPT_NAME``), and ``ferryman run`` in front of it with an HTTP and an HTTPS listener (a
certificate for ``public_host`` from a throw-away CA made with trustme), one route per prefix,
Basic authentication where asked (``users``), and forwarded headers signed with a fresh key. The app
server's environment says how to trust it: ``FERRYMAN_SIGNING_KEY`` (the key; a Django project
sets ``FERRYMAN_SIGNING_KEYS = ["env:FERRYMAN_SIGNING_KEY"]``) or, with ``signing=False``,
``FERRYMAN_TRUSTED_PROXIES=127.0.0.1``; ``FERRYMAN_PUBLIC_URLS`` lists the public URLs (comma
separated), ready for ``FERRYMAN_PUBLIC_URLS``/``ALLOWED_HOSTS``/``CSRF_TRUSTED_ORIGINS``.

The client sends the public ``Host``, uses SNI and verifies the certificate against the CA, keeps
cookies per host like a browser, and adds ``Origin`` to unsafe requests, so a project's tests see
redirects to an internal host, a wrong ``build_absolute_uri()`` or a CSRF origin failure before
production does.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

__all__ = ["Chain", "PublicClient", "Response", "Route", "ferryman_chain"]

_LISTENING = re.compile(r"listening on (https?)://(\[[^\]]+\]|[^\s:]+):(\d+) \(listener ([^)]+)\)")


def _wait(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `pred` until truthy, against a deadline (an Event nobody sets paces the polls)."""
    deadline = time.monotonic() + timeout
    pace = threading.Event()
    while True:
        result = pred()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout}s")
        pace.wait(0.02)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Route:
    """A public prefix on ferryman. ``listener``: "http", "https" or None for both; ``auth``: Basic
    authentication against the chain's ``users``."""

    path: str
    listener: str | None = None
    auth: bool = False


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    header_list: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class PublicClient:
    """A browser-like client of one ferryman listener: public Host, SNI, cookies, Origin on POST."""

    def __init__(self, chain: Chain, listener: str, source: str | None = None, timeout: float = 30) -> None:
        self.chain = chain
        self.listener = listener
        self.source = source
        self.timeout = timeout
        self.cookies: dict[str, str] = {}
        self.auth: tuple[str, str] | None = None

    @property
    def origin(self) -> str:
        return self.chain.origin(self.listener)

    def _connection(self) -> http.client.HTTPConnection:
        port = self.chain.ports[self.listener]
        source = (self.source, 0) if self.source else None
        if self.listener == "https":
            ctx = ssl.create_default_context(cafile=str(self.chain.ca_file))
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=self.timeout, context=ctx,
                                               source_address=source)
            sni = self.chain.public_host

            def connect() -> None:
                raw = socket.create_connection(("127.0.0.1", port), self.timeout, source)
                conn.sock = ctx.wrap_socket(raw, server_hostname=sni)
            conn.connect = connect  # type: ignore[method-assign]
            return conn
        return http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout, source_address=source)

    def request(self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None,
                auth: tuple[str, str] | None = None) -> Response:
        """One request on a fresh connection; cookies it sets are kept for the next."""
        hdrs = {"Host": self.chain.authority(self.listener), "Connection": "close"}
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
            hdrs["Origin"] = self.origin
            hdrs["Referer"] = self.origin + path
        user = auth or self.auth
        if user is not None:
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        if headers:
            hdrs.update(headers)
        conn = self._connection()
        try:
            conn.request(method, path, body=body or None, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            pairs = [(k.lower(), v) for k, v in resp.getheaders()]
        finally:
            conn.close()
        for name, value in pairs:
            if name == "set-cookie":
                cookie: SimpleCookie = SimpleCookie()
                cookie.load(value)
                for key, morsel in cookie.items():
                    if morsel["max-age"] == "0" or (morsel["expires"] and "1970" in morsel["expires"]):
                        self.cookies.pop(key, None)
                    else:
                        self.cookies[key] = morsel.value
        return Response(resp.status, dict(pairs), pairs, data)

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, data: Mapping[str, str] | None = None, **kw: Any) -> Response:
        headers = dict(kw.pop("headers", None) or {})
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return self.request("POST", path, body=urlencode(data or {}).encode(), headers=headers, **kw)


@dataclass
class Chain:
    """A running app server behind a running ferryman; see the module's documentation."""

    public_host: str
    ca_file: Path
    ports: dict[str, int]
    app_port: int
    routes: list[Route]
    directory: Path
    signing_key: str | None
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _logs: dict[str, Path] = field(default_factory=dict)

    def authority(self, listener: str) -> str:
        return f"{self.public_host}:{self.ports[listener]}"

    def origin(self, listener: str) -> str:
        return f"{listener}://{self.authority(listener)}"

    def url(self, listener: str, path: str = "") -> str:
        return self.origin(listener) + path

    def public_urls(self) -> list[str]:
        return [self.url(name, r.path) for r in self.routes for name in ("http", "https")
                if r.listener in (None, name)]

    def client(self, listener: str = "https", source: str | None = None) -> PublicClient:
        return PublicClient(self, listener, source)

    def is_public(self, url: str) -> bool:
        """Whether a URL (a Location, a link) stays on the public side: same-origin paths under a
        route, or absolute URLs on one of ferryman's public origins."""
        parts = urlsplit(url)
        if parts.scheme or parts.netloc:
            if f"{parts.scheme}://{parts.netloc}" not in {self.origin(n) for n in self.ports}:
                return False
        path = parts.path or "/"
        return any(path == r.path or path.startswith(r.path.rstrip("/") + "/") for r in self.routes)

    def direct(self, method: str, path: str, headers: Mapping[str, str] | None = None,
               source: str | None = None) -> Response:
        """A request straight to the app server, bypassing ferryman (for spoofing tests)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.app_port, timeout=30,
                                          source_address=(source, 0) if source else None)
        try:
            conn.request(method, path, headers=dict(headers or {}))
            resp = conn.getresponse()
            pairs = [(k.lower(), v) for k, v in resp.getheaders()]
            return Response(resp.status, dict(pairs), pairs, resp.read())
        finally:
            conn.close()

    def log(self, name: str) -> str:
        """The output of "ferryman" or "app" so far."""
        try:
            return self._logs[name].read_text(errors="replace")
        except (KeyError, OSError):
            return ""

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def _toml(value: str) -> str:
    return json.dumps(value)


def _ferryman_toml(chain: Chain, mount: str, realm: str, signing: bool, health: str | None) -> str:
    out = []
    if signing:
        out += ["[signing]", 'keys = [{ env = "FERRYMAN_SIGNING_KEY" }]', ""]
    out += ['[[listener]]', 'name = "http"', 'bind = "127.0.0.1:0"', "",
            '[[listener]]', 'name = "https"', 'bind = "127.0.0.1:0"',
            'tls = { cert = "cert.pem", key = "key.pem" }', "",
            "[pool.app]", f'members = [{{ url = {_toml(f"http://127.0.0.1:{chain.app_port}{mount}")} }}]']
    if health:
        out.append(f"health = {{ path = {_toml(health)}, host = {_toml(chain.public_host)}, interval = \"1s\" }}")
    out.append("")
    for r in chain.routes:
        out += ["[[route]]", f"path = {_toml(r.path)}", 'pool = "app"']
        if r.listener:
            out.append(f"listener = {_toml(r.listener)}")
        if r.auth:
            out.append(f'auth = {{ htpasswd = "users.htpasswd", realm = {_toml(realm)} }}')
        out.append("")
    return "\n".join(out)


def start_chain(app: str, *, routes: Iterable[str | Route] = ("/",), mount: str = "",
                public_host: str = "www.example.test", env: Mapping[str, str] | None = None,
                users: Mapping[str, str] | None = None, signing: bool = True, cwd: str | Path | None = None,
                gunicorn_args: Iterable[str] = (), health: str | None = None, realm: str = "ferryman",
                ready_path: str | None = None, timeout: float = 60, server: str = "gunicorn") -> Chain:
    """Start gunicorn serving `app` ("module:attribute") and ferryman in front of it; return the chain.

    Args:
        routes: public prefixes (strings) or :class:`Route` objects.
        mount: the path the app is served under on the app server (the member URL's path).
        env: extra environment of the app server (DJANGO_SETTINGS_MODULE...).
        users: {user: password} for routes with ``auth``.
        signing: sign forwarded facts with a fresh key; otherwise trust 127.0.0.1.
        health: an app path for ferryman's active health check (sent with the public host).
        ready_path: an app-server path that answers once the app is loaded (default: any answer).
        server: "gunicorn" (a WSGI app; gunicorn gets SCRIPT_NAME = mount) or "uvicorn" (an ASGI app;
            the app server gets FERRYMAN_MOUNT = mount, for ``ferryman.asgi``'s ``mount``).
    """
    import bcrypt
    import trustme

    work = Path(tempfile.mkdtemp(prefix="ferryman-chain-"))
    ca = trustme.CA()
    cert = ca.issue_cert(public_host)
    cert.cert_chain_pems[0].write_to_path(str(work / "cert.pem"))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(work / "cert.pem"), append=True)
    cert.private_key_pem.write_to_path(str(work / "key.pem"))
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}" for u, p in (users or {}).items()]
    (work / "users.htpasswd").write_text("\n".join(lines) + "\n")
    route_list = [r if isinstance(r, Route) else Route(r) for r in routes]
    key = secrets.token_urlsafe(32) if signing else None
    last_error = ""
    for _attempt in range(3):  # the app server's port is chosen before it binds: retry on a lost race
        chain = Chain(public_host, work / "ca.pem", {}, _free_port(), route_list, work, key)
        try:
            _start(chain, app, mount, env or {}, signing, cwd, list(gunicorn_args), health, realm,
                   ready_path, timeout, server)
            return chain
        except _PortTaken as e:
            last_error = str(e)
            chain.stop()
    raise RuntimeError(f"could not start the chain: {last_error}")


class _PortTaken(RuntimeError):
    pass


def _start(chain: Chain, app: str, mount: str, env: Mapping[str, str], signing: bool, cwd: str | Path | None,
           gunicorn_args: list[str], health: str | None, realm: str, ready_path: str | None,
           timeout: float, kind: str) -> None:
    work = chain.directory
    (work / "ferryman.toml").write_text(_ferryman_toml(chain, mount, realm, signing, health))
    base_env = dict(os.environ)
    pythonpath = [str(Path(__file__).resolve().parent.parent)]
    if cwd is not None:
        pythonpath.insert(0, str(cwd))
    base_env["PYTHONPATH"] = os.pathsep.join(pythonpath + [base_env.get("PYTHONPATH", "")])
    if chain.signing_key:
        base_env["FERRYMAN_SIGNING_KEY"] = chain.signing_key
    base_env.pop("FERRYMAN_TRUSTED_PROXIES", None)
    flog = work / "ferryman.log"
    chain._logs["ferryman"] = flog
    with open(flog, "ab") as out:
        proxy = subprocess.Popen([sys.executable, "-m", "ferryman", "run", "-c", str(work / "ferryman.toml")],
                                 cwd=work, env=base_env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 start_new_session=True)
    chain._procs.append(proxy)

    def listening() -> bool:
        if proxy.poll() is not None:
            raise RuntimeError(f"ferryman exited with {proxy.returncode}:\n{chain.log('ferryman')[-3000:]}")
        for m in _LISTENING.finditer(chain.log("ferryman")):
            chain.ports[m.group(4)] = int(m.group(3))
        return {"http", "https"} <= chain.ports.keys()
    _wait(listening, timeout, "ferryman did not listen")

    app_env = dict(base_env)
    app_env.update(env)
    app_env["FERRYMAN_PUBLIC_URLS"] = ",".join(chain.public_urls())
    if not signing:
        app_env["FERRYMAN_TRUSTED_PROXIES"] = "127.0.0.1"
    if mount:
        app_env["SCRIPT_NAME" if kind == "gunicorn" else "FERRYMAN_MOUNT"] = mount
    if kind == "gunicorn":
        argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{chain.app_port}", "--workers", "1",
                "--threads", "4", "--worker-class", "gthread", "--graceful-timeout", "2",
                "--forwarded-allow-ips", "", *gunicorn_args, app]
    elif kind == "uvicorn":  # its own proxy-header handling off: ferryman.asgi decides
        argv = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(chain.app_port),
                "--no-proxy-headers", "--log-level", "warning", *gunicorn_args, app]
    else:
        raise ValueError(f"server {kind!r}: use \"gunicorn\" or \"uvicorn\"")
    alog = work / "app.log"
    chain._logs["app"] = alog
    with open(alog, "ab") as out:
        server = subprocess.Popen(
            argv,
            cwd=str(cwd) if cwd is not None else work, env=app_env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=out, start_new_session=True)
    chain._procs.append(server)

    def answering() -> bool:
        if server.poll() is not None:
            text = chain.log("app")
            if "Address already in use" in text or "address already in use" in text:
                raise _PortTaken(text[-500:])
            raise RuntimeError(f"gunicorn exited with {server.returncode}:\n{text[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", chain.app_port, timeout=5)
            conn.request("GET", ready_path or (mount or "") + "/", headers={"Host": "127.0.0.1"})
            status = conn.getresponse().status
            conn.close()
        except OSError:
            return False
        return status < 500 if ready_path is None else status == 200
    _wait(answering, timeout, "the app server did not answer")


@pytest.fixture
def ferryman_chain() -> Iterator[Callable[..., Chain]]:
    """A factory: ``ferryman_chain(app, routes=..., mount=..., env=..., users=...)`` -> :class:`Chain`.
    Everything it started is stopped after the test."""
    chains: list[Chain] = []

    def factory(app: str, **kw: Any) -> Chain:
        chain = start_chain(app, **kw)
        chains.append(chain)
        return chain

    yield factory
    for chain in chains:
        chain.stop()
