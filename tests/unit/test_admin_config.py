"""``[admin]``: off unless present, loopback by default, a password required anywhere else; each problem
as file:line: key: what is wrong; what would be valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.config.loader import load_config_text
from ferryman.errors import ConfigError
from ferryman.plan import compile_plan

BASE = """\
[[listener]]
name = "http"
bind = "127.0.0.1:8080"

[pool.app]
members = [{ url = "http://127.0.0.1:9001" }]

[[route]]
path = "/"
pool = "app"
"""


def plan(admin: str, base_dir: Path):  # noqa: ANN201
    return compile_plan(load_config_text(admin + "\n" + BASE, "ferryman.toml", base_dir))


def issues(admin: str, base_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        plan(admin, base_dir)
    return [str(i) for i in err.value.issues]


def test_without_an_admin_table_there_is_no_admin_listener(tmp_path: Path) -> None:
    assert plan("", tmp_path).admin is None


def test_an_empty_admin_table_listens_on_loopback_port_9900_without_a_password(tmp_path: Path) -> None:
    admin = plan("[admin]", tmp_path).admin
    assert (admin.host, admin.port, admin.users) == ("127.0.0.1", 9900, None)


def test_a_non_loopback_bind_with_htpasswd_loads_its_users(tmp_path: Path) -> None:
    (tmp_path / "admin.htpasswd").write_text("ops:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    admin = plan('[admin]\nbind = "0.0.0.0:9900"\nhtpasswd = "admin.htpasswd"', tmp_path).admin
    assert admin.host == "0.0.0.0" and dict(admin.users) == {"ops": "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="}


def test_a_non_loopback_bind_without_htpasswd_is_refused_at_the_bind_line(tmp_path: Path) -> None:
    assert issues('[admin]\nbind = "[::]:9900"', tmp_path) == [
        "ferryman.toml:2: admin.bind: '[::]:9900' is not a loopback address, so the admin listener needs a "
        'password: add htpasswd = "admin.htpasswd" to [admin] (users made with htpasswd -B), or bind '
        '"127.0.0.1:9900"']


def test_a_missing_htpasswd_file_and_a_bad_bind_are_reported_with_their_lines(tmp_path: Path) -> None:
    found = issues('[admin]\nbind = "9900"\nhtpasswd = "nope.htpasswd"', tmp_path)
    assert len(found) == 2
    assert found[0].startswith("ferryman.toml:2: admin.bind: '9900' has no host")
    assert found[1].startswith("ferryman.toml:3: admin.htpasswd: ")


def test_an_unknown_admin_key_is_refused(tmp_path: Path) -> None:
    [issue] = issues('[admin]\nport = 9900', tmp_path)
    assert issue.startswith("ferryman.toml:2: admin.port: ")
