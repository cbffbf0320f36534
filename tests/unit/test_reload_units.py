"""The pure pieces of configuration reload: pid file paths, and runtime objects rebuilt with members kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman import pidfile
from ferryman.config.loader import load_config_text
from ferryman.plan import compile_plan
from ferryman.server.reload import match_listeners, signature, watched_files
from ferryman.server.runtime import build_runtime


def test_the_default_pid_file_is_per_configuration_and_under_xdg_runtime_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    a, b = tmp_path / "a" / "ferryman.toml", tmp_path / "b" / "ferryman.toml"
    pa, pb = pidfile.default_pid_path(a), pidfile.default_pid_path(b)
    assert pa != pb
    assert pa.parent == tmp_path / "ferryman" and pa.name.startswith("ferryman-") and pa.suffix == ".pid"


def test_without_xdg_runtime_dir_the_pid_file_goes_to_a_per_user_temp_directory(tmp_path: Path, monkeypatch) -> None:
    import os
    import tempfile

    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert pidfile.default_pid_path(tmp_path / "f.toml").parent == \
        Path(tempfile.gettempdir()) / f"ferryman-{os.getuid()}"


def test_a_relative_pid_file_is_relative_to_the_configuration_directory(tmp_path: Path) -> None:
    assert pidfile.pid_path("run/f.pid", tmp_path / "etc" / "f.toml") == tmp_path / "etc" / "run" / "f.pid"
    assert pidfile.pid_path("/var/run/f.pid", tmp_path / "f.toml") == Path("/var/run/f.pid")


def test_the_pid_and_status_files_are_removed_only_by_the_process_that_wrote_them(tmp_path: Path) -> None:
    pid = tmp_path / "x" / "f.pid"
    pidfile.write_pid(pid, 4242)
    pidfile.write_status(pid, {"pid": 4242, "generation": 1})
    assert pidfile.read_pid(pid) == 4242 and pidfile.read_status(pid) == {"pid": 4242, "generation": 1}
    pidfile.remove_if_mine(pid, 1)
    assert pid.exists()
    pidfile.remove_if_mine(pid, 4242)
    assert not pid.exists() and not pidfile.status_path(pid).exists()


def _plan(tmp_path: Path, members: str, extra: str = ""):
    text = (f'[[listener]]\nname = "http"\nbind = "127.0.0.1:0"\n\n[pool.app]\nretry_budget = 0.2\n'
            f'members = [{members}]\n\n[[route]]\npath = "/"\npool = "app"\n{extra}')
    return compile_plan(load_config_text(text, "f.toml", tmp_path))


def test_a_rebuilt_runtime_keeps_members_by_url_with_their_state_and_takes_their_new_settings(tmp_path: Path) -> None:
    a, b, c = "http://127.0.0.1:9001/", "http://127.0.0.1:9002/", "http://127.0.0.1:9003/"
    pools, _ = build_runtime(_plan(tmp_path, f'{{ url = "{a}" }}, {{ url = "{b}" }}'))
    old_a, old_b = pools["app"].members
    old_a.requests, old_a.lbstatus, old_a.inflight = 7, 3.5, 2
    pools["app"].mark_error(old_a, 10.0, "refused")
    new, _ = build_runtime(_plan(tmp_path, f'{{ url = "{c}" }}, {{ url = "{a}", weight = 5 }}'),
                           previous=pools, now=11.0)
    pool = new["app"]
    kept = pool.members[1]
    assert kept is old_a and kept.pool is pool
    assert (kept.requests, kept.lbstatus, kept.inflight, kept.weight, kept.index) == (7, 3.5, 2, 5, 1)
    assert kept.in_error(11.0)                               # still resting after its refusal
    assert pool.members[0].name == c and pool.members[0].requests == 0
    assert old_b not in pool.members
    assert pool.budget is pools["app"].budget                # same retry_budget: its window carries over


def test_watched_files_are_the_certificates_keys_cas_and_htpasswd_files(tmp_path: Path) -> None:
    for name in ("front.pem", "front.key", "ca.pem", "u.htpasswd"):
        (tmp_path / name).write_text("x\n")
    config = load_config_text(
        '[[listener]]\nname = "h"\nbind = "127.0.0.1:0"\ntls = { cert = "front.pem", key = "front.key" }\n'
        '[pool.p]\ntls = { ca = "ca.pem" }\nmembers = [{ url = "https://127.0.0.1:9/" }]\n'
        '[[route]]\npath = "/"\npool = "p"\nauth = { htpasswd = "u.htpasswd" }\n', "f.toml", tmp_path)
    assert watched_files(config) == [tmp_path / n for n in ("front.pem", "front.key", "ca.pem", "u.htpasswd")]
    before = signature(tmp_path / "u.htpasswd")
    (tmp_path / "u.htpasswd").write_text("demo:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nbob:{SHA}x\n")
    assert signature(tmp_path / "u.htpasswd") != before
    assert signature(tmp_path / "missing") is None


@pytest.mark.parametrize("text", ["", 'pid_file = "run/f.pid"\n'])
def test_pid_file_is_a_top_level_setting(tmp_path: Path, text: str) -> None:
    config = load_config_text(text + '[[listener]]\nname = "h"\nbind = "127.0.0.1:0"\n[pool.p]\n'
                              'members = [{ url = "http://127.0.0.1:9/" }]\n[[route]]\npath = "/"\npool = "p"\n',
                              "f.toml", tmp_path)
    assert config.pid_file == ("run/f.pid" if text else None)


def test_listeners_keep_their_socket_by_name_and_address_and_a_renamed_fixed_port_one_keeps_it_too() -> None:
    from types import SimpleNamespace as L

    v4 = ((2, "127.0.0.1"),)
    old = [L(name="a", addresses=v4, port=0), L(name="b", addresses=v4, port=8080), L(name="c", addresses=v4, port=0)]
    new = [L(name="web", addresses=v4, port=8080),            # b renamed: same fixed port
           L(name="a", addresses=v4, port=0),                 # kept by name
           L(name="c2", addresses=v4, port=0),                # port 0 with another name: a new socket
           L(name="d", addresses=((2, "127.0.0.2"),), port=8080)]
    assert match_listeners(old, new) == [1, 0, None, None]


def test_a_default_pid_directory_others_can_write_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    shared = tmp_path / "ferryman"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="only it can write"):
        pidfile.write_pid(pidfile.default_pid_path(tmp_path / "f.toml"), 1)
    shared.chmod(0o700)
    pidfile.write_pid(pidfile.default_pid_path(tmp_path / "f.toml"), 1)
    assert pidfile.read_pid(pidfile.default_pid_path(tmp_path / "f.toml")) == 1
