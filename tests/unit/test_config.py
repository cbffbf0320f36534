"""ferryman.config: the classic deployment (fixtures/config/seed) loads as written, defaults, every class
of error with its exact text and line, the line locator (property-tested), the summary and the generated
reference."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.config.docs import CLASSIC_EXAMPLE, render_markdown
from ferryman.config.loader import TomlLines, load_config, load_config_text
from ferryman.config.schema import Config
from ferryman.config.summary import summarize
from ferryman.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "config"
SEED = FIXTURES / "seed"
BAD = FIXTURES / "bad"

MINIMAL = """\
[[listener]]
name = "http"
bind = "127.0.0.1:8080"

[pool.app]
members = [{ url = "http://127.0.0.1:9001" }]

[[route]]
path = "/"
pool = "app"
"""


def problems(name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The printed issues of the bad fixture `name`, loaded by its bare file name."""
    monkeypatch.chdir(BAD)
    with pytest.raises(ConfigError) as err:
        load_config(name)
    assert str(err.value) == "\n".join(str(i) for i in err.value.issues)
    return [str(i) for i in err.value.issues]


# -- the classic deployment ---------------------------------------------------------------------------

def test_the_classic_deployment_fixture_is_the_example_the_docs_show() -> None:
    assert (SEED / "ferryman.toml").read_text() == CLASSIC_EXAMPLE


def test_the_classic_deployment_loads_with_every_value_as_written() -> None:
    config = load_config(SEED / "ferryman.toml")

    http, https = config.listener
    assert (http.name, http.bind, http.host, http.port, http.tls, http.tls_certs) == \
        ("http", "127.0.0.1:8080", "127.0.0.1", 8080, None, [])
    assert (https.name, https.host, https.port) == ("https", "127.0.0.1", 8443)
    [cert] = https.tls_certs
    assert cert is https.tls
    assert cert.cert == SEED / "certs" / "front.pem" and cert.key == SEED / "certs" / "front-key.pem"
    assert cert.cert.is_absolute() and cert.names is None

    assert list(config.pool) == ["django-http", "django-https"]
    plain = config.pool["django-http"]
    assert (plain.lbmethod, plain.sticky, plain.retry, plain.tls) == ("byrequests", "sessionid", 60.0, None)
    assert [(m.url, m.route, m.weight, m.status, m.scheme, m.host, m.port, m.path) for m in plain.members] == [
        ("http://127.0.0.1:9001/webapps", "http-1", 1, "enabled", "http", "127.0.0.1", 9001, "/webapps"),
        ("http://127.0.0.1:9002/webapps", "http-2", 2, "enabled", "http", "127.0.0.1", 9002, "/webapps"),
    ]
    tls = config.pool["django-https"]
    assert (tls.lbmethod, tls.sticky) == ("byrequests", "sessionid")
    assert tls.tls is not None and tls.tls.ca == SEED / "certs" / "ca.pem" and tls.tls.verify is True
    assert [(m.scheme, m.port, m.route) for m in tls.members] == [("https", 9443, "https-1"), ("https", 9444, "https-2")]

    r_http, r_https, r_public = config.route
    assert (r_http.listener, r_http.listeners, r_http.path, r_http.pool, r_http.auth) == \
        ("http", ("http",), "/webapps", "django-http", None)
    assert (r_https.listeners, r_https.pool) == (("https",), "django-https")
    assert r_https.auth is not None
    assert (r_https.auth.htpasswd, r_https.auth.realm, r_https.auth.trusted_header) == \
        (SEED / "users.htpasswd", "webapps", None)
    assert (r_public.listener, r_public.listeners, r_public.path, r_public.pool) == (None, None, "/public", "django-http")
    assert r_public.cookie_domain == {"app1.internal": "www.example.com"}


