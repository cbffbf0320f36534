"""WebSocket through ferryman end to end: a real Django Channels app (tests/apps/ws_asgi, served by uvicorn)
behind a real `ferryman run`, driven by the `websockets` client.

An upgrade request without a body is forwarded with its Upgrade/Connection headers to a member chosen as
usual (sticky included); the member's 101 turns the connection into a byte tunnel both ways, with
backpressure and an idle timeout (route key `tunnel_idle_timeout`). An upgrade request with a body is
refused with 400 before anything reaches a member; a route with `websocket = false` refuses upgrades (the
request is forwarded as plain HTTP, without Upgrade); a 101 the client did not ask for is a backend protocol
error (502).

The shared front (module scope) has two uvicorn members m1 (route r1) and m2 (route r2):

  /webapps  pool ws   sticky = "sessionid"
  /public   pool ws   the same pool under another prefix (path mapping /public -> /webapps)
  /rc       pool rc   route_cookie = { name = "ROUTEID" }

on a plain listener "http" and a TLS listener "https" (trustme). Tests that kill a member, need another
route option or measure ferryman's memory start their own ferryman.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import socket
import ssl
import struct
import threading
import time
from http.cookies import SimpleCookie

import pytest
import trustme
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.apps.echo_wsgi import pattern_sha256
from tests.apps.ws_asgi.launcher import AsgiMember
from tests.support import ClientConn, Ferryman, RawBackend, build_request, config, keep_alive_handler, wait_until

pytestmark = pytest.mark.integration

MiB = 1 << 20
CA = trustme.CA()
CERT = CA.issue_cert("127.0.0.1", "localhost")
UPGRADE_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


# --------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def m1():
    with AsgiMember("m1") as m:
        yield m


@pytest.fixture(scope="module")
def m2():
    with AsgiMember("m2") as m:
        yield m


def two_members(a: AsgiMember, b: AsgiMember) -> str:
    return f'members = [ {{ url = "{a.url()}", route = "r1" }}, {{ url = "{b.url()}", route = "r2" }} ]'


@pytest.fixture(scope="module")
def front(m1, m2):
    extra = (f'[pool.rc]\nroute_cookie = {{ name = "ROUTEID" }}\n{two_members(m1, m2)}\n\n'
             '[[route]]\npath = "/public"\npool = "ws"\n\n'
             '[[route]]\npath = "/rc"\npool = "rc"\n\n'
             '[[listener]]\nname = "https"\nbind = "127.0.0.1:0"\ntls = { cert = "front.pem", key = "front.pem" }\n')
    toml = config([{"url": m1.url(), "route": "r1"}, {"url": m2.url(), "route": "r2"}], "/webapps", pool="ws",
                  pool_options='sticky = "sessionid"', extra=extra)
    with Ferryman(toml, files={"front.pem": CERT.private_key_and_cert_chain_pem.bytes()}) as f:
        yield f


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    CA.configure_trust(ctx)
    return ctx


def ws(f: Ferryman, path: str, listener: str = "http", cookie: str | None = None, **kw) -> ClientConnection:
    """A websockets client connection through ferryman's `listener` (wss on "https")."""
    scheme = "wss" if listener == "https" else "ws"
    headers = {"Cookie": cookie} if cookie else None
    if scheme == "wss":
        kw.setdefault("ssl", client_tls())
    kw.setdefault("max_size", None)
    return connect(f"{scheme}://{f.authority(listener)}{path}", additional_headers=headers, open_timeout=15,
                   close_timeout=5, ping_interval=None, **kw)


def who(f: Ferryman, path: str = "/webapps/ws/who", **kw) -> dict:
    """Open ws/who, return what the app saw, close."""
    with ws(f, path, **kw) as c:
        return json.loads(c.recv(timeout=10))


