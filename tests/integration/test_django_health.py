"""ferryman.django's health view: 200 when the database answers and is migrated and the member is not
draining; 503 with the reason otherwise (docs/django.md, "Health view"). Run with Django's test
client in a fresh process per case (settings tests/apps/djangochecks/correct.py, SQLite in a temp dir)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

SCRIPT = r"""
import json, sys
import django
django.setup()
from django.core.management import call_command
from django.test import Client
if sys.argv[1] == "migrate":
    call_command("migrate", verbosity=0)
r = Client().get("/health/", HTTP_HOST="www.example.com")
print(json.dumps({"status": r.status_code, "body": json.loads(r.content)}))
"""


def health(tmp_path: Path, migrate: bool, drain: bool = False, db: str | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["DJANGO_SETTINGS_MODULE"] = "tests.apps.djangochecks.correct"
    env["DJANGOCHECKS_DB"] = db or str(tmp_path / "db.sqlite3")
    env["DJANGOCHECKS_DRAIN"] = str(tmp_path / "drain")
    if drain:
        (tmp_path / "drain").write_text("")
    done = subprocess.run([sys.executable, "-c", SCRIPT, "migrate" if migrate else "-"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_migrated_reachable_member_is_healthy(tmp_path: Path) -> None:
    assert health(tmp_path, migrate=True) == {"status": 200, "body": {
        "status": "ok", "database": "ok", "migrations": "ok", "draining": False}}


def test_unapplied_migrations_make_the_member_unhealthy_and_say_which(tmp_path: Path) -> None:
    got = health(tmp_path, migrate=False)
    assert got["status"] == 503 and got["body"]["status"] == "failing"
    assert "unapplied" in got["body"]["migrations"] and "run manage.py migrate" in got["body"]["migrations"]


def test_a_draining_member_answers_503_draining(tmp_path: Path) -> None:
    got = health(tmp_path, migrate=True, drain=True)
    assert got == {"status": 503, "body": {"status": "draining", "database": "ok", "migrations": "ok",
                                           "draining": True}}


def test_an_unreachable_database_makes_the_member_unhealthy(tmp_path: Path) -> None:
    got = health(tmp_path, migrate=False, db=str(tmp_path / "no-such-dir" / "db.sqlite3"))
    assert got["status"] == 503 and got["body"]["database"].startswith("unreachable: OperationalError")
    assert got["body"]["migrations"] == "not checked"
