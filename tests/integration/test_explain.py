"""Explaining member choice: the `ferryman explain` command (route matched, normalised and mapped path, sticky
route and where it was read, member chosen and why, exit status 0/1/2) and, on live requests, the
ferryman-explain response header and the access log's pool/member/route/decision fields.

Expected behaviour: `python -m ferryman explain --help`; docs/configuration.md (listener explain_header);
the decision reasons of the access log: sticky, balanced, hashed, failover, hot-standby, no-member,
sticky-nofailover.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import REPO, Ferryman, Response, refused_port, wait_until

pytestmark = pytest.mark.integration

CONFIG = """
[[listener]]
name = "http"
bind = "127.0.0.1:8080"

[[listener]]
name = "admin"
bind = "127.0.0.1:8081"

[pool.django-http]
sticky = "sessionid"
route_cookie = {}
members = [
  { url = "http://127.0.0.1:9001/webapps", route = "http-1" },
  { url = "http://127.0.0.1:9002/webapps", route = "http-2" },
  { url = "http://127.0.0.1:9003/webapps", route = "http-3", status = "hot-standby" },
]

[pool.strict]
sticky = "sessionid"
nofailover = true
members = [
  { url = "http://127.0.0.1:9011/app", route = "s-1" },
  { url = "http://127.0.0.1:9012/app", route = "s-2" },
]

[pool.off]
members = [ { url = "http://127.0.0.1:9021", status = "disabled" } ]

[pool.users]
lbmethod = "hash"
hash_on = "header:X-User"
members = [ { url = "http://127.0.0.1:9031/u" }, { url = "http://127.0.0.1:9032/u" } ]

[[route]]
path = "/public"
pool = "django-http"

[[route]]
path = "/strict"
pool = "strict"

[[route]]
path = "/off"
pool = "off"

