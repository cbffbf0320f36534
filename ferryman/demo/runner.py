"""`ferryman demo`: start everything, say what is up, stop everything on Ctrl-C or SIGTERM.

Order: check the project and the state directory, bind every port (all or nothing), make the
certificates, users and database, start the app servers and wait until each answers, then the front
end, and only when every public URL answers print them. Any failure on the way stops what was
started and says which part failed and where its log is.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ferryman.demo import certs as certificates
from ferryman.demo.ports import PortError, Reserved, reserve
from ferryman.demo.postgres import DatabaseError, LocalPostgres, check_url
from ferryman.demo.procs import Child, signals_deferred
from ferryman.demo.topology import AppServer, Topology, ferryman_toml

#: Files the project cannot run without; a missing one is named before anything starts.
PROJECT_FILES = ("manage.py", "demo_site/settings.py", "demo_site/urls.py", "demo_site/wsgi.py",
                 "showcase/views.py", "showcase/management/commands/demo_setup.py",
                 "showcase/templates/showcase/index.html")
#: The health view of ferryman.django, below the member URL path (also what the pools could probe).
HEALTH = "/webapps/ferryman/health/"
USER = "demo"
#: Where this ferryman is imported from: the children run the same code as the demo.
FERRYMAN_HOME = Path(__file__).resolve().parent.parent.parent
READY_TIMEOUT = 90.0


class DemoError(Exception):
    """A reason not to start (or to stop); the message is for the user, printed as is."""


class Stop(BaseException):
    """SIGTERM or SIGINT arrived."""


def _ports(text: str, option: str) -> list[int]:
    try:
        ports = [int(x) for x in text.split(",")]
    except ValueError:
        raise DemoError(f"{option} {text!r}: write two port numbers, such as 9001,9002") from None
    if len(ports) != 2 or not all(0 <= p <= 65535 for p in ports):
        raise DemoError(f"{option} {text!r}: write two port numbers 0-65535, such as 9001,9002")
    return ports


def say(line: str) -> None:
    print(line, flush=True)


class Demo:
    """The running demo: everything it started, stopped in reverse order by `stop()`."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state = Path(args.state_dir).expanduser().absolute()
        self.project = Path(args.project).expanduser().absolute()
        self.children: list[Child] = []
        self.postgres: LocalPostgres | None = None
        self.reserved: list[Reserved] = []
        self.started = time.monotonic()

    # -- checks before anything starts -------------------------------------------------------------

    def check_project(self) -> None:
        if not self.project.is_dir():
            raise DemoError(f"the Django project {self.project} is not a directory")
        for name in PROJECT_FILES:
            if not (self.project / name).is_file():
                raise DemoError(f"the Django project is incomplete: {self.project / name} is missing "
                                f"(reinstall ferryman, or copy the bundled project again)")
        for module in ("django", "gunicorn"):
            try:
                __import__(module)
            except ImportError:
                raise DemoError(f"ferryman demo needs {module}: python3 -m pip install 'ferryman[demo]'") from None

    def prepare_state(self) -> None:
        if self.state.exists() and not self.state.is_dir():
            raise DemoError(f"the state directory {self.state} is not a directory; remove it or give --state-dir")
        try:
            for sub in ("", "certs", "logs", "media", "run"):
                (self.state / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DemoError(f"cannot create the state directory {self.state}: {e.strerror} "
                            f"({e.filename}); give another with --state-dir") from None
        if not os.access(self.state, os.W_OK | os.X_OK):
            raise DemoError(f"the state directory {self.state} is not writable; give another with --state-dir")

    def _secret(self, name: str, make: Callable[[], str]) -> str:
        path = self.state / name
        try:
            if path.exists():
                value = path.read_text().strip()
                if value:
                    return value
                raise DemoError(f"{path} is empty; delete it to make a new one")
            value = make()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
            return value
        except (OSError, UnicodeDecodeError) as e:
            raise DemoError(f"cannot use {path}: {e}; delete it to make a new one") from None

    # -- start -------------------------------------------------------------------------------------

    def start(self) -> None:
        a = self.args
        self.check_project()
        self.prepare_state()
        app_http = _ports(a.app_http_ports, "--app-http-ports")
        app_https = _ports(a.app_https_ports, "--app-https-ports")
        one, two = "PORT (0: any free port)", "P1,P2 (0,0: any free ports)"
        wanted = [("front end HTTP", f"--http-port {one}", a.host, a.http_port),
                  ("front end HTTPS", f"--https-port {one}", a.host, a.https_port)]
        for i in range(2):
            wanted.append((f"app-{i + 1} HTTP", f"--app-http-ports {two}", "127.0.0.1", app_http[i]))
            wanted.append((f"app-{i + 1} HTTPS", f"--app-https-ports {two}", "127.0.0.1", app_https[i]))
        if a.postgres:
            wanted.append(("PostgreSQL", f"--postgres-port {one}", "127.0.0.1", a.postgres_port))
        try:
            self.reserved = reserve(wanted)
        except PortError as e:
            raise DemoError("nothing was started:\n" + "\n".join(f"  {p}" for p in e.problems)) from None
        ports = {r.what: r for r in self.reserved}
        apps = tuple(AppServer(f"app-{i + 1}", ports[f"app-{i + 1} HTTP"].port, ports[f"app-{i + 1} HTTPS"].port)
                     for i in range(2))
        self.topology = Topology(a.host, ports["front end HTTP"].port, ports["front end HTTPS"].port, apps)

        say(f"ferryman demo: state directory {self.state}")
        try:
            made_certs = certificates.ensure(self.state / "certs",
                                             (a.host,) if a.host not in ("0.0.0.0", "::") else ())
        except certificates.CertificateError as e:
            raise DemoError(str(e)) from None
        self.certs, made = made_certs
        say(f"  certificates: {'made a local CA' if made else 'the local CA'} {self.certs.ca}")
        self.password = self._secret("demo-password", lambda: secrets.token_urlsafe(9))
        secret_key = self._secret("secret-key", lambda: secrets.token_urlsafe(50))
        self._write_htpasswd()

        database = self._database(ports.get("PostgreSQL"))
        self.env = dict(os.environ, FERRYMAN_DEMO_STATE=str(self.state), FERRYMAN_DEMO_SECRET_KEY=secret_key,
                        FERRYMAN_DEMO_DATABASE=database or "", FERRYMAN_DEMO_USER=USER,
                        FERRYMAN_DEMO_PASSWORD=self.password, DJANGO_SETTINGS_MODULE="demo_site.settings",
                        PYTHONPATH=os.pathsep.join([str(self.project), str(FERRYMAN_HOME)] + (
                            [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
        hosts = {"127.0.0.1", "localhost", "[::1]", self.topology.public("http").split("//")[1].rsplit(":", 1)[0]}
        if a.host not in ("0.0.0.0", "::"):
            hosts.add(f"[{a.host}]" if ":" in a.host else a.host)
        else:
            hosts.add("*")
        self.env["FERRYMAN_DEMO_ALLOWED_HOSTS"] = ",".join(sorted(hosts))
        self.env["FERRYMAN_DEMO_PUBLIC_URLS"] = ",".join(u.rstrip("/") for u in self.urls())
        self._setup_database(database)
        self._start_apps(ports)
        self._start_front_end(ports)
        self._write_run_file()

    def _write_htpasswd(self) -> None:
        import bcrypt

        hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=10)).decode()
        (self.state / "users.htpasswd").write_text(f"{USER}:{hashed}\n")

    def _database(self, pg_port: Reserved | None) -> str | None:
        a = self.args
        if a.database:
            say("  database: checking " + a.database.rpartition("@")[2])
            try:
                check_url(a.database)
            except DatabaseError as e:
                raise DemoError(str(e)) from None
            return str(a.database)
        if a.postgres:
            assert pg_port is not None
            port = pg_port.port
            say(f"  database: starting PostgreSQL in {self.state / 'postgres'} on 127.0.0.1:{port}")
            try:
                pg = LocalPostgres(self.state / "postgres", port, self.state / "logs" / "postgres.log")
                pg_port.close()
                self.postgres = pg
                pg.start()
            except DatabaseError as e:
                raise DemoError(str(e)) from None
            if pg.directory != self.state / "postgres":
                say(f"  database: the user {pg.user.pw_name if pg.user else '?'} cannot reach {self.state}, "
                    f"so the cluster is in {pg.directory}")
            say(f"  database: PostgreSQL ready ({pg.url})")
            return pg.url
        return None

    def _setup_database(self, database: str | None) -> None:
        what = "PostgreSQL" if database else f"SQLite {self.state / 'db.sqlite3'}"
        say(f"  database: migrating {what}, making user {USER!r} (staff)")
        log = self.state / "logs" / "setup.log"
        with open(log, "ab") as out:
            done = subprocess.run([sys.executable, str(self.project / "manage.py"), "demo_setup"],
                                  env=self.env, cwd=self.project, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            tail = "\n".join("    " + line for line in log.read_text(errors="replace").splitlines()[-15:])
            raise DemoError(f"setting up the database with the project {self.project} failed "
                            f"(exit status {done.returncode}); the end of {log}:\n{tail}")

    def _gunicorn(self, app: AppServer, scheme: str, sock: Reserved) -> Child:
        argv = [sys.executable, "-m", "gunicorn", "--bind", f"fd://{sock.sock.fileno()}",
                "--chdir", str(self.project), "--worker-class", "gthread", "--workers", "1", "--threads", "8",
                "--forwarded-allow-ips", "127.0.0.1", "--graceful-timeout", "5", "--access-logfile", "-",
                "--name", f"ferryman-demo-{app.name}-{scheme}"]
        if _gunicorn_has("--no-control-socket"):
            argv.append("--no-control-socket")
        if scheme == "https":
            argv += ["--certfile", str(self.certs.app), "--keyfile", str(self.certs.app_key)]
        argv.append("demo_site.wsgi:application")
        env = dict(self.env, FERRYMAN_DEMO_SERVER=app.name, SCRIPT_NAME="/webapps",
                   FERRYMAN_DEMO_ROUTE=app.http_route if scheme == "http" else app.https_route)
        return Child(f"{app.name} ({scheme})", argv, self.state / "logs" / f"{app.name}-{scheme}.log",
                     env=env, cwd=self.project, pass_fds=[sock.sock.fileno()])

    def _start_apps(self, ports: dict[str, Reserved]) -> None:
        waits: list[tuple[Child, str, ssl.SSLContext | None]] = []
        for app in self.topology.apps:
            say(f"  starting app server {app.name}: gunicorn on http://127.0.0.1:{app.http_port} "
                f"and https://127.0.0.1:{app.https_port}")
            for scheme in ("http", "https"):
                sock = ports[f"{app.name} {scheme.upper()}"]
                with signals_deferred():
                    child = self._gunicorn(app, scheme, sock)
                    sock.close()  # gunicorn holds it now
                    self.children.append(child)
                port = app.http_port if scheme == "http" else app.https_port
                waits.append((child, f"{scheme}://127.0.0.1:{port}{HEALTH}",
                              self._client_tls() if scheme == "https" else None))
        for child, url, ctx in waits:
            self._wait(child, url, ctx)
        for app in self.topology.apps:
            say(f"  ready: app server {app.name} ({time.monotonic() - self.started:.1f} s)")

    def _client_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certs.ca))

    def _start_front_end(self, ports: dict[str, Reserved]) -> None:
        config = self.state / "ferryman.toml"
        config.write_text(ferryman_toml(self.topology))
        t = self.topology
        say(f"  starting the front end: ferryman run -c {config} ({t.public('http')}, {t.public('https')})")
        ports["front end HTTP"].close()
        ports["front end HTTPS"].close()
        with signals_deferred():
            child = Child("front end (ferryman)", [sys.executable, "-m", "ferryman", "run", "-c", str(config)],
                          self.state / "logs" / "ferryman.log", env=self.env_for_ferryman(), cwd=self.state)
            self.children.append(child)
        self.front = child
        auth = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{self.password}".encode()).decode()}
        for url in self.urls():
            self._wait(child, url + "ferryman/health/", self._client_tls() if url.startswith("https") else None,
                       auth if url.startswith("https") and "/webapps" in url else None)
        say(f"  ready: front end ({time.monotonic() - self.started:.1f} s)")

    def env_for_ferryman(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if not k.startswith("FERRYMAN_DEMO_")}

    def urls(self) -> list[str]:
        t = self.topology
        return [t.public("http") + "/webapps/", t.public("https") + "/webapps/",
                t.public("http") + "/public/", t.public("https") + "/public/"]

    def _wait(self, child: Child, url: str, ctx: ssl.SSLContext | None,
              headers: dict[str, str] | None = None) -> None:
        """Until `url` answers 200; raise DemoError if `child` exits first or nothing answers in time."""
        deadline = time.monotonic() + READY_TIMEOUT
        tick = threading.Event()
        last = "no answer"
        while True:
            status = child.exited()
            if status is not None:
                raise DemoError(f"{child.name} exited with status {status} before it was ready; "
                                f"the end of {child.log}:\n{child.tail()}")
            got = _get(url, ctx, headers)
            if got == 200:
                return
            last = f"status {got}" if isinstance(got, int) else got
            if time.monotonic() > deadline:
                raise DemoError(f"{child.name} did not answer {url} within {READY_TIMEOUT:.0f} s "
                                f"(last: {last}); see {child.log}:\n{child.tail()}")
            tick.wait(0.05)

    def _write_run_file(self) -> None:
        t = self.topology
        info = {
            "pid": os.getpid(),
            "urls": {"http_webapps": self.urls()[0], "https_webapps": self.urls()[1],
                     "http_public": self.urls()[2], "https_public": self.urls()[3]},
            "user": USER, "password": self.password, "ca": str(self.certs.ca),
            "config": str(self.state / "ferryman.toml"), "media": str(self.state / "media"),
            "postgres_data": str(self.postgres.data) if self.postgres else None,
            "front_end": {"pid": self.front.pid, "http_port": t.http_port, "https_port": t.https_port},
            "app_servers": {a.name: {"http_port": a.http_port, "https_port": a.https_port,
                                     "routes": [a.http_route, a.https_route],
                                     "pids": [c.pid for c in self.children if c.name.startswith(a.name + " ")]}
                            for a in t.apps},
        }
        (self.state / "run" / "demo.json").write_text(json.dumps(info, indent=2) + "\n")

    def banner(self) -> str:
        u = self.urls()
        ca = self.certs.ca
        return f"""\
ferryman demo is up ({time.monotonic() - self.started:.1f} s):
  {u[1]}   Django behind ferryman's htpasswd (user {USER}, password {self.password}):
      the user reaches Django as Remote-User and is staff; the admin is at {u[1]}admin/
  {u[3]}    the same app servers without front-end auth: Django's own login form
      ({u[3]}accounts/login/) and the admin login ({u[3]}admin/), same user and password
  {u[0]}    and {u[2]}: the same over plain HTTP
  each page shows which app server answered and the client, host, scheme, port, script name,
  user and session it saw; /upload/ stores a file in the shared {self.state / 'media'},
      which ferryman itself serves at /media/ (a static route: ETag, Range, no app server involved)
  trust the CA: curl --cacert {ca} {u[1]} -u {USER}:{self.password}
      browsers: import {ca} as an authority (Chromium: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n ferryman-demo -i {ca});
      Debian, system-wide: cp {ca} /usr/local/share/ca-certificates/ferryman-demo.crt && update-ca-certificates
  configuration: {self.state / 'ferryman.toml'}; logs: {self.state / 'logs'}
Ctrl-C stops everything."""

    # -- run and stop ------------------------------------------------------------------------------

    def watch(self) -> int:
        """Until a signal: report app servers that exit; stop with status 1 if the front end exits."""
        reported: set[str] = set()
        tick = threading.Event()
        while True:
            for child in self.children:
                status = child.exited()
                if status is None or child.name in reported:
                    continue
                reported.add(child.name)
                if child is self.front:
                    say(f"ferryman demo: the front end exited with status {status}; stopping. "
                        f"The end of {child.log}:\n{child.tail()}")
                    return 1
                say(f"ferryman demo: {child.name} exited with status {status}; the front end sends its "
                    f"requests to the other app server")
            tick.wait(0.5)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        for r in self.reserved:
            r.close()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        try:
            (self.state / "run" / "demo.json").unlink()
        except OSError:
            pass


_HAS: dict[str, bool] = {}


def _gunicorn_has(flag: str) -> bool:
    """Whether this gunicorn knows a command-line flag (newer ones have a control socket to turn off)."""
    if flag not in _HAS:
        try:
            from gunicorn.config import KNOWN_SETTINGS
            _HAS[flag] = any(flag in (getattr(s, "cli", None) or []) for s in KNOWN_SETTINGS)
        except ImportError:
            _HAS[flag] = False
    return _HAS[flag]


def _get(url: str, ctx: ssl.SSLContext | None, headers: dict[str, str] | None) -> int | str:
    """Status of GET `url`, or why there was none."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=5, context=ctx)
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
        try:
            conn.request("GET", parts.path, headers=headers or {})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        return f"{type(e).__name__}: {e}"


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop()


def main(args: argparse.Namespace) -> int:
    """Run the demo until SIGINT/SIGTERM. Exit status: 0 stopped by a signal, 1 a part failed."""
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    demo = Demo(args)
    status = 0
    try:
        try:
            demo.start()
        except DemoError as e:
            print(f"ferryman demo: {e}", file=sys.stderr, flush=True)
            status = 1
        else:
            say(demo.banner())
            status = demo.watch()
    except Stop:
        say("ferryman demo: stopping")
    finally:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            demo.stop()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    if status == 0:
        say("ferryman demo: everything it started is stopped")
    return status
