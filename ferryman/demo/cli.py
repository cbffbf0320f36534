"""The options of `ferryman demo` (kept apart so `ferryman --help` stays quick)."""

from __future__ import annotations

import argparse
from pathlib import Path

PROJECT = Path(__file__).resolve().parent / "project"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=".ferryman-demo", metavar="DIR",
                   help="where certificates, database, uploads, logs and the generated ferryman.toml live "
                        "(default: ./.ferryman-demo; kept between runs)")
    p.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                   help="address the front end listens on (default 127.0.0.1; app servers stay on 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=8080, metavar="PORT", help="front end HTTP port (8080)")
    p.add_argument("--https-port", type=int, default=8443, metavar="PORT", help="front end HTTPS port (8443)")
    p.add_argument("--app-http-ports", default="9001,9002", metavar="P1,P2",
                   help="plain ports of the two app servers (9001,9002)")
    p.add_argument("--app-https-ports", default="9443,9444", metavar="P1,P2",
                   help="TLS ports of the two app servers (9443,9444)")
    db = p.add_mutually_exclusive_group()
    db.add_argument("--database", metavar="URL",
                    help="use this PostgreSQL server (postgresql://user:password@host:port/name) instead of SQLite")
    db.add_argument("--postgres", action="store_true",
                    help="run a local PostgreSQL (initdb/pg_ctl) in the state directory instead of SQLite")
    p.add_argument("--postgres-port", type=int, default=0, metavar="PORT",
                   help="port of the --postgres server on 127.0.0.1 (default: any free port)")
    p.add_argument("--project", metavar="DIR", default=str(PROJECT),
                   help="the Django project to run: the bundled example, or an edited copy of it")