[[route]]
listener = "admin"
path = "/users"
pool = "users"
"""


@pytest.fixture(scope="module")
def conf(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "ferryman.toml"
    path.write_text(CONFIG)
    return path


def explain(conf, request: str, *args: str) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "ferryman", "explain", "-c", str(conf), request, *args],
                          capture_output=True, text=True, timeout=60, env=env)


def fields(out: str) -> dict[str, str]:
    """`key:   value` lines of the report as a dict."""
    report = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            report[key.strip()] = value.strip()
    return report


# -- the command ----------------------------------------------------------------------------------------


def test_explain_names_the_route_the_mapped_path_and_a_balanced_member_with_the_cookie_it_would_set(conf):
    run = explain(conf, "GET /public/a/../x?y=1")
    assert run.returncode == 0, run.stderr
    report = fields(run.stdout)
    assert report["request"] == "GET /public/a/../x?y=1 on listener http"
    assert report["normalised"] == "/public/x"
    assert report["route"] == "/public -> pool django-http (lbmethod byrequests)"
    assert report["sticky"] == "sessionid: no route in the request"
    assert report["decision"] == "no route -> member http://127.0.0.1:9001/webapps (balanced)"
    assert report["mapped path"] == "/public/x -> /webapps/x?y=1"
    assert report["backend"] == "http://127.0.0.1:9001/webapps/x?y=1"
    assert report["route cookie"] == "sets ferryman_route_django-http=.http-1 (Path=/public)"


@pytest.mark.parametrize("request_line,args,source,route", [
    ("GET /public/x", ["--cookie", "csrftoken=t; sessionid=abc.http-2"], "cookie", "http-2"),
    ("GET /public/x?sessionid=abc.http-2", [], "url", "http-2"),
    ("GET /public/x;sessionid=abc.http-2", ["--cookie", "sessionid=abc.http-1"], "url", "http-2"),
    ("GET /public/x", ["--cookie", "ferryman_route_django-http=.http-2"], "route cookie", "http-2"),
    ("GET /public/x", ["--cookie", "sessionid=abc.http-3"], "cookie", "http-3"),
], ids=["cookie", "query", "path-parameter-beats-cookie", "route-cookie", "hot-standby-by-route"])
def test_explain_says_where_the_sticky_route_was_read_and_sends_it_to_its_member(
        conf, request_line, args, source, route):
    run = explain(conf, request_line, *args)
    assert run.returncode == 0, run.stderr
    report = fields(run.stdout)
    assert report["sticky"] == f'sessionid: route "{route}" from the {source}'
    url = f"http://127.0.0.1:900{route[-1]}/webapps"
    standby = " (a hot standby)" if route == "http-3" else ""
    assert report["decision"] == f"sticky route {route} -> member {url}{standby} (sticky)"
    assert "route cookie" not in report  # already pinned to the member that serves it


@pytest.mark.parametrize("cookie", ["sessionid=abc.http-9", "sessionid=abc.HTTP-2",
                                    "sessionid=" + "a" * 300 + ".http-2", "sessionid=abc"])
def test_explain_balances_a_request_whose_route_is_unknown_or_malformed(conf, cookie):
    run = explain(conf, "GET /public/x", "--cookie", cookie)
    assert run.returncode == 0, run.stderr
    decision = fields(run.stdout)["decision"]
    assert decision.endswith("-> member http://127.0.0.1:9001/webapps (balanced)"), decision
    assert decision.startswith("sticky route http-9 unknown" if "http-9" in cookie
                               else "sticky route HTTP-2 unknown" if "HTTP-2" in cookie else "no route")


@pytest.mark.parametrize("down", ["http-2", "http://127.0.0.1:9002/webapps"], ids=["by-route", "by-url"])
def test_explain_with_down_shows_the_failover_and_the_route_cookie_it_would_reissue(conf, down):
    run = explain(conf, "GET /public/x", "--cookie", "sessionid=abc.http-2", "--down", down)
    assert run.returncode == 0, run.stderr
    report = fields(run.stdout)
    assert report["decision"] == "sticky route http-2 unusable -> member http://127.0.0.1:9001/webapps (failover)"
    assert report["route cookie"] == "sets ferryman_route_django-http=.http-1 (Path=/public)"


def test_explain_with_every_primary_down_chooses_the_hot_standby(conf):
    run = explain(conf, "GET /public/x", "--down", "http-1", "--down", "http-2")
    assert run.returncode == 0, run.stderr
    assert fields(run.stdout)["decision"] == "no route -> member http://127.0.0.1:9003/webapps (hot-standby)"


def test_explain_with_nofailover_and_the_routes_member_down_says_503_and_exits_1(conf):
    run = explain(conf, "GET /strict/x", "--cookie", "sessionid=a.s-2", "--down", "s-2")
    assert run.returncode == 1, run.stdout + run.stderr
    report = fields(run.stdout)
    assert report["decision"] == "sticky route s-2 unusable -> no member (sticky-nofailover)"
    assert report["answer"] == "503: no usable member"
    assert "mapped path" not in report


def test_explain_of_a_pool_with_no_usable_member_says_503_and_exits_1(conf):
    run = explain(conf, "GET /off/x")
    assert run.returncode == 1
    report = fields(run.stdout)
    assert report["decision"] == "no route -> no member (no-member)"
    assert report["answer"] == "503: no usable member"


@pytest.mark.parametrize("request_line,args,expected", [
    ("GET /elsewhere", [], ("route", "none matches: ferryman answers 404")),
    ("GET /users/x", [], ("route", "none matches: ferryman answers 404")),  # /users is on listener admin only
    ("GET /public/%2Fx", [], ("refused", "404: path contains an encoded slash (%2F) (never forwarded)")),
])
def test_explain_of_a_request_that_no_member_would_see_exits_1(conf, request_line, args, expected):
    run = explain(conf, request_line, *args)
    assert run.returncode == 1, run.stdout + run.stderr
    assert fields(run.stdout)[expected[0]] == expected[1]


def test_explain_on_another_listener_uses_that_listeners_routes_and_hashes_on_the_header(conf):
    first = explain(conf, "GET /users/me", "--listener", "admin", "--header", "X-User: alice")
    assert first.returncode == 0, first.stderr
    report = fields(first.stdout)
    assert report["request"] == "GET /users/me on listener admin"
    assert report["route"] == "/users -> pool users (lbmethod hash)"
    assert report["decision"].endswith("(hashed)")
    again = explain(conf, "GET /users/other", "--listener", "admin", "--header", "X-User: alice")
    assert fields(again.stdout)["decision"] == report["decision"]  # the same user, the same member


@pytest.mark.parametrize("argv", [
    ["nonsense"],
    ["GET"],
    ["GET /public/x", "--listener", "nope"],
], ids=["no-target", "method-only", "unknown-listener"])
def test_explain_exits_2_on_bad_usage(conf, argv):
    run = explain(conf, *argv)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr or run.stdout


def test_explain_exits_2_on_a_missing_or_invalid_configuration(tmp_path):
    missing = explain(tmp_path / "absent.toml", "GET /x")
    assert missing.returncode == 2 and "absent.toml" in missing.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[listener]]\nname = "http"\nbind = "127.0.0.1:8080"\n\n[pool.p]\nretry = 60\n'
                   'members = [ { url = "http://127.0.0.1:9001" } ]\n\n[[route]]\npath = "/"\npool = "p"\n')
    invalid = explain(bad, "GET /x")
    assert invalid.returncode == 2
    assert "pool.p.retry" in invalid.stderr


# -- the live header and the access log -----------------------------------------------------------------


@pytest.fixture(scope="module")
def live(echo_a, echo_b):
    dead = f"http://127.0.0.1:{refused_port()}/webapps"
    dead2 = f"http://127.0.0.1:{refused_port()}/webapps"
    dead3 = f"http://127.0.0.1:{refused_port()}/webapps"
    a, b = echo_a.url("/webapps"), echo_b.url("/webapps")
    toml = f"""