def test_defaults_fill_everything_left_out() -> None:
    config = load_config_text(MINIMAL, "ferryman.toml", ROOT)
    assert (config.trusted_proxies, config.shutdown_timeout) == ((), 30.0)
    assert (config.log.level, config.log.path, config.log.format) == ("info", "-", "text")
    assert (config.limits.max_request_line, config.limits.max_header_size, config.limits.max_headers,
            config.limits.max_body_size) == (8192, 32768, 100, 1024**3)
    [lst] = config.listener
    assert (lst.tls, lst.trusted_proxies, lst.server_name, lst.forwarded) == (None, None, None, False)
    assert (lst.access_log.format, lst.access_log.path) == ("combined", "-")
    assert (lst.header_timeout, lst.keepalive_timeout, lst.body_timeout, lst.max_connections) == \
        (10.0, 5.0, 60.0, 10000)
    pool = config.pool["app"]
    assert (pool.lbmethod, pool.sticky, pool.retry, pool.tls, pool.route_cookie) == \
        ("byrequests", None, 60.0, None, None)
    assert (pool.connect_timeout, pool.response_timeout, pool.read_timeout, pool.keepalive,
            pool.keepalive_timeout) == (5.0, 60.0, 60.0, 128, 60.0)
    [member] = pool.members
    assert (member.route, member.weight, member.status, member.lbset) == (None, 1, "enabled", 0)
    assert (member.port, member.path) == (9001, "")
    [route] = config.route
    assert (route.listeners, route.preserve_host, route.reverse, route.cookie_path, route.cookie_domain,
            route.encoded_slashes, route.auth) == (None, False, True, True, {}, "refuse", None)


def test_optional_tables_take_their_own_defaults() -> None:
    text = MINIMAL.replace('[pool.app]\n', '[pool.app]\nroute_cookie = {}\ntls = { verify = false }\n')
    text = 'trusted_proxies = ["10.0.0.0/8", "::1"]\n' + text.replace(
        'bind = "127.0.0.1:8080"\n', 'bind = "[::1]:0"\ntls = [{ cert = "seed/certs/front.pem", '
        'key = "seed/certs/front-key.pem", names = ["a.example"] }, { cert = "seed/certs/front.pem", '
        'key = "seed/certs/front-key.pem" }]\n')
    config = load_config_text(text, "ferryman.toml", FIXTURES)
    assert config.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1"))
    [lst] = config.listener
    assert (lst.host, lst.port) == ("::1", 0)
    assert [c.names for c in lst.tls_certs] == [("a.example",), None]
    cookie = config.pool["app"].route_cookie
    assert cookie is not None
    assert (cookie.name, cookie.samesite, cookie.httponly, cookie.secure, cookie.max_age) == \
        (None, "Lax", True, None, None)
    assert config.pool["app"].tls is not None and config.pool["app"].tls.verify is False


@pytest.mark.parametrize(("url", "scheme", "host", "port", "path"), [
    ("http://app", "http", "app", 80, ""),
    ("https://App.Internal/", "https", "app.internal", 443, ""),
    ("http://[::1]:8000/a/b/", "http", "::1", 8000, "/a/b"),
])
def test_member_url_parts(url: str, scheme: str, host: str, port: int, path: str) -> None:
    config = load_config_text(MINIMAL.replace("http://127.0.0.1:9001", url), "f.toml", ROOT)
    member = config.pool["app"].members[0]
    assert (member.url, member.scheme, member.host, member.port, member.path) == (url, scheme, host, port, path)


def test_route_paths_are_normalised_and_listener_lists_kept() -> None:
    text = MINIMAL.replace('path = "/"', 'path = "/webapps/"\nlistener = ["http"]')
    [route] = load_config_text(text, "f.toml", ROOT).route
    assert (route.path, route.listener, route.listeners) == ("/webapps", ("http",), ("http",))


def test_models_are_frozen() -> None:
    config = load_config_text(MINIMAL, "f.toml", ROOT)
    with pytest.raises(Exception):
        config.listener[0].bind = "0.0.0.0:1"  # type: ignore[misc]


