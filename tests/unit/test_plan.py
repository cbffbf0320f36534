"""ferryman.plan: compile_plan finds what `run` would trip over (htpasswd, TLS files, colliding listeners,
settings that only work together), reports each with its file, line and fix, turns traps into warnings,
and the plan it builds is immutable and drives the runtime."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from ferryman.config.loader import load_config, load_config_text
from ferryman.errors import ConfigError
from ferryman.plan import Plan, compile_plan
from ferryman.server.runtime import build_runtime

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "tests" / "fixtures" / "config" / "seed"

BASE = """\
[[listener]]
name = "http"
bind = "127.0.0.1:8080"

[pool.app]
members = [{ url = "http://127.0.0.1:9001", route = "a" }]

[[route]]
path = "/"
pool = "app"
"""


def compile_text(tmp_path: Path, text: str, files: dict[str, str | bytes] | None = None) -> Plan:
    for name, content in (files or {}).items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    path = tmp_path / "f.toml"
    path.write_text(text)
    return compile_plan(load_config(path))


def problems(tmp_path: Path, text: str, files: dict[str, str | bytes] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        compile_text(tmp_path, text, files)
    prefix = str(tmp_path / "f.toml")
    return [str(i).replace(prefix, "f.toml") for i in err.value.issues]


def warnings(plan: Plan, tmp_path: Path) -> list[str]:
    return [str(w).replace(str(tmp_path / "f.toml"), "f.toml") for w in plan.warnings]


def with_auth(htpasswd: str) -> tuple[str, dict[str, str | bytes]]:
    return BASE + 'auth = { htpasswd = "users.htpasswd" }\n', {"users.htpasswd": htpasswd}


# -- htpasswd ---------------------------------------------------------------------------------------

def test_a_malformed_htpasswd_line_is_refused_with_its_line_and_the_fix(tmp_path: Path) -> None:
    text, files = with_auth("# users\nalice\n")
    assert problems(tmp_path, text, files) == [
        "f.toml:11: route[0].auth.htpasswd: users.htpasswd line 2: expected 'user:hash', found no ':'; write one "
        "user:hash per line, as htpasswd -B (bcrypt), -m (APR1 MD5) or -s (SHA) writes them"]


def test_an_htpasswd_user_listed_twice_is_refused(tmp_path: Path) -> None:
    text, files = with_auth("demo:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\ndemo:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    [issue] = problems(tmp_path, text, files)
    assert "users.htpasswd line 2: user 'demo' is already defined on line 1" in issue


@pytest.mark.parametrize(("stored", "kind"), [
    ("$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0", "MD5-crypt $1$"),
    ("$6$salt$" + "a" * 86, "SHA-512-crypt $6$"),
    ("rl3Pa.Ze1CQu2", "DES crypt, or plain text"),
    ("secret", "plain text or an unknown scheme"),
])
def test_an_htpasswd_hash_ferryman_cannot_check_is_refused_naming_the_user_and_line(
        tmp_path: Path, stored: str, kind: str) -> None:
    text, files = with_auth(f"demo:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n\nbob:{stored}\n")
    assert problems(tmp_path, text, files) == [
        f"f.toml:11: route[0].auth.htpasswd: users.htpasswd: ferryman cannot check the password of 'bob' (line 3: "
        f"{kind}); re-create it with htpasswd -B (bcrypt), -m (APR1 MD5) or -s (SHA)"]


def test_the_hash_itself_is_never_repeated_in_the_message(tmp_path: Path) -> None:
    text, files = with_auth("bob:plaintext-password\n")
    assert "plaintext-password" not in "\n".join(problems(tmp_path, text, files))


def test_an_htpasswd_without_users_is_a_warning(tmp_path: Path) -> None:
    text, files = with_auth("# nobody yet\n")
    plan = compile_text(tmp_path, text, files)
    assert warnings(plan, tmp_path) == [
        "f.toml:11: route[0].auth.htpasswd: warning: users.htpasswd has no users, so every request on this route "
        "gets 401; add users with htpasswd -B"]


def test_the_plan_holds_the_parsed_table_read_once(tmp_path: Path) -> None:
    text = BASE + 'auth = { htpasswd = "users.htpasswd", realm = "r" }\n\n[[route]]\npath = "/b"\npool = "app"\n' \
        'auth = { htpasswd = "users.htpasswd" }\n'
    plan = compile_text(tmp_path, text, {"users.htpasswd": (SEED / "users.htpasswd").read_text()})
    first, second = plan.routes
    assert first.auth is not None and second.auth is not None
    assert dict(first.auth.users) == {"demo": (SEED / "users.htpasswd").read_text().split(":", 1)[1].strip()}
    assert first.auth.users is second.auth.users
    assert first.auth.challenge == b'Basic realm="r", charset="UTF-8"'
    (tmp_path / "users.htpasswd").unlink()  # the runtime never reads the file again
    pools, listeners = build_runtime(plan)
    assert listeners[0].router.match("http", b"/b/x") is not None


# -- listeners --------------------------------------------------------------------------------------

def two_listeners(first: str, second: str) -> str:
    return BASE.replace('bind = "127.0.0.1:8080"\n', f'bind = "{first}"\n\n[[listener]]\nname = "other"\n'
                        f'bind = "{second}"\n')


@pytest.mark.parametrize(("first", "second", "why"), [
    ("0.0.0.0:8080", "127.0.0.1:8080", "0.0.0.0 already takes port 8080 on every IPv4 address"),
    ("127.0.0.1:8080", "0.0.0.0:8080", "0.0.0.0 already takes port 8080 on every IPv4 address"),
    ("[::]:8080", "[::1]:8080", ":: already takes port 8080 on every IPv6 address"),
    ("[::1]:8080", "[::]:8080", ":: already takes port 8080 on every IPv6 address"),
    ("localhost:8080", "127.0.0.1:8080", "both would listen on 127.0.0.1 port 8080"),
])
def test_listeners_that_could_not_both_listen_are_refused_naming_both(
        tmp_path: Path, first: str, second: str, why: str) -> None:
    assert problems(tmp_path, two_listeners(first, second)) == [
        f"f.toml:7: listener[1].bind: '{second}' collides with listener[0] (http, '{first}', line 3): {why}, so "
        "ferryman could not listen on both; give one of them another port, or keep only the wildcard listener"]


@pytest.mark.parametrize(("first", "second"), [
    ("0.0.0.0:8080", "[::]:8080"),          # IPv6 sockets are IPv6-only: both bind
    ("127.0.0.1:8080", "127.0.0.2:8080"),
    ("0.0.0.0:8080", "127.0.0.1:8081"),
    ("127.0.0.1:0", "0.0.0.0:0"),           # port 0: each gets its own port
])
def test_listeners_that_can_both_listen_are_accepted(tmp_path: Path, first: str, second: str) -> None:
    plan = compile_text(tmp_path, two_listeners(first, second))
    assert [lst.bind for lst in plan.listeners] == [first, second]


def test_a_listener_host_that_does_not_resolve_is_refused(tmp_path: Path) -> None:
    [issue] = problems(tmp_path, BASE.replace("127.0.0.1:8080", "no-such-host.invalid:8080"))
    assert issue.startswith("f.toml:3: listener[0].bind: host 'no-such-host.invalid' does not resolve (")
    assert issue.endswith('); write an IP address, such as "127.0.0.1:8080", or a name this machine resolves')


# -- TLS ---------------------------------------------------------------------------------------------

def tls_listener(cert: str, key: str) -> str:
    return BASE.replace('bind = "127.0.0.1:8080"\n', f'bind = "127.0.0.1:8443"\ntls = {{ cert = "{cert}", '
                        f'key = "{key}" }}\n')


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    shutil.copytree(SEED / "certs", tmp_path / "certs")
    assert problems(tmp_path, tls_listener("certs/ca.pem", "certs/front-key.pem")) == [
        "f.toml:4: listener[0].tls.key: front-key.pem is not the private key of ca.pem; write the key that belongs "
        "to this certificate"]


def test_files_that_are_not_pem_are_refused_before_run_would_load_them(tmp_path: Path) -> None:
    shutil.copytree(SEED / "certs", tmp_path / "certs")
    (tmp_path / "certs" / "junk.pem").write_text("not a certificate\n")
    assert problems(tmp_path, tls_listener("certs/junk.pem", "certs/front-key.pem")) == [
        "f.toml:4: listener[0].tls.cert: junk.pem holds no PEM certificate; write the PEM certificate chain, "
        "leaf first"]
    assert problems(tmp_path, tls_listener("certs/front.pem", "certs/junk.pem")) == [
        "f.toml:4: listener[0].tls.key: junk.pem holds no PEM private key; write the PEM private key of front.pem"]
    text = BASE.replace("http://127.0.0.1:9001", "https://127.0.0.1:9001").replace(
        "[pool.app]\n", '[pool.app]\ntls = { ca = "certs/junk.pem" }\n')
    assert problems(tmp_path, text) == [
        f"f.toml:6: pool.app.tls.ca: {tmp_path}/certs/junk.pem holds no PEM certificate; write a PEM file of CA "
        "certificates (-----BEGIN CERTIFICATE-----)"]


def test_the_plan_holds_loaded_tls_contexts(tmp_path: Path) -> None:
    plan = compile_plan(load_config(SEED / "ferryman.toml"))
    http, https = plan.listeners
    assert http.ssl_context is None and https.ssl_context is not None
    assert plan.pools["django-http"].client_tls is None
    assert plan.pools["django-https"].client_tls is not None
    assert [m.server_hostname for m in plan.pools["django-https"].members] == ["127.0.0.1", "127.0.0.1"]


def test_backend_tls_on_a_pool_without_https_members_is_a_warning(tmp_path: Path) -> None:
    plan = compile_text(tmp_path, BASE.replace("[pool.app]\n", "[pool.app]\ntls = { verify = false }\n"))
    assert warnings(plan, tmp_path) == [
        "f.toml:6: pool.app.tls: warning: no member of pool app is https://, so this table is unused; remove tls, "
        "or write the members' URLs with https://"]


# -- settings that only work together -----------------------------------------------------------------

def test_hash_on_without_lbmethod_hash_is_refused_with_the_fix(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE.replace("[pool.app]\n", '[pool.app]\nhash_on = "client"\n')) == [
        'f.toml:6: pool.app.hash_on: is set but lbmethod is "byrequests", which never hashes, so it would be '
        'ignored; add lbmethod = "hash" to pool app, or remove hash_on']


def test_lbmethod_hash_without_hash_on_is_a_warning(tmp_path: Path) -> None:
    plan = compile_text(tmp_path, BASE.replace("[pool.app]\n", '[pool.app]\nlbmethod = "hash"\n'))
    assert warnings(plan, tmp_path) == [
        'f.toml:6: pool.app.lbmethod: warning: "hash" without hash_on has no key to hash, so every request is '
        'balanced by request count; add hash_on = "client", "cookie:NAME" or "header:NAME"']
    with_key = BASE.replace("[pool.app]\n", '[pool.app]\nlbmethod = "hash"\nhash_on = "header:X-User"\n')
    plan = compile_text(tmp_path, with_key)
    assert (plan.warnings, plan.pools["app"].hash_kind, plan.pools["app"].hash_name) == ((), "header", b"x-user")


@pytest.mark.parametrize("sticky", ["sessionid", "csrftoken", "sessionid|sid"])
def test_sticky_on_a_django_cookie_without_route_cookie_warns_naming_the_pool_and_the_fix(
        tmp_path: Path, sticky: str) -> None:
    plan = compile_text(tmp_path, BASE.replace("[pool.app]\n", f'[pool.app]\nsticky = "{sticky}"\n'))
    cookie = sticky.partition("|")[0]
    assert warnings(plan, tmp_path) == [
        f"f.toml:6: pool.app.sticky: warning: Django's {cookie} values never end in \".<route>\", so requests of "
        "pool app never stick to a member; add route_cookie = {} to pool app (ferryman then sets and reads its "
        "own route cookie)"]


@pytest.mark.parametrize("extra", ['sticky = "sessionid"\nroute_cookie = {}', 'sticky = "JSESSIONID|jsessionid"',
                                   'sticky = "ROUTEID"'])
def test_sticky_that_can_stick_has_no_warning(tmp_path: Path, extra: str) -> None:
    assert compile_text(tmp_path, BASE.replace("[pool.app]\n", f"[pool.app]\n{extra}\n")).warnings == ()


def test_sticky_with_no_member_route_warns_that_nothing_can_stick(tmp_path: Path) -> None:
    text = BASE.replace('[pool.app]\n', '[pool.app]\nroute_cookie = {}\n').replace(', route = "a"', "")
    assert warnings(compile_text(tmp_path, text), tmp_path) == [
        "f.toml:6: pool.app.route_cookie: warning: no member of pool app has a route, so no request can stick to "
        'one; give each member a route, such as route = "http-1"']


def test_samesite_none_without_secure_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("[pool.app]\n", '[pool.app]\nroute_cookie = { samesite = "None", secure = false }\n')
    assert problems(tmp_path, text) == [
        'f.toml:6: pool.app.route_cookie.secure: is false with samesite = "None", which browsers drop; set '
        'secure = true, or samesite = "Lax"']


def test_two_members_with_one_url_are_refused(tmp_path: Path) -> None:
    text = BASE.replace('route = "a" }', 'route = "a" },\n  { url = "http://127.0.0.1:9001", route = "b" }')
    assert problems(tmp_path, text) == [
        "f.toml:7: pool.app.members[1].url: 'http://127.0.0.1:9001' is already members[0]; each member of a pool "
        "needs its own URL (its state is kept by URL)"]


def test_a_log_file_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "access.log"
    text = BASE.replace('bind = "127.0.0.1:8080"\n', f'bind = "127.0.0.1:8080"\naccess_log.path = "{missing}"\n')
    assert problems(tmp_path, text) == [
        f"f.toml:4: listener[0].access_log.path: '{missing}' is in a directory that does not exist "
        f"({missing.parent}); create it, or write another path"]


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    text = two_listeners("0.0.0.0:8080", "127.0.0.1:8080").replace(
        "[pool.app]\n", '[pool.app]\nhash_on = "client"\n') + 'auth = { htpasswd = "users.htpasswd" }\n'
    found = problems(tmp_path, text, {"users.htpasswd": "nocolon\n"})
    assert [line.split(": ", 2)[:2] for line in found] == [
        ["f.toml:7", "listener[1].bind"], ["f.toml:10", "pool.app.hash_on"], ["f.toml:16", "route[0].auth.htpasswd"]]


# -- the plan itself ---------------------------------------------------------------------------------

def test_the_plan_is_immutable_and_reads_unchanged_settings_through(tmp_path: Path) -> None:
    plan = compile_plan(load_config(SEED / "ferryman.toml"))
    pool = plan.pools["django-http"]
    member = pool.members[1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        member.weight = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.pools["x"] = pool  # type: ignore[index]
    assert (member.name, member.weight, member.host_header, member.path) == \
        ("http://127.0.0.1:9002/webapps", 2, b"127.0.0.1:9002", "/webapps")
    assert (pool.response_timeout, pool.keepalive, pool.max_tries) == (60.0, 128, 2)  # read through, resolved
    assert pool.sticky_spec is not None and pool.sticky_spec.cookie == "sessionid"
    assert [r.prefix for r in plan.routes] == [b"/webapps", b"/webapps", b"/public"]
    assert plan.listener("https").routes == (1, 2)
    assert plan.router.match("https", b"/webapps/x") == (b"/webapps", plan.routes[1])


def test_runtime_state_is_built_apart_from_the_plan_and_keyed_by_member_name(tmp_path: Path) -> None:
    plan = compile_plan(load_config(SEED / "ferryman.toml"))
    first, _ = build_runtime(plan)
    second, _ = build_runtime(plan)
    a, b = first["django-http"].members[0], second["django-http"].members[0]
    a.lbstatus = 7
    a.requests = 3
    assert (b.lbstatus, b.requests) == (0, 0)  # two runtimes, one plan: no shared state
    assert plan.pools["django-http"].members[0].name == a.name == b.name


def test_a_config_that_was_not_loaded_from_a_file_still_compiles() -> None:
    config = load_config_text(BASE, "inline.toml", ROOT)
    assert compile_plan(config).source == "inline.toml"