[[listener]]
name = "http"
bind = "127.0.0.1:0"
explain_header = true

[[listener]]
name = "quiet"
bind = "127.0.0.1:0"

[pool.web]
sticky = "sessionid"
retry = "60s"
members = [
  {{ url = "{a}", route = "r1" }},
  {{ url = "{b}", route = "r2" }},
  {{ url = "{dead}", route = "r3" }},
]

[pool.backup]
retry = "60s"
members = [ {{ url = "{dead}/", route = "p" }}, {{ url = "{b}", route = "s", status = "hot-standby" }} ]

[pool.off]
members = [ {{ url = "{a}", status = "disabled" }} ]

[pool.dead]
sticky = "sessionid"
route_cookie = {{}}
retry = "60s"
members = [ {{ url = "{dead}", route = "d1" }}, {{ url = "{dead2}", route = "d2" }} ]

[pool.marker]
members = [ {{ url = "{dead3}", ignore_errors = true }} ]

[[route]]
path = "/webapps"
pool = "web"

[[route]]
path = "/dead"
pool = "dead"

[[route]]
path = "/marker"
pool = "marker"

[[route]]
listener = "quiet"
path = "/keep"
pool = "web"
encoded_slashes = "keep"

[[route]]
path = "/backup"
pool = "backup"