def test_validating_a_config_directly_runs_the_cross_checks_too() -> None:
    with pytest.raises(Exception, match="route\\[0\\].pool: no pool named 'nope'"):
        Config.model_validate({"listener": [{"name": "a", "bind": "127.0.0.1:1"}],
                               "pool": {"app": {"members": [{"url": "http://x"}]}},
                               "route": [{"path": "/", "pool": "nope"}]})


# -- one test per class of error ----------------------------------------------------------------------

def test_toml_syntax_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("syntax.toml", monkeypatch) == [
        "syntax.toml:9: TOML syntax error: Expected '=' after a key in a key/value pair (column 6)"]


def test_unknown_key_with_a_hint_or_the_valid_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("unknown_key.toml", monkeypatch) == [
        "unknown_key.toml:3: listener[0].bnd: unknown key; did you mean 'bind'?",
        "unknown_key.toml:11: route[0].mystery: unknown key; valid keys are listener, path, pool, static, static_max_age, "
            "preserve_host, "
        "reverse, cookie_path, cookie_domain, encoded_slashes, auth, websocket, tunnel_idle_timeout, max_body_size, request_buffer",
    ]


def test_missing_key_points_at_its_table(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("missing_key.toml", monkeypatch) == [
        'missing_key.toml:1: listener[0].bind: missing; the address to listen on, such as "127.0.0.1:8080"']


def test_missing_top_level_tables_have_no_line() -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text("", "f.toml", ROOT)
    assert [str(i) for i in err.value.issues] == [
        'f.toml: listener: missing; at least one [[listener]] with name and bind, such as name = "http", '
        'bind = "127.0.0.1:8080"',
        "f.toml: pool: missing; at least one [pool.NAME] table with members",
        'f.toml: route: missing; at least one [[route]] with path and pool, such as path = "/", pool = "app"',
    ]


def test_bad_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("bad_url.toml", monkeypatch) == [
        "bad_url.toml:8: pool.django-http.members[1].url: 'htp://x' is not an http(s) URL"]


def test_bad_port(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("bad_port.toml", monkeypatch) == [
        "bad_port.toml:7: pool.app.members[0].url: 'http://x:99999' has port 99999; ports are 0-65535"]


def test_bare_number_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("bare_duration.toml", monkeypatch) == [
        'bare_duration.toml:6: pool.app.retry: 60 is a bare number; write a duration string such as "60s"']


def test_bad_enum_lists_the_valid_values(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("bad_enum.toml", monkeypatch) == [
        "bad_enum.toml:6: pool.app.lbmethod: 'fast' is not a balancing method; "
        "use one of byrequests, bybusyness, bytraffic, p2c, hash"]


def test_unknown_pool_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("unknown_pool.toml", monkeypatch) == [
        "unknown_pool.toml:13: route[0].pool: no pool named 'django-htp'; did you mean 'django-http'?",
        "unknown_pool.toml:17: route[1].pool: no pool named 'elsewhere'; defined pools: django-http, django-https",
    ]


def test_unknown_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("unknown_listener.toml", monkeypatch) == [
        "unknown_listener.toml:13: route[0].listener: no listener named 'htp'; did you mean 'http'?",
        "unknown_listener.toml:18: route[1].listener[1]: no listener named 'admin'; did you mean 'https-admin'?",
    ]


def test_duplicate_listener_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("duplicate_listener.toml", monkeypatch) == [
        "duplicate_listener.toml:6: listener[1].name: 'http' is already the name of listener[0]; "
        "listener names must be unique"]


def test_duplicate_route_in_a_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("duplicate_member_route.toml", monkeypatch) == [
        "duplicate_member_route.toml:8: pool.django-http.members[1].route: 'http-1' already used by members[0]; "
        "routes must be unique in a pool"]


def test_duplicate_listener_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("duplicate_route.toml", monkeypatch) == [
        "duplicate_route.toml:23: route[2].path: '/webapps/' on listener 'http' is already routed by route[0]; "
        "each (listener, path) must be unique"]


def test_missing_cert_file_names_the_resolved_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("missing_cert.toml", monkeypatch) == [
        f"missing_cert.toml:4: listener[0].tls.cert: 'certs/missing.pem' does not exist (looked for "
        f"{BAD}/certs/missing.pem); paths are relative to the configuration file's directory",
        f"missing_cert.toml:4: listener[0].tls.key: 'certs/missing-key.pem' does not exist (looked for "
        f"{BAD}/certs/missing-key.pem); paths are relative to the configuration file's directory",
    ]


def test_several_errors_are_reported_at_once_each_on_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems("many_errors.toml", monkeypatch) == [
        'many_errors.toml:1: shutdown_timeout: 30 is a bare number; write a duration string such as "30s"',
        "many_errors.toml:5: listener[0].bind: '8080' has no host; write host:port, such as \"0.0.0.0:8080\" "
        '(every address) or "127.0.0.1:8080"',
        "many_errors.toml:8: pool.django-http.lbmethod: 'roundrobin' is not a balancing method; "
        "use one of byrequests, bybusyness, bytraffic, p2c, hash",
        "many_errors.toml:11: pool.django-http.members[1].weight: 1000 is out of range; "
        "a weight (Apache loadfactor) is 1-100",
        "many_errors.toml:15: route[0].path: 'webapps' does not start with \"/\"; write a path such as \"/webapps\"",
        "many_errors.toml:20: route[1].pool: no pool named 'django-htps'; did you mean 'django-http'?",
    ]


@pytest.mark.parametrize(("old", "new", "message"), [
    ('bind = "127.0.0.1:8080"', 'bind = "::1:8080"',
     "listener[0].bind: '::1:8080' looks like an IPv6 address; write it in brackets; write host:port, such as "
     '"127.0.0.1:8080", "0.0.0.0:8080" or "[::1]:8080"'),
    ('name = "http"', 'name = "my listener"',
     "listener[0].name: 'my listener' is not a valid listener name; use letters, digits, '_', '.' and '-'"),
    ('url = "http://127.0.0.1:9001"', 'url = "http://u@h:1/?q"',
     "pool.app.members[0].url: 'http://u@h:1/?q' has user info; a member URL is http(s)://host[:port][/path]"),
    ('url = "http://127.0.0.1:9001"', 'url = "http://127.0.0.1:9001", weight = "2"',
     "pool.app.members[0].weight: '2' is not a whole number; write one without quotes, such as 1"),
    ('url = "http://127.0.0.1:9001"', 'url = "http://127.0.0.1:9001", route = "a b"',
     "pool.app.members[0].route: 'a b' contains whitespace, ';', ',' or '='; a route is a short name such as "
     "\"http-1\" (no whitespace, ';', ',' or '=')"),
    ('pool = "app"', 'pool = "app"\npreserve_host = "yes"',
     "route[0].preserve_host: 'yes' is not true or false; write true or false without quotes"),
    ('pool = "app"', 'pool = "app"\nauth = "users.htpasswd"',
     "route[0].auth: 'users.htpasswd' is not a table; write { htpasswd = ... }"),
    ('[pool.app]', '[pool.app]\nmembers = []\n[pool.other]',
     'pool.app.members: empty; the backends, such as members = [{ url = "http://127.0.0.1:9001" }]'),
    ('[pool.app]', '[pool.other]\nretry = "1s"\n[pool.app]',
     'pool.other.members: missing; the backends, such as members = [{ url = "http://127.0.0.1:9001" }]'),
    ('[pool.app]', '[pool.app]\nsticky = "a b"',
     "pool.app.sticky: 'a b' is not a stickysession name; write \"NAME\" or \"COOKIE|PARAM\", such as "
     "\"sessionid\" or \"JSESSIONID|jsessionid\""),
    ('[pool.app]', '[pool.app]\nconnect_timeout = "0s"',
     "pool.app.connect_timeout: '0s' is zero; write a positive duration such as \"5s\""),
    ('[[listener]]', '[limits]\nmax_body_size = 1024\n[[listener]]',
     'limits.max_body_size: 1024 is a bare number; write a size string such as "1KiB"'),
    ('[[listener]]', 'trusted_proxies = ["10.0.0.1/8"]\n[[listener]]',
     "trusted_proxies[0]: '10.0.0.1/8' has host bits set; write the network address \"10.0.0.0/8\""),
    ('[pool.app]', '[pool."my app"]',
     "pool.\"my app\": 'my app' is not a valid pool name; use letters, digits, '_', '.' and '-'"),
])
def test_other_errors_say_what_would_be_valid(old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text(MINIMAL.replace(old, new, 1), "f.toml", ROOT)
    assert message in [f"{i.key}: {i.message}" for i in err.value.issues]


def test_wrong_shapes_of_tables_and_arrays() -> None:
    text = '[listener]\nname = "http"\n\n[pool.app]\nmembers = { url = "http://x" }\n\n[[route]]\npath = "/"\npool = "app"\n'
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "f.toml", ROOT)
    assert [str(i) for i in err.value.issues] == [
        "f.toml:1: listener: a table is not a list; write [[listener]] tables, one per listener",
        "f.toml:5: pool.app.members: a table is not a list; write [ ... ] with one item or more",
    ]


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_bytes(b'# ok\n# caf\xe9\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}:2: not UTF-8 text; save the file as UTF-8"


# -- the line locator ---------------------------------------------------------------------------------

def test_toml_lines_follows_headers_arrays_and_inline_tables() -> None:
    text = """\
top = 1  # comment with [brackets] and {braces}
s = '''
multi = "not a key"
'''
[[a]]
x = "a string with # and ]"
[[a.b]]
y = 1
[[a.b]]
y = 2
[[a]]
[[a.b]]
"quoted.key" = { k = [1,
  2], 'lit' = "}" }
[t]
arr = [
  { u = 1 },   # first
  { u = 2 },
]
d.e.f = true
"""
    lines = TomlLines(text).lines
    assert lines[("top",)] == 1 and lines[("s",)] == 2 and ("multi",) not in lines
    assert lines[("a", 0)] == 5 and lines[("a", 0, "x")] == 6
    assert lines[("a", 0, "b", 0, "y")] == 8 and lines[("a", 0, "b", 1, "y")] == 10
    assert lines[("a", 1)] == 11 and lines[("a", 1, "b", 0)] == 12
    assert lines[("a", 1, "b", 0, "quoted.key", "k", 1)] == 14
    assert lines[("a", 1, "b", 0, "quoted.key", "lit")] == 14
    assert lines[("t", "arr", 0, "u")] == 17 and lines[("t", "arr", 1)] == 18
    assert lines[("t", "d", "e", "f")] == 20 and lines[("t", "d")] == 20
    assert TomlLines(text).line_of(("t", "arr", 1, "missing")) == 18
    assert TomlLines(text).line_of(("nowhere",)) is None


@dataclass
class _Doc:
    """A configuration being written line by line, remembering where each injectable value is."""

    lines: list[str] = field(default_factory=list)
    sites: dict[str, tuple[int, str]] = field(default_factory=dict)

    def add(self, line: str, site: str | None = None, key: str = "") -> None:
        self.lines.append(line)
        if site is not None:
            self.sites[site] = (len(self.lines), key)


_BAD_VALUES = {
    "bind": ('"127.0.0.1:99999"', "has port 99999; ports are 0-65535"),
    "timeout": ("10", 'is a bare number; write a duration string such as "10s"'),
    "lbmethod": ('"fast"', "is not a balancing method"),
    "url": ('"htp://x"', "is not an http(s) URL"),
    "weight": ("0", "is out of range"),
    "pool": ('"nope"', "no pool named 'nope'"),
    "path": ('"nopath"', 'does not start with "/"'),
    "extra": ('"x"', "unknown key"),
}


@st.composite
def _configs(draw: st.DrawFn) -> tuple[str, str, int, str, str]:
    """(text, key path, line, expected message part, site) of a config with one bad value somewhere."""
    n_listeners = draw(st.integers(1, 3))
    pools = [draw(st.integers(1, 3)) for _ in range(draw(st.integers(1, 3)))]
    n_routes = draw(st.integers(1, 3))
    styles = [draw(st.sampled_from(["inline", "multiline", "aot"])) for _ in pools]
    filler = st.lists(st.sampled_from(["", "# a comment = [with] {brackets}", "   ", "\t# tab"]), max_size=2)
    sites = [f"listener{i}.{k}" for i in range(n_listeners) for k in ("bind", "timeout", "extra")]
    sites += [f"pool{p}.lbmethod" for p in range(len(pools))]
    sites += [f"pool{p}.member{m}.{k}" for p, n in enumerate(pools) for m in range(n) for k in ("url", "weight")]
    sites += [f"route{r}.{k}" for r in range(n_routes) for k in ("pool", "path")]
    bad = draw(st.sampled_from(sites))

    def value(site: str, good: str) -> str:
        return _BAD_VALUES[site.rsplit(".", 1)[1]][0] if site == bad else good

    doc = _Doc()
    doc.add('trusted_proxies = [')
    doc.add('  "10.0.0.0/8",   # private')
    doc.add('  "::1",')
    doc.add(']')
    for i in range(n_listeners):
        for line in draw(filler):
            doc.add(line)
        doc.add("[[listener]]  # a listener")
        doc.add(f'name = "l{i}"')
        doc.add(f"bind = {value(f'listener{i}.bind', f'{chr(34)}127.0.0.1:{8000 + i}{chr(34)}')}",
                f"listener{i}.bind", f"listener[{i}].bind")
        doc.add(f"header_timeout = {value(f'listener{i}.timeout', chr(34) + '10s' + chr(34))}",
                f"listener{i}.timeout", f"listener[{i}].header_timeout")
        doc.add('access_log.path = "access # [1] {x}.log"')
        if bad == f"listener{i}.extra":
            doc.add('bnd = "x"', bad, f"listener[{i}].bnd")
    for p, (n_members, style) in enumerate(zip(pools, styles)):
        for line in draw(filler):
            doc.add(line)
        doc.add(f"[pool.p{p}]")
        doc.add(f"lbmethod = {value(f'pool{p}.lbmethod', chr(34) + 'byrequests' + chr(34))}",
                f"pool{p}.lbmethod", f"pool.p{p}.lbmethod")

        def member(m: int) -> tuple[str, str]:
            url = value(f"pool{p}.member{m}.url", f'"http://127.0.0.1:{9000 + m}/app"')
            return url, value(f"pool{p}.member{m}.weight", "1")

        def site(m: int, key: str, lineno: int) -> None:
            doc.sites[f"pool{p}.member{m}.{key}"] = (lineno, f"pool.p{p}.members[{m}].{key}")

        if style == "inline":
            cells = [f'{{ url = {u}, route = "m{m}", weight = {w} }}' for m, (u, w) in map(lambda m: (m, member(m)),
                                                                                        range(n_members))]
            doc.add(f"members = [{', '.join(cells)}]")
            for m in range(n_members):
                site(m, "url", len(doc.lines))
                site(m, "weight", len(doc.lines))
        elif style == "multiline":
            doc.add("members = [   # the backends")
            for m in range(n_members):
                u, w = member(m)
                doc.add(f'  {{ url = {u}, route = "m{m}", weight = {w} }},  # m{m}')
                site(m, "url", len(doc.lines))
                site(m, "weight", len(doc.lines))
            doc.add("]")
        else:
            for m in range(n_members):
                u, w = member(m)
                doc.add(f"[[pool.p{p}.members]]")
                doc.add(f"url = {u}")
                site(m, "url", len(doc.lines))
                doc.add(f'route = "m{m}"')
                doc.add(f"weight = {w}")
                site(m, "weight", len(doc.lines))
    for r in range(n_routes):
        for line in draw(filler):
            doc.add(line)
        doc.add("[[route]]")
        doc.add(f"path = {value(f'route{r}.path', chr(34) + f'/r{r}' + chr(34))}", f"route{r}.path", f"route[{r}].path")
        doc.add(f"pool = {value(f'route{r}.pool', chr(34) + f'p{r % len(pools)}' + chr(34))}",
                f"route{r}.pool", f"route[{r}].pool")
        doc.add(f"[route.cookie_domain]   # a sub-table of route[{r}]")
        doc.add(f'"internal{r}.example" = """multi-line "quoted" value, ] }} # not a comment')
        doc.add('"""')
    line, key = doc.sites[bad]
    return "\n".join(doc.lines) + "\n", key, line, _BAD_VALUES[bad.rsplit(".", 1)[1]][1], bad


@settings(max_examples=200, deadline=None)
@given(_configs())
def test_the_reported_line_is_where_the_bad_value_is_written(case: tuple[str, str, int, str, str]) -> None:
    text, key, line, message, _ = case
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "f.toml", ROOT)
    [issue] = err.value.issues
    assert (issue.line, issue.key) == (line, key), text
    assert message in issue.message


@settings(max_examples=25, deadline=None)
@given(_configs())
def test_the_generated_configs_are_valid_without_the_bad_value(case: tuple[str, str, int, str, str]) -> None:
    text, _, line, _, site = case
    kind = site.rsplit(".", 1)[1]
    lines = text.split("\n")
    bad, _ = _BAD_VALUES[kind]
    if kind == "extra":
        del lines[line - 1]
    else:
        name, good = {"bind": ("bind", '"127.0.0.1:1"'), "timeout": ("header_timeout", '"1s"'),
                      "lbmethod": ("lbmethod", '"p2c"'), "url": ("url", '"http://h"'), "weight": ("weight", "3"),
                      "pool": ("pool", '"p0"'), "path": ("path", '"/ok"')}[kind]
        assert f"{name} = {bad}" in lines[line - 1]
        lines[line - 1] = lines[line - 1].replace(f"{name} = {bad}", f"{name} = {good}", 1)
    try:
        load_config_text("\n".join(lines), "f.toml", ROOT)
    except ConfigError as e:  # a fixed path may now collide with another route's; nothing else may fail
        assert all("each (listener, path) must be unique" in i.message for i in e.issues), str(e)


# -- summary and docs ---------------------------------------------------------------------------------

def test_summary_of_the_classic_deployment() -> None:
    assert summarize(load_config(SEED / "ferryman.toml")) == """\
listeners:
  http   127.0.0.1:8080  http
  https  127.0.0.1:8443  https (front.pem)
routes:
  http              /webapps  ->  django-http
  https             /webapps  ->  django-https  auth: users.htpasswd realm "webapps"
  (every listener)  /public   ->  django-http   cookie_domain app1.internal -> www.example.com
pools:
  django-http: lbmethod=byrequests sticky=sessionid retry=60s
    http://127.0.0.1:9001/webapps  route=http-1  weight=1  enabled
    http://127.0.0.1:9002/webapps  route=http-2  weight=2  enabled
  django-https: lbmethod=byrequests sticky=sessionid retry=60s tls: ca=ca.pem
    https://127.0.0.1:9443/webapps  route=https-1  weight=1  enabled
    https://127.0.0.1:9444/webapps  route=https-2  weight=1  enabled"""


def test_docs_configuration_md_is_generated_from_the_schema() -> None:
    """Regenerate with: python -m ferryman.config.docs > docs/configuration.md"""
    assert (ROOT / "docs" / "configuration.md").read_text() == render_markdown()


def test_docs_name_every_key_with_a_description() -> None:
    docs = render_markdown()
    for key in ("listener[].bind", "pool.NAME.members[].weight", "route[].cookie_domain", "limits.max_body_size",
                "pool.NAME.route_cookie.samesite", "listener[].tls.names", "route[].auth.htpasswd"):
        assert f"| `{key}` |" in docs
    assert "BalancerMember loadfactor=" in docs and "ProxyPassReverseCookieDomain" in docs
