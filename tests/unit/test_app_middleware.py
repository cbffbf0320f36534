"""ferryman.wsgi and ferryman.asgi over plain environ dicts and ASGI scopes: what a believed request
becomes, and that spoofing from anywhere else changes nothing and leaves no vouched header behind.

Sources: PEP 3333 (environ keys; HTTP_ + upper case, "-" as "_"), the ASGI HTTP and WebSocket
connection scopes (client, server, scheme, root_path, path, raw_path, headers), and invariant 4 of
docs/request-safety.md (ferryman alone writes the headers it vouches for).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.asgi import ProxyHeadersMiddleware as AsgiMiddleware
from ferryman.asgi import apply_to_scope
from ferryman.core.forwarded import ForwardedFacts
from ferryman.core.signing import sign
from ferryman.proxyheaders import ProxyHeaders, load_keys
from ferryman.wsgi import ProxyHeadersMiddleware, apply_to_environ

KEY = b"s" * 32
FACTS = ForwardedFacts(client="203.0.113.7", host="www.example.com", scheme="https", port=443,
                       prefix="/public", user="alice", method="GET")

REMOTE_USER_ALIASES = ["HTTP_REMOTE_USER", "HTTP_REMOTE-USER", "HTTP_Remote_User", "HTTP_remote_user",
                       "HTTP_X_REMOTE_USER", "HTTP_X_FORWARDED_USER", "http_remote_user"]


def environ(peer: str = "127.0.0.1", **extra: str) -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/webapps", "PATH_INFO": "/x/",
                           "REMOTE_ADDR": peer, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "9001",
                           "HTTP_HOST": "127.0.0.1:9001", "wsgi.url_scheme": "http"}
    env.update(extra)
    return env


def forwarded_environ(peer: str = "127.0.0.1", **extra: str) -> dict[str, Any]:
    headers = dict(HTTP_X_FORWARDED_FOR="203.0.113.7", HTTP_X_FORWARDED_HOST="www.example.com",
                   HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_PORT="443",
                   HTTP_X_FORWARDED_PREFIX="/public", HTTP_REMOTE_USER="alice")
    headers.update(extra)
    return environ(peer, **headers)


def x_proxy() -> ProxyHeaders:
    return ProxyHeaders(["127.0.0.1", "10.0.0.0/8"])


def signed_proxy(**kw: Any) -> ProxyHeaders:
    return ProxyHeaders(signing_keys=[KEY], **kw)


def signature(facts: ForwardedFacts = FACTS, key: bytes = KEY, now: float | None = None, nonce: bytes = b"") -> str:
    import os
    import time
    return sign(key, facts, now=time.time() if now is None else now, nonce=nonce or os.urandom(12)).decode()


# -- WSGI: believed ------------------------------------------------------------------------------------

def test_a_trusted_request_gets_the_public_facts_in_the_environ() -> None:
    env = forwarded_environ()
    facts = apply_to_environ(x_proxy(), env)
    assert facts is not None
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["HTTP_HOST"] == "www.example.com" and env["SERVER_NAME"] == "www.example.com"
    assert env["wsgi.url_scheme"] == "https" and env["SERVER_PORT"] == "443"
    assert env["SCRIPT_NAME"] == "/public" and env["PATH_INFO"] == "/x/"
    assert env["REMOTE_USER"] == "alice" and env["HTTP_REMOTE_USER"] == "alice"
    assert env["ferryman.original"]["REMOTE_ADDR"] == "127.0.0.1"


def test_the_forwarded_headers_left_in_the_environ_are_one_consistent_copy() -> None:
    env = forwarded_environ(HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7", HTTP_X_REAL_IP="6.6.6.6",
                            HTTP_X_FORWARDED_SSL="off")
    apply_to_environ(x_proxy(), env)
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    assert "HTTP_X_REAL_IP" not in env and "HTTP_X_FORWARDED_SSL" not in env


def test_a_valid_signature_is_believed_without_any_trusted_proxy() -> None:
    env = environ("192.0.2.50", HTTP_FERRYMAN_SIGNATURE=signature())
    assert apply_to_environ(signed_proxy(), env) == FACTS
    assert env["REMOTE_ADDR"] == "203.0.113.7" and env["REMOTE_USER"] == "alice"
    assert "HTTP_FERRYMAN_SIGNATURE" not in env


def test_with_keys_unsigned_x_forwarded_headers_are_not_read_even_from_a_trusted_peer() -> None:
    proxy = ProxyHeaders(["127.0.0.1"], [KEY])
    env = forwarded_environ()
    assert apply_to_environ(proxy, env) is None
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_REMOTE_USER" not in env and "HTTP_X_FORWARDED_HOST" not in env


def test_with_keys_and_trusted_proxies_a_signature_from_elsewhere_is_refused() -> None:
    proxy = ProxyHeaders(["127.0.0.1"], [KEY])
    assert apply_to_environ(proxy, environ("192.0.2.50", HTTP_FERRYMAN_SIGNATURE=signature())) is None
    assert apply_to_environ(proxy, environ("127.0.0.1", HTTP_FERRYMAN_SIGNATURE=signature())) == FACTS


def test_rfc7239_forwarded_is_read_only_when_asked_and_then_x_forwarded_is_not() -> None:
    fwd = 'for=203.0.113.7;host=www.example.com;proto=https'
    plain = environ(HTTP_FORWARDED=fwd, HTTP_X_FORWARDED_HOST="evil.example")
    facts = apply_to_environ(x_proxy(), plain)
    assert facts is not None and facts.host == "evil.example" and facts.client == "127.0.0.1"
    told = environ(HTTP_FORWARDED=fwd, HTTP_X_FORWARDED_HOST="evil.example")
    facts = apply_to_environ(ProxyHeaders(["127.0.0.1"], forwarded=True), told)
    assert facts is not None and (facts.client, facts.host, facts.scheme) == ("203.0.113.7", "www.example.com",
                                                                              "https")


# -- WSGI: spoofing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("alias", REMOTE_USER_ALIASES)
def test_every_remote_user_alias_from_an_untrusted_peer_is_removed(alias: str) -> None:
    env = environ("192.0.2.50", **{alias: "admin"})
    assert apply_to_environ(x_proxy(), env) is None
    assert alias not in env and "REMOTE_USER" not in env
    assert not any("user" in k.lower() for k in env if k.upper().startswith("HTTP_"))


@pytest.mark.parametrize("alias", [a for a in REMOTE_USER_ALIASES if a != "HTTP_REMOTE_USER"])
def test_an_alias_spelling_is_never_believed_even_from_a_trusted_peer(alias: str) -> None:
    env = environ("127.0.0.1", **{alias: "admin"})
    facts = apply_to_environ(x_proxy(), env)
    assert facts is not None and facts.user is None
    assert "REMOTE_USER" not in env and alias not in env


def test_a_forged_chain_from_an_untrusted_peer_changes_nothing() -> None:
    env = forwarded_environ("192.0.2.50", HTTP_X_FORWARDED_FOR="10.0.0.1, 127.0.0.1")
    before = {k: v for k, v in env.items() if not k.upper().startswith("HTTP_") or k == "HTTP_HOST"}
    assert apply_to_environ(x_proxy(), env) is None
    assert {k: v for k, v in env.items() if k != "ferryman.facts"} == before
    assert env["ferryman.facts"] is None


@pytest.mark.parametrize("case", ["stale", "future", "unknown key", "other values", "other method", "garbage",
                                  "replayed"])
def test_a_bad_signature_is_untrusted_and_logged_once(case: str, caplog: pytest.LogCaptureFixture) -> None:
    import time
    proxy = signed_proxy()
    now = time.time()
    value = {
        "stale": signature(now=now - 120), "future": signature(now=now + 120),
        "unknown key": signature(key=b"u" * 32),
        "other values": signature().replace("user=alice", "user=admin"),
        "other method": signature(ForwardedFacts("1.2.3.4", "h", "http", 80, "", "x", "POST")),
        "garbage": "v1;\x00\xff;sig=", "replayed": signature(nonce=b"r" * 12),
    }[case]
    if case == "replayed":
        assert apply_to_environ(proxy, environ("192.0.2.50", HTTP_FERRYMAN_SIGNATURE=value)) is not None
    caplog.set_level(logging.WARNING, logger="ferryman.app")
    for _ in range(3):
        env = environ("192.0.2.50", HTTP_FERRYMAN_SIGNATURE=value, HTTP_REMOTE_USER="admin")
        assert apply_to_environ(proxy, env) is None
        assert env["REMOTE_ADDR"] == "192.0.2.50" and "HTTP_REMOTE_USER" not in env and "REMOTE_USER" not in env
    warnings = [r for r in caplog.records if r.name == "ferryman.app"]
    assert len(warnings) == 1 and "not trusted" in warnings[0].getMessage()


def test_the_middleware_never_answers_500_on_hostile_input() -> None:
    seen: list[dict[str, Any]] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(env)
        start_response("200 OK", [])
        return [b"ok"]

    mw = ProxyHeadersMiddleware(app, ["127.0.0.1"])
    env = environ(HTTP_X_FORWARDED_FOR="\udcff" * 10, HTTP_X_FORWARDED_PORT="99999999999999",
                  HTTP_X_FORWARDED_HOST="[::1", SERVER_PORT="junk")
    assert mw(env, lambda *a: None) == [b"ok"]
    assert seen[0]["REMOTE_ADDR"] == "127.0.0.1"


def test_without_trusted_proxies_or_keys_the_middleware_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="trusted_proxies and signing_keys are both empty"):
        ProxyHeadersMiddleware(lambda e, s: [], [])
    with pytest.raises(ValueError, match="both empty"):
        AsgiMiddleware(None, [])  # type: ignore[arg-type]


def test_keys_can_come_from_the_environment_or_a_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_TEST_KEY", "e" * 20 + "\n")
    (tmp_path / "k").write_text("f" * 20 + "\n")
    assert load_keys(["env:FM_TEST_KEY", f"file:{tmp_path / 'k'}", b"b" * 16]) == (b"e" * 20, b"f" * 20, b"b" * 16)
    with pytest.raises(ValueError, match="16 or more"):
        load_keys(["short"])
    with pytest.raises(ValueError, match="not set"):
        load_keys(["env:FM_TEST_MISSING"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PROTO",
                                        "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_REMOTE_USER",
                                        "HTTP_FORWARDED", "HTTP_FERRYMAN_SIGNATURE"]),
                       st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=60)),
       st.sampled_from(["127.0.0.1", "192.0.2.50"]))
def test_hostile_environs_never_raise_and_leave_only_well_formed_values(headers: dict[str, str], peer: str) -> None:
    env = environ(peer, **headers)
    facts = apply_to_environ(x_proxy(), env)
    assert env["wsgi.url_scheme"] in ("http", "https")
    assert env["SERVER_PORT"].isdigit()
    if peer == "192.0.2.50":
        assert facts is None and "HTTP_REMOTE_USER" not in env


# -- ASGI ----------------------------------------------------------------------------------------------

def scope(peer: str = "127.0.0.1", headers: list[tuple[bytes, bytes]] | None = None, kind: str = "http",
          root_path: str = "") -> dict[str, Any]:
    return {"type": kind, "method": "GET", "scheme": "ws" if kind == "websocket" else "http",
            "client": (peer, 50000), "server": ("127.0.0.1", 9001), "root_path": root_path,
            "path": root_path + "/x/", "raw_path": (root_path + "/x/").encode(),
            "headers": [(b"host", b"127.0.0.1:9001")] + (headers or [])}


FORWARDED = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-host", b"www.example.com"),
             (b"x-forwarded-proto", b"https"), (b"x-forwarded-port", b"443"), (b"x-forwarded-prefix", b"/public"),
             (b"remote-user", b"alice")]


def test_a_trusted_http_scope_gets_the_public_facts() -> None:
    out, facts = apply_to_scope(x_proxy(), scope(headers=FORWARDED, root_path="/webapps"))
    assert facts is not None
    assert out["client"] == ("203.0.113.7", 0) and out["server"] == ("www.example.com", 443)
    assert out["scheme"] == "https" and out["root_path"] == "/public"
    assert out["path"] == "/public/x/" and out["raw_path"] == b"/public/x/"
    headers = dict(out["headers"])
    assert headers[b"host"] == b"www.example.com" and headers[b"remote-user"] == b"alice"


def test_a_websocket_scope_gets_wss() -> None:
    out, facts = apply_to_scope(x_proxy(), scope(headers=FORWARDED, kind="websocket"))
    assert facts is not None and out["scheme"] == "wss"


@pytest.mark.parametrize("name", [b"remote-user", b"remote_user", b"x-remote-user", b"x-forwarded-user"])
def test_an_untrusted_scope_loses_every_remote_user_spelling_and_keeps_the_rest(name: bytes) -> None:
    original = scope("192.0.2.50", [(name, b"admin"), (b"x-forwarded-for", b"10.0.0.1"), (b"accept", b"*/*")])
    out, facts = apply_to_scope(x_proxy(), original)
    assert facts is None
    assert out["headers"] == [(b"host", b"127.0.0.1:9001"), (b"accept", b"*/*")]
    assert out["client"] == ("192.0.2.50", 50000) and out["scheme"] == "http"


def test_a_signed_scope_is_believed_and_a_forged_one_is_not() -> None:
    good = scope("192.0.2.50", [(b"ferryman-signature", signature().encode())])
    out, facts = apply_to_scope(signed_proxy(), good)
    assert facts == FACTS and out["client"][0] == "203.0.113.7"
    forged = scope("192.0.2.50", [(b"ferryman-signature", signature().replace("alice", "admin").encode()),
                                  (b"remote-user", b"admin")])
    out, facts = apply_to_scope(signed_proxy(), forged)
    assert facts is None and b"remote-user" not in dict(out["headers"])


def test_the_asgi_middleware_passes_lifespan_untouched_and_rewrites_http() -> None:
    got: list[dict[str, Any]] = []

    async def app(s: dict[str, Any], receive: Any, send: Any) -> None:
        got.append(s)

    mw = AsgiMiddleware(app, ["127.0.0.1"])
    life = {"type": "lifespan"}
    asyncio.run(mw(life, None, None))  # type: ignore[arg-type]
    asyncio.run(mw(scope(headers=FORWARDED), None, None))  # type: ignore[arg-type]
    assert got[0] is life
    assert got[1]["client"][0] == "203.0.113.7"


def test_mount_moves_the_member_path_into_script_name_for_every_request() -> None:
    env = environ(HTTP_X_FORWARDED_PREFIX="/public", SCRIPT_NAME="", PATH_INFO="/webapps/x/")
    apply_to_environ(x_proxy(), env, mount="/webapps")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/public", "/x/")
    direct = environ("192.0.2.50", SCRIPT_NAME="", PATH_INFO="/webapps/health/")
    apply_to_environ(x_proxy(), direct, mount="/webapps")
    assert (direct["SCRIPT_NAME"], direct["PATH_INFO"]) == ("/webapps", "/health/")
    elsewhere = environ(SCRIPT_NAME="", PATH_INFO="/webappsX/")
    apply_to_environ(x_proxy(), elsewhere, mount="/webapps")
    assert (elsewhere["SCRIPT_NAME"], elsewhere["PATH_INFO"]) == ("", "/webappsX/")


def test_asgi_mount_gives_the_member_path_as_root_path_then_the_prefix_replaces_it() -> None:
    s = scope(headers=[(b"x-forwarded-prefix", b"/public")])
    s["path"], s["raw_path"] = "/webapps/x/", b"/webapps/x/"
    out, _ = apply_to_scope(x_proxy(), s, mount="/webapps")
    assert (out["root_path"], out["path"], out["raw_path"]) == ("/public", "/public/x/", b"/public/x/")
    direct = scope("192.0.2.50")
    direct["path"] = "/webapps/health/"
    out, facts = apply_to_scope(x_proxy(), direct, mount="/webapps")
    assert facts is None and (out["root_path"], out["path"]) == ("/webapps", "/webapps/health/")


def test_a_server_port_of_non_ascii_digits_does_not_break_the_request() -> None:
    env = environ(SERVER_PORT="¹")
    assert apply_to_environ(x_proxy(), env) is not None
