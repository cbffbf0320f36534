"""Configuration reload (SIGHUP, `ferryman reload -c FILE`, watched certificate and htpasswd files).

Rules: a reload checks everything before it changes anything; a bad configuration is refused with each
reason logged once as file:line and the old one keeps serving; a good one serves new requests while
requests in flight finish on the old one; kept listeners keep their socket (never a refused connection);
members keep their live state by pool and URL.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading

import pytest

from tests.support import (
    REPO,
    ClientConn,
    Ferryman,
    RawBackend,
    build_request,
    refused_port,
    wait_until,
)

pytestmark = pytest.mark.integration


def canned(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def toml(routes: dict[str, list[str]], *, weights: dict[str, int] | None = None, listeners: tuple[str, ...] = ("http",),
         top: str = "", route_options: str = "", listener_options: str = "", pool_options: str = "") -> str:
    """One pool per route (pool name = route path without "/"), members given as URLs."""
    weights = weights or {}
    out = [top]
    for name in listeners:
        out.append(f'[[listener]]\nname = "{name}"\nbind = "127.0.0.1:0"\n{listener_options}\n')
    for path, members in routes.items():
        pool = path.strip("/") or "root"
        ms = ", ".join(f'{{ url = "{m}", weight = {weights.get(m, 1)} }}' for m in members)
        out.append(f'[pool.{pool}]\nretry = "60s"\n{pool_options}\nmembers = [{ms}]\n')
        out.append(f'[[route]]\npath = "{path}"\npool = "{pool}"\n{route_options}\n')
    return "\n".join(out)


def reload_cli(f: Ferryman, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ferryman", "reload", "-c", str(f.config_path)], cwd=f.dir,
                          env=f.env_for_cli(), capture_output=True, text=True, timeout=timeout)


def count(f: Ferryman, text: str) -> int:
    return sum(text in line for line in f.error_log_lines())


def sighup_and_wait(f: Ferryman, outcome: str = "reloaded ") -> None:
    """SIGHUP, then wait until the log says the reload is done (`outcome`: "reloaded " or "reload refused")."""
    before = count(f, outcome)
    f.signal(signal.SIGHUP)
    wait_until(lambda: count(f, outcome) > before, 15, message=f"no {outcome!r} in the error log")


def rewrite(f: Ferryman, text: str) -> None:
    f.config_path.write_text(text)


def body_of(f: Ferryman, target: str, listener: str | None = None) -> tuple[int, bytes]:
    r = f.request("GET", target, listener=listener)
    return r.status, r.body


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# -- the basics ---------------------------------------------------------------------------------------

def test_a_route_added_to_the_file_answers_after_sighup():
    with RawBackend.respond(canned(b"a")) as a, RawBackend.respond(canned(b"b")) as b, \
            Ferryman(toml({"/a": [a.url("/")]})) as f:
        assert body_of(f, "/a/x") == (200, b"a")
        assert body_of(f, "/b/x")[0] == 404
        rewrite(f, toml({"/a": [a.url("/")], "/b": [b.url("/")]}))
        sighup_and_wait(f)
        assert body_of(f, "/b/x") == (200, b"b")
        assert body_of(f, "/a/x") == (200, b"a")


def test_ferryman_reload_reports_reloaded_and_refused_with_the_reasons_and_exit_status():
    with RawBackend.respond(canned(b"a")) as a, Ferryman(toml({"/a": [a.url("/")]})) as f:
        rewrite(f, toml({"/a": [a.url("/")], "/c": [a.url("/")]}))
        done = reload_cli(f)
        assert (done.returncode, done.stdout.startswith("reloaded: process ")) == (0, True), done
        assert body_of(f, "/c/x") == (200, b"a")
        rewrite(f, toml({"/a": [a.url("/")]}) + '\n[[route]]\npath = "/d"\npool = "nope"\n')
        done = reload_cli(f)
        assert done.returncode == 2, done
        assert "ferryman.toml:" in done.stderr and "route[1].pool" in done.stderr, done.stderr
        assert "refused: 1 problem(s)" in done.stderr
        assert body_of(f, "/c/x") == (200, b"a")      # the previous configuration still serves


def test_ferryman_reload_says_nothing_runs_when_there_is_no_pid_file_or_it_is_stale(tmp_path):
    cfg = tmp_path / "ferryman.toml"
    cfg.write_text(toml({"/a": ["http://127.0.0.1:9/"]}, top=f'pid_file = "{tmp_path / "f.pid"}"'))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = [sys.executable, "-m", "ferryman", "reload", "-c", str(cfg)]
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "no ferryman is running" in done.stderr, done
    (tmp_path / "f.pid").write_text(f"{os.getpid()}\n")  # a live process that is not ferryman
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "is stale" in done.stderr, done


def test_the_pid_file_exists_while_running_follows_a_reload_that_moves_it_and_is_removed_at_stop(tmp_path):
    pid = tmp_path / "run" / "ferryman.pid"
    with RawBackend.respond(canned(b"a")) as a, \
            Ferryman(toml({"/a": [a.url("/")]}, top=f'pid_file = "{pid}"')) as f:
        assert wait_until(lambda: pid.exists(), 10)
        assert int(pid.read_text()) == f.pid
        moved = tmp_path / "elsewhere.pid"
        rewrite(f, toml({"/a": [a.url("/")]}, top=f'pid_file = "{moved}"'))
        sighup_and_wait(f)
        assert int(moved.read_text()) == f.pid and not pid.exists()
        assert reload_cli(f).returncode == 0                 # found through the new pid file
        assert f.stop() == 0
        assert not moved.exists()


@pytest.mark.parametrize("breakage, reason", [
    ("syntax", "ferryman.toml:"),
    ("schema", "listener[0].max_connections"),
    ("missing certificate", "does not exist"),
    ("bad certificate", "holds no PEM certificate"),
    ("unsupported htpasswd hash", "cannot check the password"),
])
def test_a_broken_configuration_is_refused_with_each_reason_logged_once_and_the_old_one_keeps_serving(
        breakage, reason):
    with RawBackend.respond(canned(b"a")) as a, Ferryman(toml({"/a": [a.url("/")]}),
                                                         files={"bad.pem": "not a certificate\n"}) as f:
        good = toml({"/a": [a.url("/")]})
        bad = {
            "syntax": good + "\n[[route]\n",
            "schema": good.replace('bind = "127.0.0.1:0"', 'bind = "127.0.0.1:0"\nmax_connections = -1'),
            "missing certificate": good.replace('bind = "127.0.0.1:0"',
                                                'bind = "127.0.0.1:0"\ntls = { cert = "nope.pem", key = "bad.pem" }'),
            "bad certificate": good.replace('bind = "127.0.0.1:0"',
                                            'bind = "127.0.0.1:0"\ntls = { cert = "bad.pem", key = "bad.pem" }'),
            "unsupported htpasswd hash": good + 'auth = { htpasswd = "u.htpasswd" }\n',
        }[breakage]
        (f.dir / "u.htpasswd").write_text("bob:$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0\n")
        rewrite(f, bad)
        sighup_and_wait(f, "reload refused")
        reasons = [line for line in f.error_log_lines() if reason in line and "[ERROR]" in line]
        assert len(reasons) == 1, f.error_log_lines()[-10:]
        assert "ferryman.toml" in reasons[0]
        assert body_of(f, "/a/x") == (200, b"a")
        assert f.running()


# -- listeners ----------------------------------------------------------------------------------------

def test_a_listener_removed_stops_accepting_an_added_one_answers_and_a_kept_one_keeps_its_port():
    with RawBackend.respond(canned(b"a")) as a, \
            Ferryman(toml({"/a": [a.url("/")]}, listeners=("keep", "gone"))) as f:
        keep, gone = f.port("keep"), f.port("gone")
        rewrite(f, toml({"/a": [a.url("/")]}, listeners=("keep", "new")))
        assert reload_cli(f).returncode == 0
        assert "listener gone removed" in f.wait_for_error_log("reloaded ")
        wait_until(lambda: "new" in f.listeners, 10)
        assert f.port("keep") == keep
        assert body_of(f, "/a/x", "keep") == (200, b"a")
        assert body_of(f, "/a/x", "new") == (200, b"a")
        assert not accepts(gone)


def test_a_keep_alive_connection_takes_the_new_configuration_at_its_next_request():
    with RawBackend.respond(canned(b"a")) as a, RawBackend.respond(canned(b"b")) as b, \
            Ferryman(toml({"/x": [a.url("/")]})) as f, ClientConn(f.port()) as c:
        assert c.request("GET", "/x/1").body == b"a"
        rewrite(f, toml({"/x": [b.url("/")]}))
        assert reload_cli(f).returncode == 0
        assert c.request("GET", "/x/2").body == b"b"


def test_a_request_in_flight_finishes_on_the_old_configuration_across_a_reload():
    def held(conn, sock):
        if conn.read_request() is not None:
            conn.hold(60)
            conn.respond(200, body=b"finished on the old plan")

    with RawBackend(held) as slow, RawBackend.respond(canned(b"new")) as other, \
            Ferryman(toml({"/p": [slow.url("/")]})) as f, ClientConn(f.port(), timeout=30) as c:
        c.send(build_request("GET", "/p/slow"))
        wait_until(lambda: slow.requests, 10)
        rewrite(f, toml({"/q": [other.url("/")]}))     # its route and its member are gone
        assert reload_cli(f).returncode == 0
        assert body_of(f, "/q/x") == (200, b"new")
        assert body_of(f, "/p/x")[0] == 404
        slow.release.set()
        r = c.read_response()
        assert (r.status, r.body, r.complete) == (200, b"finished on the old plan", True)
        assert c.request("GET", "/q/y").body == b"new"  # the same connection, on the new plan now


# -- members ------------------------------------------------------------------------------------------

def test_new_weights_take_effect():
    with RawBackend.respond(canned(b"a")) as a, RawBackend.respond(canned(b"b")) as b, \
            Ferryman(toml({"/w": [a.url("/"), b.url("/")]})) as f:
        assert sorted(body_of(f, "/w/x")[1] for _ in range(4)) == [b"a", b"a", b"b", b"b"]
        rewrite(f, toml({"/w": [a.url("/"), b.url("/")]}, weights={a.url("/"): 3, b.url("/"): 1}))
        assert reload_cli(f).returncode == 0
        bodies = [body_of(f, "/w/x")[1] for _ in range(8)]
        assert (bodies.count(b"a"), bodies.count(b"b")) == (6, 2)


def test_a_member_in_error_stays_in_error_across_a_reload():
    dead = f"http://127.0.0.1:{refused_port()}/"
    with RawBackend.respond(canned(b"a")) as a, Ferryman(toml({"/m": [dead, a.url("/")]})) as f:
        for _ in range(2):
            assert body_of(f, "/m/x") == (200, b"a")        # the dead one refused once, then rests 60 s
        assert count(f, "failed to connect") == 1
        rewrite(f, toml({"/m": [dead, a.url("/")], "/other": [a.url("/")]}))
        assert reload_cli(f).returncode == 0
        for _ in range(4):
            assert body_of(f, "/m/x") == (200, b"a")
        assert count(f, "failed to connect") == 1          # never tried again: still resting


def test_a_removed_members_idle_connections_are_closed_and_a_kept_members_are_reused():
    with RawBackend.respond(canned(b"a")) as a, RawBackend.respond(canned(b"b")) as b, \
            Ferryman(toml({"/x": [a.url("/"), b.url("/")]})) as f:
        assert sorted(body_of(f, "/x/1")[1] for _ in range(2)) == [b"a", b"b"]   # one idle connection each
        assert (a.connection_count, b.connection_count) == (1, 1)
        rewrite(f, toml({"/x": [a.url("/")]}))
        assert reload_cli(f).returncode == 0
        wait_until(lambda: b.connections[0].peer_closed, 10)
        assert body_of(f, "/x/2") == (200, b"a")
        assert a.connection_count == 1 and not a.connections[0].peer_closed


def test_a_member_held_down_by_its_checks_stays_down_across_a_reload_and_the_restarted_checks_bring_it_back():
    b_ok = threading.Event()

    def b_handler(conn, sock):
        while (req := conn.read_request()) is not None:
            if req.target.startswith("/health") and not b_ok.is_set():
                conn.respond(500, body=b"sick")
            else:
                conn.respond(200, body=b"b")

    health = 'health = { path = "/health", interval = "2s", fails = 1, passes = 1 }'
    with RawBackend.respond(canned(b"a")) as a, RawBackend(b_handler) as b, \
            Ferryman(toml({"/h": [a.url("/"), b.url("/")]}, pool_options=health)) as f:
        f.wait_for_error_log(lambda line: b.url("/") in line and "-> ejected" in line)
        rewrite(f, toml({"/h": [a.url("/"), b.url("/")]}, weights={b.url("/"): 5}, pool_options=health))
        assert reload_cli(f).returncode == 0
        assert [body_of(f, "/h/x")[1] for _ in range(6)] == [b"a"] * 6   # b is still held down
        b_ok.set()
        f.wait_for_error_log(lambda line: b.url("/") in line and "ejected -> healthy" in line)
        assert b"b" in [body_of(f, "/h/x")[1] for _ in range(6)]


# -- watched files ------------------------------------------------------------------------------------

def _peer_serial(port: int, ca) -> int:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        from cryptography import x509
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number


def test_a_certificate_replaced_on_disk_is_served_after_the_watch_reloads_it_and_a_bad_one_is_refused_once():
    trustme = pytest.importorskip("trustme")
    from cryptography import x509

    ca = trustme.CA()
    first, second = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    serial = {c: x509.load_pem_x509_certificate(c.cert_chain_pems[0].bytes()).serial_number for c in (first, second)}
    with RawBackend.respond(canned(b"a")) as a, \
            Ferryman(toml({"/a": [a.url("/")]}, listener_options='tls = { cert = "front.pem", key = "front.pem" }'),
                     files={"front.pem": first.private_key_and_cert_chain_pem.bytes()}) as f:
        port = f.port()
        assert _peer_serial(port, ca) == serial[first]
        pem = f.dir / "front.pem"
        tmp = f.dir / "front.pem.new"
        tmp.write_bytes(second.private_key_and_cert_chain_pem.bytes())
        os.replace(tmp, pem)                                # as certbot and friends do
        wait_until(lambda: _peer_serial(port, ca) == serial[second], 15, 0.1)
        assert "front.pem changed: reloading" in f.wait_for_error_log("front.pem changed")
        assert f.port() == port
        pem.write_text("garbage\n")
        f.wait_for_error_log("reload refused", timeout=15)
        assert _peer_serial(port, ca) == serial[second]    # the old context serves
        assert count(f, "holds no PEM certificate") == 1
        # a refused file is not retried at every poll: the next change is the next reload
        pem.write_bytes(first.private_key_and_cert_chain_pem.bytes())
        wait_until(lambda: _peer_serial(port, ca) == serial[first], 15, 0.1)
        assert count(f, "reload refused") == 1
        assert count(f, "holds no PEM certificate") == 1


def _sha(password: str) -> str:
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


def test_a_changed_htpasswd_file_is_honoured_without_a_signal():
    with RawBackend.respond(canned(b"a")) as a, \
            Ferryman(toml({"/a": [a.url("/")]}, route_options='auth = { htpasswd = "u.htpasswd" }'),
                     files={"u.htpasswd": f"alice:{_sha('one')}\n"}) as f:
        def status(user: str, password: str) -> int:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            return f.request("GET", "/a/x", headers={"Authorization": f"Basic {token}"}).status

        assert status("alice", "one") == 200
        assert status("bob", "two") == 401
        (f.dir / "u.htpasswd").write_text(f"alice:{_sha('one')}\nbob:{_sha('two')}\n")
        wait_until(lambda: status("bob", "two") == 200, 15, 0.1)
        assert status("alice", "one") == 200


# -- the showcase: reloads under load -----------------------------------------------------------------

@pytest.mark.slow
def test_twenty_reloads_under_steady_load_fail_no_request_and_refuse_no_connection(echo_a, echo_b):
    a, b = echo_a.url("/webapps"), echo_b.url("/webapps")

    def cfg(i: int) -> str:
        routes = {"/webapps": [a, b]}
        if i % 2:
            routes[f"/extra{i}"] = [a]
        return toml(routes, weights={a: 1 + i % 3, b: 1 + (i + 1) % 3})

    with Ferryman(cfg(0)) as f:
        port = f.port()
        stop = threading.Event()
        ok = [0]
        failures: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            while not stop.is_set():
                try:
                    with ClientConn(port, timeout=15) as c:
                        for _ in range(20):       # keep-alive connections, renewed now and then
                            r = c.request("GET", "/webapps/echo")
                            if r.status != 200:
                                raise AssertionError(f"status {r.status}")
                            with lock:
                                ok[0] += 1
                except Exception as exc:  # every failure is counted, with its reason
                    with lock:
                        failures.append(repr(exc))

        threads = [threading.Thread(target=client, daemon=True) for _ in range(6)]
        for t in threads:
            t.start()
        wait_until(lambda: ok[0] > 50, 10)
        before_reloads = ok[0]
        for i in range(1, 21):
            if i == 10:
                rewrite(f, cfg(i) + "\n[[route]]\npath = \"/broken\"\npool = \"missing\"\n")
                assert reload_cli(f).returncode == 2
            elif i % 5 == 0:
                rewrite(f, cfg(i))
                done = reload_cli(f)
                assert done.returncode == 0, done.stderr
            else:
                rewrite(f, cfg(i))
                sighup_and_wait(f)
            if i % 2:
                assert f.request("GET", f"/extra{i}/echo").status == 200
        served_during_reloads = ok[0] - before_reloads
        stop.set()
        for t in threads:
            t.join(20)
        assert failures == []
        assert served_during_reloads > 20                  # the reloads happened under load
        assert count(f, "reloaded ") == 19 and count(f, "reload refused") == 1
        assert f.running()


def test_an_admin_listener_added_by_a_reload_serves_metrics_and_one_removed_by_a_reload_stops():
    import urllib.request

    from tests.support import free_port

    port = free_port()
    with RawBackend.respond(canned(b"a")) as a, Ferryman(toml({"/a": [a.url("/")]})) as f:
        assert body_of(f, "/a/x") == (200, b"a")
        assert not accepts(port)
        rewrite(f, toml({"/a": [a.url("/")]}) + f'\n[admin]\nbind = "127.0.0.1:{port}"\n')
        sighup_and_wait(f)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert 'ferryman_reloads_total{result="ok"} 1.0' in text
        assert "ferryman_requests_total" in text
        rewrite(f, toml({"/a": [a.url("/")]}))
        sighup_and_wait(f)
        wait_until(lambda: not accepts(port), 10, message="the removed admin listener still accepts")
        assert body_of(f, "/a/x") == (200, b"a")



def _wchan(pid: int) -> str:
    """Where the main thread of process `pid` waits in the kernel ("wait_for_partner": opening a FIFO)."""
    try:
        return open(f"/proc/{pid}/wchan").read()
    except OSError:
        return ""


class _Opens:
    """Counts the opens of one file in a directory (inotify): another process reading it is seen."""

    def __init__(self, directory: str, name: str) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0 and libc.inotify_add_watch(self.fd, directory.encode(), 0x20) >= 0  # IN_OPEN
        self.name = name.encode()
        self.count = 0

    def poll(self) -> int:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return self.count
        pos = 0
        while pos < len(data):
            length = struct.unpack_from("iIII", data, pos)[3]
            self.count += data[pos + 16:pos + 16 + length].rstrip(b"\0") == self.name
            pos += 16 + length
        return self.count

    def close(self) -> None:
        os.close(self.fd)


def test_ferryman_reload_run_during_a_reload_reports_the_reload_that_read_the_file_after_its_signal(tmp_path):
    """A reload in progress when ``ferryman reload`` signals read the file before the command ran; the
    command reports the reload its signal made, which reads the file after it."""
    if not os.path.exists("/proc/self/wchan"):
        pytest.skip("needs /proc/<pid>/wchan")
    fifo1, fifo2 = tmp_path / "one.fifo", tmp_path / "two.fifo"
    os.mkfifo(fifo1)
    os.mkfifo(fifo2)
    top = 'pid_file = "ferryman.pid"\n'
    readers: list[int] = []
    with RawBackend.respond(canned(b"a")) as a, Ferryman(toml({"/a": [a.url("/")]}, top=top)) as f:
        blocked = lambda: "partner" in _wchan(f.pid) or "fifo" in _wchan(f.pid)  # noqa: E731
        # reload 1 is valid; applying it waits on opening its access log, a FIFO nobody reads yet
        rewrite(f, toml({"/a": [a.url("/")]}, top=top, listener_options=f'access_log = {{ path = "{fifo1}" }}'))
        f.signal(signal.SIGHUP)
        wait_until(blocked, 15, message="ferryman never waited on opening the first FIFO")
        # meanwhile the file gains a route and ferryman reload is run
        rewrite(f, toml({"/a": [a.url("/")], "/b": [a.url("/")]}, top=top,
                        listener_options=f'access_log = {{ path = "{fifo2}" }}'))
        opens = _Opens(str(f.dir), "ferryman.pid.status")
        reloaded = count(f, "reloaded ")
        cli = subprocess.Popen([sys.executable, "-m", "ferryman", "reload", "-c", str(f.config_path)], cwd=f.dir,
                               env=f.env_for_cli(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # the command waits (on an Event) for the answer: it has signalled ferryman
            wait_until(lambda: "futex" in _wchan(cli.pid) or cli.poll() is not None, 15,
                       message="ferryman reload never waited for the answer")
            readers.append(os.open(fifo1, os.O_RDONLY | os.O_NONBLOCK))  # reload 1 goes on and finishes
            wait_until(lambda: count(f, "reloaded ") > reloaded, 15, message="reload 1 never finished")
            wait_until(blocked, 15, message="the reload the signal made never waited on the second FIFO")
            # the status file now tells reload 1's outcome; the command reads it twice more or ends
            base = opens.poll()
            wait_until(lambda: cli.poll() is not None or opens.poll() >= base + 2, 15,
                       message="ferryman reload neither ended nor read the status file")
            readers.append(os.open(fifo2, os.O_RDONLY | os.O_NONBLOCK))
            out, err = cli.communicate(timeout=30)
        finally:
            opens.close()
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert cli.returncode == 0, (out, err)
        assert "route /b added" in out, out
        assert body_of(f, "/b/x") == (200, b"a")
    for fd in readers:
        os.close(fd)



def _served_pair(port: int) -> list[ClientConn] | None:
    """Two connections from 127.0.0.1, each served once; None (both closed) when one is refused."""
    pair = [ClientConn(port), ClientConn(port)]
    try:
        if all(c.request("GET", "/a/x").status == 200 for c in pair):
            return pair
    except (EOFError, OSError):
        pass
    for c in pair:
        c.close()
    return None


def test_connections_per_client_stay_counted_exactly_across_reloads_that_keep_and_that_remove_their_listener():
    with RawBackend.respond(canned(b"a")) as a:
        one = toml({"/a": [a.url("/")]}, listener_options="max_connections_per_client = 2")
        with Ferryman(one) as f:
            port = f.port()
            pair = wait_until(lambda: _served_pair(port), 10, message="two connections never served")
            sighup_and_wait(f)  # both follow to the new listener runtime at once (idle)
            assert pair[0].request("GET", "/a/x").status == 200
            with ClientConn(port) as third:  # still two open: a third is refused
                assert third.read_response().status == 503
            for c in pair:
                c.close()
            sighup_and_wait(f)
            # the closed ones are no longer counted: two more fit (once ferryman has seen the closes)
            pair = wait_until(lambda: _served_pair(port), 10, message="closed connections stayed counted")
            # renamed: the old listener is removed (its connections close, counted on it) and a new one counts
            rewrite(f, one.replace('name = "http"', 'name = "other"'))
            sighup_and_wait(f)
            for c in pair:
                assert c.is_closed_by_peer()
                c.close()
            port = f.port("other")
            pair = wait_until(lambda: _served_pair(port), 10, message="the new listener was not served")
            for c in pair:
                c.close()
            with ClientConn(port) as c:
                assert c.request("GET", "/a/x").status == 200
            assert not any("Traceback" in line or "KeyError" in line for line in f.error_log_lines())
