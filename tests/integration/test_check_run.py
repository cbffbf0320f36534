"""`ferryman check` and `ferryman run` agree: what run would refuse, check refuses first, with the same
`file:line: key: message` lines and exit 2, never a traceback; warnings leave both running (exit 0); a port
taken by another process is one clear line from run, exit 1.

Expected behaviour: docs/configuration.md (listener bind, route auth, pool hash_on, sticky, route_cookie);
`ferryman --help` (exit status: 0 ok, 1 runtime failure such as a port in use, 2 invalid configuration).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, Ferryman, ferryman_check, free_port

pytestmark = pytest.mark.integration

HTPASSWD_OK = "demo:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"


def toml(binds: list[str], pool_options: str = "", route_options: str = "") -> str:
    listeners = "".join(f'[[listener]]\nname = "l{i}"\nbind = "{b}"\n\n' for i, b in enumerate(binds))
    return (f"{listeners}[pool.app]\n{pool_options}\nmembers = [{{ url = \"http://127.0.0.1:{free_port()}\", "
            f'route = "a" }}]\n\n[[route]]\npath = "/"\npool = "app"\n{route_options}\n')


def run_once(tmp_path: Path, config: str, files: dict[str, str] | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`ferryman run` on a configuration it must refuse: it exits by itself."""
    for name, content in (files or {}).items():
        (tmp_path / name).write_text(content)
    (tmp_path / "ferryman.toml").write_text(config)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "ferryman", "run", "-c", "ferryman.toml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def ipv6_port() -> int | None:
    """A free port on ::1, or None without IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            return s.getsockname()[1]
    except OSError:
        return None


def _bad_cases() -> list[tuple[str, str, dict[str, str], str]]:
    port = free_port()
    cases = [
        ("malformed-htpasswd", toml([f"127.0.0.1:{free_port()}"], route_options='auth = { htpasswd = "u.htpasswd" }'),
         {"u.htpasswd": HTPASSWD_OK + "alice\n"},
         "route[0].auth.htpasswd: u.htpasswd line 2: expected 'user:hash', found no ':'"),
        ("unsupported-hash", toml([f"127.0.0.1:{free_port()}"], route_options='auth = { htpasswd = "u.htpasswd" }'),
         {"u.htpasswd": HTPASSWD_OK + "bob:$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0\n"},
         "route[0].auth.htpasswd: u.htpasswd: ferryman cannot check the password of 'bob' (line 2: MD5-crypt $1$)"),
        ("ipv4-wildcard-and-loopback", toml([f"0.0.0.0:{port}", f"127.0.0.1:{port}"]), {},
         f"ferryman.toml:7: listener[1].bind: '127.0.0.1:{port}' collides with listener[0] (l0, '0.0.0.0:{port}', "
         f"line 3): 0.0.0.0 already takes port {port} on every IPv4 address"),
        ("hash-on-without-hash", toml([f"127.0.0.1:{free_port()}"], pool_options='hash_on = "client"'), {},
         'pool.app.hash_on: is set but lbmethod is "byrequests", which never hashes, so it would be ignored; '
         'add lbmethod = "hash" to pool app, or remove hash_on'),
    ]
    v6 = ipv6_port()
    if v6 is not None:
        cases.append(("ipv6-wildcard-and-loopback", toml([f"[::]:{v6}", f"[::1]:{v6}"]), {},
                      f"ferryman.toml:7: listener[1].bind: '[::1]:{v6}' collides with listener[0] (l0, '[::]:{v6}', "
                      f"line 3): :: already takes port {v6} on every IPv6 address"))
    return cases


BAD = _bad_cases()


@pytest.mark.parametrize(("config", "files", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_check_refuses_what_run_would_trip_over_and_run_refuses_it_the_same_way(
        tmp_path: Path, config: str, files: dict[str, str], expected: str) -> None:
    check = ferryman_check(config, files)
    assert check.returncode == 2, check.stdout + check.stderr
    assert expected in check.stderr
    assert "Traceback" not in check.stderr
    run = run_once(tmp_path, config, files)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    problem_lines = [ln for ln in check.stderr.splitlines() if ln.startswith("ferryman.toml:")]
    assert problem_lines and problem_lines == [ln for ln in run.stderr.splitlines() if ln.startswith("ferryman.toml:")]
    assert "nothing started" in run.stderr and "listening on" not in run.stderr


def test_a_sticky_django_cookie_without_route_cookie_warns_in_check_and_run_and_both_go_on() -> None:
    config = toml(["127.0.0.1:0"], pool_options='sticky = "sessionid"')
    warning = ("ferryman.toml:6: pool.app.sticky: warning: Django's sessionid values never end in \".<route>\", so "
               "requests of pool app never stick to a member; add route_cookie = {} to pool app")
    check = ferryman_check(config)
    assert check.returncode == 0, check.stderr
    assert warning in check.stderr
    assert "configuration is valid with 1 warning(s)" in check.stdout
    with Ferryman(config) as f:
        shifted = warning.replace("toml:6:", f"toml:{6 + f.line_shift}:")
        assert any(shifted in line for line in f.error_log_lines())
        assert f.running()
    fixed = ferryman_check(config.replace('sticky = "sessionid"', 'sticky = "sessionid"\nroute_cookie = {}'))
    assert fixed.returncode == 0 and "warning" not in fixed.stderr


def test_a_port_taken_by_another_process_is_one_clear_line_naming_listener_and_address(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = toml(["127.0.0.1:0", f"127.0.0.1:{port}"])
        assert ferryman_check(config).returncode == 0  # a port in use now may be free when run starts
        run = run_once(tmp_path, config)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    errors = [ln for ln in run.stderr.splitlines() if "[ERROR]" in ln]
    assert len(errors) == 1, run.stderr
    assert errors[0].endswith(
        f"ferryman: ferryman.toml:7: listener l1 cannot listen on 127.0.0.1:{port}: the address is already in use "
        "(another process, or another ferryman, listens there); stop it, or give listener l1 another port; "
        "nothing started")
    assert "listening on" not in run.stderr.replace("listens there", "")
