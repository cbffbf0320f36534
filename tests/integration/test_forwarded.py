"""Forwarded headers: ferryman writes X-Forwarded-* (and RFC 7239 Forwarded when enabled) itself; client copies
of the headers it vouches for (and Remote-User in any spelling) are removed unless the peer is a trusted proxy,
whose X-Forwarded-For chain is kept and extended.

Guarantee: invariant 4 of docs/request-safety.md; docs/configuration.md (trusted_proxies, forwarded, auth).
The backend is a RawBackend so header names arrive exactly as sent (gunicorn would drop `Remote_User` itself).
"""

from __future__ import annotations

import json

import pytest

from tests.support import Ferryman, RawBackend, keep_alive_handler

pytestmark = pytest.mark.integration

SPOOFED = [
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Port", "6666"),
    ("X-Forwarded-Server", "evil-server"),
    ("X-Forwarded-Prefix", "/evil"),
    ("X_Forwarded_For", "6.6.6.7"),
    ("x-forwarded-for", "6.6.6.8"),
    ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
    ("X-Real-IP", "6.6.6.6"),
    ("Remote-User", "admin"),
    ("Remote_User", "admin"),
    ("REMOTE-USER", "admin"),
    ("remote_user", "admin"),
]


def _answer(conn, req):
    conn.respond(200, body=b"ok")


@pytest.fixture(scope="module")
def raw():
    with RawBackend(keep_alive_handler(_answer)) as backend:
        yield backend


def _toml(raw, trusted: str, forwarded: bool = True) -> str:
    return f"""
trusted_proxies = {trusted}

[[listener]]
name = "front"
bind = "127.0.0.1:0"
server_name = "front-1"
forwarded = {"true" if forwarded else "false"}

[pool.raw]
members = [{{ url = "{raw.url('/m')}" }}]

[[route]]
path = "/fw"
pool = "raw"
"""


@pytest.fixture(scope="module")
def untrusting(raw):
    with Ferryman(_toml(raw, "[]")) as f:
        yield f


@pytest.fixture(scope="module")
def trusting(raw):
    with Ferryman(_toml(raw, '["127.0.0.1"]')) as f:
        yield f


def norm(name: str) -> str:
    return name.lower().replace("_", "-")


def values(req, name: str) -> list[str]:
    """Every value of a header, whatever its case or `_` spelling."""
    return [v for k, v in req.headers if norm(k) == norm(name)]


def joined(req, name: str) -> str:
    return ", ".join(values(req, name))


def test_an_untrusted_client_cannot_spoof_any_vouched_header(untrusting, raw):
    r = untrusting.request("GET", "/fw/x", SPOOFED, host="front.example")
    assert r.status == 200
    req = raw.requests[-1]
    assert b"6.6.6." not in req.raw_head
    assert b"evil" not in req.raw_head
    assert b"admin" not in req.raw_head
    assert values(req, "X-Real-IP") == []
    assert values(req, "Remote-User") == []


def test_for_an_untrusted_client_ferryman_writes_its_own_forwarded_values(untrusting, raw):
    assert untrusting.request("GET", "/fw/x", SPOOFED, host="front.example").status == 200
    req = raw.requests[-1]
    assert values(req, "X-Forwarded-For") == ["127.0.0.1"]
    assert values(req, "X-Forwarded-Host") == ["front.example"]
    assert values(req, "X-Forwarded-Proto") == ["http"]
    assert values(req, "X-Forwarded-Server") == ["front-1"]
    assert values(req, "X-Forwarded-Prefix") == ["/fw"]
    [fwd] = values(req, "Forwarded")
    assert fwd.startswith("for=")
    assert "for=127.0.0.1" in fwd or 'for="127.0.0.1"' in fwd
    assert "proto=http" in fwd
    assert "host=front.example" in fwd or 'host="front.example"' in fwd


def test_x_forwarded_port_is_the_port_the_client_connected_to(untrusting, raw):
    assert untrusting.request("GET", "/fw/x", host="front.example").status == 200
    assert values(raw.requests[-1], "X-Forwarded-Port") == [str(untrusting.port())]


def test_x_forwarded_host_keeps_the_port_of_the_clients_host(untrusting, raw):
    assert untrusting.request("GET", "/fw/x", host="front.example:8080").status == 200
    assert values(raw.requests[-1], "X-Forwarded-Host") == ["front.example:8080"]