[[route]]
path = "/off"
pool = "off"
"""
    with Ferryman(toml) as f:
        yield f


def get(f: Ferryman, target: str, cookie: str | None = None, listener: str = "http") -> Response:
    return f.request("GET", target, headers={"Cookie": cookie} if cookie else None, listener=listener)


def test_the_explain_header_on_a_sticky_request_names_pool_route_member_and_reason(live, echo_b):
    r = get(live, "/webapps/echo", "sessionid=abc.r2")
    assert r.status == 200
    assert r.header("ferryman-explain") == f"pool=web; sticky route r2 -> member {echo_b.url('/webapps')} (sticky)"
    live.wait_for_access_log(lambda ln: '"GET /webapps/echo HTTP/1.1" 200' in ln
                             and f"pool=web member={echo_b.url('/webapps')} route=r2 decision=sticky time=" in ln)


def test_the_explain_header_says_balanced_for_no_route_and_for_an_unknown_route(live, echo_a, echo_b):
    members = {echo_a.url("/webapps"), echo_b.url("/webapps")}
    for cookie, head in [(None, "no route"), ("sessionid=abc.r9", "sticky route r9 unknown")]:
        r = get(live, "/webapps/echo", cookie)
        explained = r.header("ferryman-explain")
        prefix = f"pool=web; {head} -> member "
        assert explained.startswith(prefix) and explained.endswith(" (balanced)"), explained
        assert explained[len(prefix):-len(" (balanced)")] in members
        assert r.header("x-member") in explained  # the member named is the one that answered


def test_the_explain_header_says_failover_when_the_routes_member_is_down(live, echo_a, echo_b):
    for _ in range(2):  # the first meets the refusal, the second finds r3 already in error
        r = get(live, "/webapps/echo", "sessionid=abc.r3")
        assert r.status == 200
        explained = r.header("ferryman-explain")
        assert explained.startswith("pool=web; sticky route r3 unusable -> member ")
        assert explained.endswith(" (failover)")
        assert r.header("x-member") in explained


def test_the_explain_header_says_hot_standby_when_only_the_standby_is_usable(live, echo_b):
    for _ in range(2):
        r = get(live, "/backup/echo")
        assert r.status == 200
        assert r.header("ferryman-explain") == f"pool=backup; no route -> member {echo_b.url('/webapps')} (hot-standby)"


def test_every_proxied_response_carries_the_header_whatever_its_status(live):
    for target in ["/webapps/status/404", "/webapps/status/503", "/webapps/status/204", "/webapps/nothing-here"]:
        r = get(live, target, "sessionid=abc.r1")
        assert r.header("ferryman-explain", "").endswith("(sticky)"), (target, r.status, r.headers)


def test_a_listener_without_explain_header_sends_no_such_header(live):
    r = get(live, "/webapps/echo", "sessionid=abc.r1", listener="quiet")
    assert r.status == 200 and not r.has_header("ferryman-explain")


def test_a_pool_with_no_usable_member_answers_503_and_logs_decision_no_member(live):
    r = get(live, "/off/echo")
    assert r.status == 503
    live.wait_for_access_log(lambda ln: '"GET /off/echo HTTP/1.1" 503' in ln
                             and "pool=off member=- route=- decision=no-member time=" in ln)


def test_the_command_and_the_live_header_agree_on_the_same_configuration(live, echo_a, echo_b):
    cases = [
        ("GET /webapps/echo", "sessionid=abc.r1", "/webapps/echo"),
        ("GET /webapps/echo?sessionid=abc.r2", None, "/webapps/echo?sessionid=abc.r2"),
        ("GET /webapps/echo", "sessionid=abc.r2; sessionid=abc.r1", "/webapps/echo"),
    ]
    for request_line, cookie, target in cases:
        run = explain(live.config_path, request_line, *(["--cookie", cookie] if cookie else []))
        assert run.returncode == 0, run.stderr
        header = get(live, target, cookie).header("ferryman-explain")
        assert header == "pool=web; " + fields(run.stdout)["decision"], (request_line, cookie)


# -- the command and live traffic agree where ferryman answers itself ------------------------------------


@pytest.mark.parametrize("cookie", [None, "sessionid=abc.d2"], ids=["balanced", "sticky"])
def test_with_every_member_down_the_command_answers_503_after_the_tries_a_live_request_makes(live, cookie):
    dead = live.config_toml.split("[pool.dead]")[1].split("[pool.marker]")[0]
    d1, d2 = (part.split('"')[0] for part in dead.split('url = "')[1:])
    run = explain(live.config_path, "GET /dead/x", *(["--cookie", cookie] if cookie else []),
                  "--down", "d1", "--down", "d2")
    assert run.returncode == 1, run.stdout + run.stderr
    report = fields(run.stdout)
    assert report["recovery"] == "every member is in error: all are tried anyway (Apache force recovery)"
    tried = [ln for ln in run.stdout.splitlines() if ln.startswith("tried:")]
    # force recovery lets one member be tried; once it refused, the others are still in error: 503
    assert len(tried) == 1 and tried[0].endswith(": connection refused (--down); member in error"), run.stdout
    if cookie:
        assert f"sticky route d2 -> member {d2} (sticky)" in tried[0]
    assert report["decision"].endswith("-> no member (no-member)")
    assert report["answer"] == "503: no usable member"

    def refusals(pool: str = "dead") -> list[str]:
        return [ln for ln in live.error_log_lines() if f"pool {pool} member " in ln and "failed to connect" in ln]

    def settle() -> None:
        """Every error-log line written so far has been read: the marker pool's member (never put in
        error) refuses each request, and its line comes after all earlier ones."""
        seen = len(refusals("marker"))
        assert get(live, "/marker/x").status == 503
        wait_until(lambda: len(refusals("marker")) > seen)

    assert get(live, "/dead/x").status == 503  # live learns that both are down...
    settle()
    assert {m for ln in refusals() for m in (d1, d2) if f"member {m} " in ln} == {d1, d2}
    before = len(refusals())
    r = get(live, "/dead/x", cookie)  # ...and then makes the tries the command described
    assert r.status == 503
    settle()
    assert len(refusals()) == before + len(tried)
    live.wait_for_access_log(lambda ln: '"GET /dead/x HTTP/1.1" 503' in ln and "decision=no-member" in ln)
    if cookie:
        assert f"member {d2} (route d2)" in refusals()[-1]


def test_with_every_member_in_error_but_answering_force_recovery_serves_and_the_command_says_so(conf):
    run = explain(conf, "GET /strict/x", "--cookie", "sessionid=a.s-2", "--in-error", "s-1", "--in-error", "s-2")
    assert run.returncode == 0, run.stdout + run.stderr
    report = fields(run.stdout)
    assert report["recovery"] == "every member is in error: all are tried anyway (Apache force recovery)"
    assert report["decision"] == "sticky route s-2 -> member http://127.0.0.1:9012/app (sticky)"
    assert "tried" not in report
    bad = explain(conf, "GET /strict/x", "--in-error", "s-9")
    assert bad.returncode == 2 and "--in-error 's-9' names no member" in bad.stderr


def _live_outcome(r: Response) -> str:
    return "forwarded" if r.has_header("x-member") else str(r.status)


def _explained_outcome(run: subprocess.CompletedProcess[str]) -> str:
    report = fields(run.stdout)
    if run.returncode == 0:
        return "forwarded"
    if "refused" in report:
        return report["refused"].split(":")[0]
    assert report["route"] == "none matches: ferryman answers 404", run.stdout
    return "404"


@pytest.mark.parametrize("listener,target", [
    ("http", "/webapps/a%2Fb"),            # encoded slash: refused, even though another listener keeps them
    ("http", "/webapps/a%00b"),
    ("http", "/webapps/a%5Cb"),
    ("http", "/webapps/a\\b"),
    ("http", "/webapps/../../etc/passwd"),  # climbs above /
    ("http", "/webapps/%2e%2E/%2e%2e/x"),
    ("http", "/webapps/..;/x"),
    ("http", "/webapps/%zz"),
    ("http", "/nothing/here"),
    ("http", "/webapps/a/./b/../../echo"),
    ("http", "/webapps//echo"),
    ("http", "/webapps/%252e%252e/echo"),   # double-encoded dots are data
    ("http", "/keep/a%2Fb"),                # /keep is a route of the other listener only
    ("quiet", "/keep/a%2Fb"),               # kept encoded on the route that opts in
    ("quiet", "/webapps/a%2Fb"),            # but not on another route of that listener
    ("quiet", "/keep/..%2Fx"),
])
def test_the_command_refuses_or_forwards_a_path_exactly_as_live_traffic_does(live, listener, target):
    run = explain(live.config_path, f"GET {target}", "--listener", listener)
    assert run.returncode in (0, 1), run.stdout + run.stderr
    r = get(live, target, "sessionid=abc.r1", listener=listener)
    assert _explained_outcome(run) == _live_outcome(r), (run.stdout, r.status, r.headers)
    if run.returncode == 0 and r.header("content-type") == "application/json":  # the echo app shows the path
        assert r.json()["raw_uri"] == fields(run.stdout)["mapped path"].split(" -> ")[1]
