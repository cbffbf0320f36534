"""The ``static`` key of a route: a directory served instead of a pool, exclusive with ``pool``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ferryman.config.loader import load_config_text
from tests.support import REPO

BASE = """\
[[listener]]
name = "http"
bind = "127.0.0.1:8080"

[pool.django-http]
members = [{ url = "http://127.0.0.1:9001/webapps" }]

[[route]]
path = "/webapps"
pool = "django-http"
"""


def check(tmp_path: Path, routes: str, command: str = "check") -> subprocess.CompletedProcess[str]:
    config = tmp_path / "ferryman.toml"
    config.write_text(BASE + routes)
    return subprocess.run([sys.executable, "-m", "ferryman", command, "-c", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_a_route_can_name_a_directory_relative_to_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    config = load_config_text(BASE + '\n[[route]]\npath = "/media"\nstatic = "media"\n', "ferryman.toml", tmp_path)
    assert (config.route[1].pool, config.route[1].static) == (None, tmp_path / "media")


def test_check_accepts_a_static_route_and_explain_names_the_file_it_serves(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "photo.jpg").write_bytes(b"\xff\xd8")
    route = '\n[[route]]\npath = "/media"\nstatic = "media"\nstatic_max_age = "1d"\n'
    done = check(tmp_path, route)
    assert done.returncode == 0, done.stderr
    config = tmp_path / "ferryman.toml"
    found = subprocess.run([sys.executable, "-m", "ferryman", "explain", "-c", str(config), "GET /media/photo.jpg"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert f"/media -> static directory {tmp_path / 'media'}" in found.stdout
    assert "photo.jpg (2 bytes, image/jpeg)" in found.stdout
    for target, why in (("/media/nothing.jpg", "404: cannot open"), ("/media/", "404: a directory"),
                        ("/media/.env", "404: a hidden name")):
        missing = subprocess.run([sys.executable, "-m", "ferryman", "explain", "-c", str(config), f"GET {target}"],
                                 cwd=REPO, capture_output=True, text=True, timeout=60)
        assert missing.returncode == 1 and why in missing.stdout, (target, missing.stdout)
        assert "Traceback" not in missing.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root searches every directory whatever its mode")
def test_check_refuses_a_static_directory_it_cannot_search_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir(mode=0o000)
    try:
        done = check(tmp_path, '\n[[route]]\npath = "/media"\nstatic = "media"\n')
    finally:
        (tmp_path / "media").chmod(0o755)
    assert done.returncode == 2
    assert f"ferryman.toml:13: route[1].static: cannot read the directory {tmp_path / 'media'}; make it " \
           "readable and searchable" in done.stderr


def test_static_max_age_without_static_is_refused(tmp_path: Path) -> None:
    done = check(tmp_path, '\n[[route]]\npath = "/x"\npool = "django-http"\nstatic_max_age = "1h"\n')
    assert done.returncode == 2
    assert "route[1]: has static_max_age without static" in done.stderr


def test_a_route_with_both_pool_and_static_is_refused_at_its_line(tmp_path: Path) -> None:
    done = check(tmp_path, '\n[[route]]\npath = "/media"\nstatic = "."\npool = "django-http"\n')
    assert done.returncode == 2
    assert "ferryman.toml:12: route[1]: has both pool and static" in done.stderr


def test_a_route_with_neither_pool_nor_static_says_what_would_be_valid(tmp_path: Path) -> None:
    done = check(tmp_path, '\n[[route]]\npath = "/media"\n')
    assert done.returncode == 2
    assert 'route[1]: has neither pool nor static; add pool = "NAME"' in done.stderr


def test_a_static_directory_that_does_not_exist_or_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    done = check(tmp_path, '\n[[route]]\npath = "/a"\nstatic = "missing"\n\n[[route]]\npath = "/b"\nstatic = "file"\n')
    assert done.returncode == 2
    assert f"route[1].static: 'missing' does not exist (looked for {tmp_path / 'missing'})" in done.stderr
    assert f"route[2].static: 'file' is not a directory ({tmp_path / 'file'})" in done.stderr