def test_a_trusted_proxys_forwarded_for_chain_is_kept_and_the_peer_appended(trusting, raw):
    sent = [("X-Forwarded-For", "1.2.3.4, 10.0.0.1"), ("Forwarded", "for=1.2.3.4")]
    assert trusting.request("GET", "/fw/x", sent, host="front.example").status == 200
    req = raw.requests[-1]
    assert joined(req, "X-Forwarded-For") == "1.2.3.4, 10.0.0.1, 127.0.0.1"
    fwd = joined(req, "Forwarded")
    assert fwd.startswith("for=1.2.3.4")
    assert fwd.index("for=1.2.3.4") < fwd.index("127.0.0.1")


def test_a_trusted_proxys_host_proto_port_and_prefix_are_kept(trusting, raw):
    sent = [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Host", "www.example.com"),
            ("X-Forwarded-Proto", "https"), ("X-Forwarded-Port", "443"), ("X-Forwarded-Prefix", "/outer")]
    assert trusting.request("GET", "/fw/x", sent, host="inner.example").status == 200
    req = raw.requests[-1]
    assert values(req, "X-Forwarded-Host") == ["www.example.com"]
    assert values(req, "X-Forwarded-Proto") == ["https"]
    assert values(req, "X-Forwarded-Port") == ["443"]
    assert values(req, "X-Forwarded-Prefix") == ["/outer"]


def test_a_trusted_proxy_that_sent_no_forwarded_headers_gets_them_filled_in(trusting, raw):
    assert trusting.request("GET", "/fw/x", host="inner.example").status == 200
    req = raw.requests[-1]
    assert values(req, "X-Forwarded-For") == ["127.0.0.1"]
    assert values(req, "X-Forwarded-Host") == ["inner.example"]
    assert values(req, "X-Forwarded-Proto") == ["http"]
    assert values(req, "X-Forwarded-Prefix") == ["/fw"]


def test_remote_user_is_never_taken_from_a_client_even_a_trusted_proxy(trusting, raw):
    sent = [("Remote-User", "admin"), ("Remote_User", "admin"), ("REMOTE_USER", "admin"), ("X-Forwarded-For", "1.2.3.4")]
    assert trusting.request("GET", "/fw/x", sent).status == 200
    req = raw.requests[-1]
    assert values(req, "Remote-User") == []
    assert b"admin" not in req.raw_head


def test_a_listener_can_override_the_top_level_trusted_proxies(raw):
    toml = f"""
trusted_proxies = ["127.0.0.1"]

[[listener]]
name = "edge"
bind = "127.0.0.1:0"
trusted_proxies = []

[pool.raw]
members = [{{ url = "{raw.url('/m')}" }}]

[[route]]
path = "/fw"
pool = "raw"
"""
    with Ferryman(toml) as f:
        assert f.request("GET", "/fw/x", [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")]).status == 200
    req = raw.requests[-1]
    assert values(req, "X-Forwarded-For") == ["127.0.0.1"]
    assert values(req, "X-Forwarded-Proto") == ["http"]


def test_without_forwarded_enabled_no_forwarded_header_reaches_the_app(raw):
    with Ferryman(_toml(raw, "[]", forwarded=False)) as f:
        assert f.request("GET", "/fw/x", [("Forwarded", "for=6.6.6.6")]).status == 200
    req = raw.requests[-1]
    assert values(req, "Forwarded") == []
    assert values(req, "X-Forwarded-For") == ["127.0.0.1"]


def test_an_http10_request_without_host_is_served_without_x_forwarded_host(untrusting, raw):
    from tests.support import parse_responses, raw_request
    out = raw_request(untrusting.port(), b"GET /fw/old HTTP/1.0\r\n\r\n")
    [resp] = parse_responses(out)
    assert resp.status == 200
    req = raw.requests[-1]
    assert req.target == "/m/old"
    assert values(req, "X-Forwarded-Host") == []
    assert values(req, "X-Forwarded-For") == ["127.0.0.1"]


def test_gunicorn_sees_the_forwarded_values_in_its_environ(echo_a):
    toml = f"""
[[listener]]
name = "front"
bind = "127.0.0.1:0"
server_name = "front-1"

[pool.app]
members = [{{ url = "{echo_a.url('/webapps')}" }}]

[[route]]
path = "/public"
pool = "app"
"""
    with Ferryman(toml) as f:
        r = f.request("GET", "/public/echo", [("X-Forwarded-For", "6.6.6.6"), ("Remote-User", "admin")],
                      host="front.example")
    env = json.loads(r.body)["environ_http"]
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_HOST"] == "front.example"
    assert env["HTTP_X_FORWARDED_PREFIX"] == "/public"
    assert "HTTP_REMOTE_USER" not in env