def headers_of(seen: dict) -> dict[str, str]:
    """The scope headers the app saw, names lower-cased, repeated names joined with ", "."""
    out: dict[str, str] = {}
    for k, v in seen["headers"]:
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def rss(pid: int) -> int:
    """Resident memory of a process in bytes."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def upgrade_request(path: str, extra: list[tuple[str, str]] | None = None, body: bytes = b"") -> bytes:
    return build_request("GET", path, [*UPGRADE_HEADERS, *(extra or [])], body)


# --------------------------------------------------------------------------------------------------
# messages both ways


def test_text_and_binary_messages_are_echoed_and_the_close_handshake_completes(front):
    with ws(front, "/webapps/ws/echo") as c:
        for text in ["hello", "", "é€😀" * 100]:
            c.send(text)
            assert c.recv(timeout=10) == text
        for data in [b"\x00\xff" * 3, os.urandom(70000)]:
            c.send(data)
            assert c.recv(timeout=10) == data
        c.close()
        # the member answered the client's close frame through the tunnel
        assert c.protocol.close_rcvd is not None and c.protocol.close_rcvd.code == 1000


def test_the_switch_is_logged_with_status_101_and_the_member(front, m2):
    with ws(front, "/webapps/ws/echo?logged=1", cookie="sessionid=x.r2") as c:
        c.send("x")
        assert c.recv(timeout=10) == "x"
    line = front.wait_for_access_log("/webapps/ws/echo?logged=1")
    assert '" 101 ' in line and "pool=ws" in line and m2.authority in line, line


@pytest.mark.parametrize("how", ["reset", "half-close"])
def test_a_client_that_goes_away_mid_tunnel_is_seen_gone_by_the_app(front, m1, how):
    key = f"gone-{how}-{random.random()}"
    with ws(front, f"/webapps/ws/echo?key={key}", cookie="sessionid=x.r1") as c:
        c.send("here")
        assert c.recv(timeout=10) == "here"
        assert m1.get(f"/open?key={key}")["open"]
        if how == "reset":
            c.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.socket.close()
        else:
            c.socket.shutdown(socket.SHUT_WR)
        wait_until(lambda: not m1.get(f"/open?key={key}")["open"], 15,
                   message="the app still holds the connection the client left")


def test_subprotocol_and_extension_negotiation_crosses_ferryman(front):
    with ws(front, "/webapps/ws/echo", subprotocols=["chat.v2", "chat"]) as c:
        assert c.subprotocol == "chat.v2"
        assert "permessage-deflate" in c.response.headers.get("Sec-WebSocket-Extensions", "")
        c.send("compressed " * 1000)
        assert c.recv(timeout=10) == "compressed " * 1000


def test_the_app_sees_the_upgrade_its_key_the_mapped_path_and_the_forwarded_headers(front, m1, m2):
    with ws(front, "/public/ws/who?a=1&b=%2F", subprotocols=["chat"]) as c:
        seen = json.loads(c.recv(timeout=10))
        key = c.request.headers["Sec-WebSocket-Key"]
    h = headers_of(seen)
    assert seen["path"] == "/webapps/ws/who" and seen["query"] == "a=1&b=%2F"
    assert h["upgrade"].lower() == "websocket"
    assert "upgrade" in [t.strip().lower() for t in h["connection"].split(",")]
    assert h["sec-websocket-key"] == key
    assert h["sec-websocket-version"] == "13"
    assert h["sec-websocket-protocol"] == "chat"
    assert h["host"] in (m1.authority, m2.authority)  # preserve_host is off
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == front.authority("http")
    assert h["x-forwarded-prefix"] == "/public"
    assert seen["client"][0] == "127.0.0.1"


def test_an_8_mib_message_crosses_intact_in_both_directions(front):
    size = 8 * MiB
    data = random.Random(8).randbytes(size)
    with ws(front, "/webapps/ws/echo", compression=None) as c:
        c.send(data)
        back = c.recv(timeout=60)
    assert len(back) == size and back == data
    with ws(front, "/webapps/ws/big", compression=None) as c:
        c.send(f"send {size}")
        down = c.recv(timeout=60)
        assert len(down) == size and hashlib.sha256(down).hexdigest() == pattern_sha256(size)
        c.send(down)
        assert json.loads(c.recv(timeout=60)) == {"length": size, "sha256": pattern_sha256(size)}


def test_many_tunnels_at_once_each_get_their_own_echo(front):
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(ws(front, "/webapps/ws/echo")) for _ in range(20)]
        for i, c in enumerate(conns):
            c.send(f"conn {i}")
        assert [c.recv(timeout=10) for c in conns] == [f"conn {i}" for i in range(len(conns))]


def test_wss_over_a_tls_listener_echoes_and_tells_the_app_the_scheme(front):
    with ws(front, "/webapps/ws/echo", listener="https") as c:
        c.send("over tls")
        assert c.recv(timeout=10) == "over tls"
        c.send(b"\x01" * 300000)
        assert c.recv(timeout=10) == b"\x01" * 300000
    seen = who(front, listener="https")
    assert headers_of(seen)["x-forwarded-proto"] == "https"


def test_a_handshake_the_app_refuses_is_relayed_as_its_plain_answer(front):
    with pytest.raises(InvalidStatus) as err:
        ws(front, "/webapps/ws/refuse")
    assert err.value.response.status_code == 403  # the consumer closed before accepting: uvicorn's 403
    with ClientConn(front.port("http")) as c:
        c.send(upgrade_request("/webapps/ws/refuse"))
        r = c.read_response()
        assert r.status == 403 and r.header("Upgrade") is None
    assert front.request("GET", "/webapps/ready", listener="http").status == 200


# --------------------------------------------------------------------------------------------------
# choosing the member


@pytest.mark.parametrize("route, member", [("r1", "m1"), ("r2", "m2")])
def test_a_sessionid_cookie_with_a_route_takes_every_upgrade_to_that_member(front, route, member):
    for i in range(6):
        assert who(front, cookie=f"sessionid=abc{i}.{route}")["member"] == member


def test_upgrades_without_a_session_are_balanced_over_both_members(front):
    assert {who(front)["member"] for _ in range(6)} == {"m1", "m2"}


def test_the_route_cookie_set_over_http_keeps_the_upgrades_on_the_same_member(front):
    r = front.request("GET", "/rc/who", listener="http")
    assert r.status == 200
    cookie = SimpleCookie()
    for value in r.header_all("Set-Cookie"):
        cookie.load(value)
    assert "ROUTEID" in cookie, r.headers
    route = cookie["ROUTEID"].value
    member = r.json()["member"]
    assert route == ".r1" if member == "m1" else ".r2"
    for _ in range(6):
        assert who(front, "/rc/ws/who", cookie=f"ROUTEID={route}")["member"] == member


# --------------------------------------------------------------------------------------------------
# flow control, timeouts, failures


def test_a_client_sending_to_an_app_that_stopped_reading_is_held_back_not_buffered(m1):
    """The app takes one 1 MiB message and stops reading; the client goes on sending. The sends must block
    once the socket buffers on the way are full (a few MiB per socket on loopback), ferryman's memory must
    not grow with what the client tried to send, and after the app reads again every byte arrives."""
    total, msg = 256 * MiB, MiB
    key = f"bp{os.getpid()}{random.random()}"
    with Ferryman(config([m1.url()], "/webapps")) as f:
        base = rss(f.pid)
        with ws(f, f"/webapps/ws/stall?key={key}", compression=None) as c:
            sent = [0]
            failure: list[BaseException] = []
            chunk = random.Random(1).randbytes(msg)

            def send_all() -> None:
                try:
                    while sent[0] < total:
                        c.send(chunk)
                        sent[0] += msg
                except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                    failure.append(exc)

            sender = threading.Thread(target=send_all, daemon=True)
            sender.start()
            wait_until(lambda: (m1.get(f"/stalled?key={key}") or {}).get("taken") == 1, 20,
                       message="the app never took its first message")
            # progress stops: no message completes for 2 s while the sender still has more to send
            last = {"n": -1, "t": time.monotonic()}

            def stalled_or_done() -> bool:
                if sent[0] != last["n"]:
                    last["n"], last["t"] = sent[0], time.monotonic()
                return sent[0] >= total or bool(failure) or time.monotonic() - last["t"] >= 2

            wait_until(stalled_or_done, 120, 0.05, "the sender kept making progress")
            held_at, grown = sent[0], rss(f.pid) - base
            assert not failure, failure
            assert held_at <= 64 * MiB, f"{held_at / MiB:.0f} MiB accepted while the app read nothing"
            assert grown < 24 * MiB, f"ferryman grew {grown / MiB:.1f} MiB holding the stalled tunnel"
            # one stalled tunnel holds nobody else up
            assert f.request("GET", "/webapps/ready").status == 200
            with ws(f, "/webapps/ws/echo") as other:
                other.send("not stalled")
                assert other.recv(timeout=10) == "not stalled"
            assert sent[0] == held_at  # still held back
            released = m1.get(f"/release?key={key}")
            assert released and released["taken"] == 1
            sender.join(120)
            assert not sender.is_alive() and not failure, failure
            c.send("done")
            report = json.loads(c.recv(timeout=120))
    expected = hashlib.sha256()
    for _ in range(total // msg):
        expected.update(chunk)
    assert report == {"messages": total // msg, "bytes": total, "sha256": expected.hexdigest()}


def test_an_idle_tunnel_is_closed_after_the_idle_timeout_and_a_busy_one_is_not(m1):
    toml = config([m1.url()], "/webapps", route_options='tunnel_idle_timeout = "1s"')
    with Ferryman(toml) as f:
        # busy: a message every 0.3 s for 2.4 s, well past the 1 s idle timeout
        with ws(f, "/webapps/ws/echo") as c:
            pace = threading.Event()
            for i in range(8):
                c.send(f"tick {i}")
                assert c.recv(timeout=10) == f"tick {i}"
                pace.wait(0.3)  # pacing the traffic, not synchronising with anything
        # idle: closed by ferryman within a few seconds of the last byte
        with ws(f, "/webapps/ws/echo") as c:
            c.send("last")
            assert c.recv(timeout=10) == "last"
            t0 = time.monotonic()
            with pytest.raises(ConnectionClosed):
                c.recv(timeout=15)
            idle = time.monotonic() - t0
        assert 0.5 <= idle < 10, idle  # from the client's side: ferryman relayed "last" a moment earlier
        assert f.request("GET", "/webapps/ready").status == 200


def test_shutdown_closes_open_tunnels_within_the_shutdown_timeout(m1):
    f = Ferryman(config([m1.url()], "/webapps", top='shutdown_timeout = "1s"'))
    try:
        with ws(f, "/webapps/ws/echo") as c:
            c.send("before")
            assert c.recv(timeout=10) == "before"
            t0 = time.monotonic()
            assert f.stop(timeout=15) == 0
            took = time.monotonic() - t0
            with pytest.raises(ConnectionClosed):
                c.recv(timeout=10)
        assert took < 8, took
    finally:
        f.kill()


def test_a_member_killed_mid_connection_closes_its_tunnels_and_ferryman_serves_the_rest():
    with AsgiMember("k1") as k1, AsgiMember("k2") as k2:
        toml = config([{"url": k1.url(), "route": "r1"}, {"url": k2.url(), "route": "r2"}], "/webapps",
                      pool_options='sticky = "sessionid"\nretry = "60s"')
        with Ferryman(toml) as f, contextlib.ExitStack() as stack:
            on_k1 = [stack.enter_context(ws(f, "/webapps/ws/who", cookie=f"sessionid=s{i}.r1")) for i in range(3)]
            on_k2 = stack.enter_context(ws(f, "/webapps/ws/who", cookie="sessionid=s.r2"))
            assert {json.loads(c.recv(timeout=10))["member"] for c in on_k1} == {"k1"}
            assert json.loads(on_k2.recv(timeout=10))["member"] == "k2"
            k1.kill()
            for c in on_k1:
                with pytest.raises(ConnectionClosed):
                    c.recv(timeout=15)
            # the other member's tunnel is untouched
            on_k2.send("still here")
            assert on_k2.recv(timeout=10) == "still here"
            # new upgrades and plain requests go to the member that is left
            assert {who(f)["member"] for _ in range(4)} == {"k2"}
            assert f.request("GET", "/webapps/ready").json()["member"] == "k2"
            assert f.running()


# --------------------------------------------------------------------------------------------------
# refusals


def recording_backend() -> RawBackend:
    """A member answering every request 200 "ok" and recording what it received."""
    return RawBackend(keep_alive_handler(lambda conn, req: conn.respond(200, body=b"ok")))


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_upgrade_request_with_a_body_gets_400_and_nothing_reaches_a_member(framing):
    with recording_backend() as backend, Ferryman(config([backend.url()], "/webapps")) as f:
        if framing == "content-length":
            raw = upgrade_request("/webapps/ws/echo", [("Content-Length", "5")], b"hello")
        else:
            raw = upgrade_request("/webapps/ws/echo", [("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n")
        with ClientConn(f.port()) as c:
            c.send(raw)
            r = c.read_response()
            assert r.status == 400
            assert r.header("Upgrade") is None
        # a plain request afterwards is served: by then ferryman has dealt with the upgrade
        assert f.request("GET", "/webapps/after").status == 200
        assert [req.target for req in backend.requests] == ["/after"]  # the member URL has no path


def test_a_route_with_websocket_false_forwards_upgrade_requests_as_plain_http_without_upgrade(m1):
    with recording_backend() as backend:
        toml = config([backend.url()], "/nows", route_options="websocket = false",
                      extra=f'[pool.ws]\nmembers = [ {{ url = "{m1.url()}" }} ]\n\n'
                            '[[route]]\npath = "/webapps"\npool = "ws"\n')
        with Ferryman(toml) as f:
            with pytest.raises(InvalidStatus) as err:
                ws(f, "/nows/ws/echo")
            assert err.value.response.status_code != 101
            with ClientConn(f.port()) as c:
                c.send(upgrade_request("/nows/ws/raw"))
                r = c.read_response()
            # forwarded as a plain request (as Apache and nginx do without upgrades configured): the
            # member's own answer comes back, and nothing that reached it asked to switch protocols
            assert (r.status, r.body, r.header("Upgrade")) == (200, b"ok", None)
            assert f.request("GET", "/nows/plain").status == 200
            assert [req.target for req in backend.requests] == ["/ws/echo", "/ws/raw", "/plain"]  # member URL: no path
            for req in backend.requests:
                assert req.header("Upgrade") is None, req
                assert "upgrade" not in (req.header("Connection") or "").lower(), req
            # the same ferryman still tunnels on a route that allows it
            with ws(f, "/webapps/ws/echo") as c:
                c.send("allowed here")
                assert c.recv(timeout=10) == "allowed here"


def test_a_101_the_client_did_not_ask_for_is_a_502():
    switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    with RawBackend.respond(switching) as backend, Ferryman(config([backend.url()], "/webapps")) as f:
        r = f.request("GET", "/webapps/plain")
        assert r.status == 502
        assert r.header("Upgrade") is None
        assert backend.requests and backend.requests[0].header("Upgrade") is None
