"""PostgreSQL for the demo: reach a given server, or run Debian's in the state directory.

``initdb`` and ``pg_ctl`` refuse to run as root, so as root they run as an unprivileged user
(``postgres`` when it exists, else ``nobody``) through ``runuser``. The cluster listens on 127.0.0.1
only and trusts local connections; it is stopped with the demo.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit


class DatabaseError(Exception):
    """The database cannot be used; the message says why and what to do."""


def check_url(url: str, timeout: float = 5.0) -> None:
    """Connect once to `url`; raise DatabaseError with a clear message if that fails."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise DatabaseError(f"--database {url!r} is not a PostgreSQL URL; write one such as "
                            f"postgresql://user:password@127.0.0.1:5432/dbname")
    try:
        import psycopg
    except ImportError:
        raise DatabaseError("--database needs the psycopg package: python3 -m pip install 'psycopg[binary]'") from None
    try:
        psycopg.connect(url, connect_timeout=max(1, int(timeout))).close()
    except psycopg.Error as e:
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        reason = " ".join(str(e).split())
        raise DatabaseError(f"cannot reach the database {shown}: {reason}") from None


def find_tool(name: str) -> str | None:
    """`name` from PATH, or from Debian's versioned /usr/lib/postgresql/*/bin, newest first."""
    found = shutil.which(name)
    if found:
        return found
    for path in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True,
                       key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0):
        return path
    return None


def _runas() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs a PostgreSQL tool as a non-root user, and that user."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], user
    raise DatabaseError("--postgres as root needs runuser and a user 'postgres' or 'nobody'")


class LocalPostgres:
    """A PostgreSQL cluster in `directory` listening on 127.0.0.1:`port`."""

    def __init__(self, directory: Path, port: int, log: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = port
        self.log = log
        self.prefix, self.user = _runas()
        self.started = False
        tools = {n: find_tool(n) for n in ("initdb", "pg_ctl")}
        missing = [n for n, p in tools.items() if p is None]
        if missing:
            raise DatabaseError(f"--postgres needs PostgreSQL's {' and '.join(missing)}; install it "
                                f"(Debian: apt-get install postgresql) or give --database URL")
        self.initdb, self.pg_ctl = str(tools["initdb"]), str(tools["pg_ctl"])

    @property
    def url(self) -> str:
        return f"postgresql://ferryman@127.0.0.1:{self.port}/ferryman_demo"

    def _run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.prefix + argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd="/")

    def _own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _reachable(self) -> bool:
        """Whether the unprivileged user can write the cluster's directory (every parent must be open)."""
        if self.user is None:
            return True
        return self._run(["test", "-w", str(self.directory)], timeout=10).returncode == 0

    def _private_directory(self) -> Path:
        """Where the cluster lives when the state directory is closed to the unprivileged user (a state
        directory under /root, say): a directory of its own under the temporary directory, one per state
        directory, so the data is kept between runs all the same."""
        import hashlib
        import tempfile

        tag = hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"ferryman-demo-postgres-{tag}"
        path.mkdir(mode=0o700, exist_ok=True)
        if path.is_symlink() or path.stat().st_uid not in (0, self.user.pw_uid if self.user else 0):
            raise DatabaseError(f"{path} belongs to someone else; remove it or choose another --state-dir")
        self._own(path)
        return path

    def start(self, timeout: float = 60) -> None:
        """initdb on first use, then pg_ctl start; create the database. Raises DatabaseError."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._own(self.directory)
        if not self._reachable():
            self.directory = self._private_directory()
            self.data = self.directory / "data"
            self.log = self.directory / "postgres.log"
            if not self._reachable():
                raise DatabaseError(f"the user {self.user.pw_name if self.user else '?'} that runs PostgreSQL "
                                    f"cannot write {self.directory}; choose another --state-dir")
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists() and any(self.data.iterdir()):
                raise DatabaseError(f"{self.data} is not a PostgreSQL data directory (no PG_VERSION); "
                                    f"delete it to start afresh")
            done = self._run([self.initdb, "-D", str(self.data), "-U", "ferryman", "--auth=trust",
                              "-E", "UTF8", "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C"])
            if done.returncode != 0:
                raise DatabaseError(f"initdb failed for {self.data}:\n{done.stdout}{done.stderr}")
        # A cluster left running by a demo that was killed: stop it, then start it with our port.
        if self._run([self.pg_ctl, "status", "-D", str(self.data)], timeout=10).returncode == 0:
            self._run([self.pg_ctl, "stop", "-D", str(self.data), "-m", "fast", "-w"])
        self.log.touch()
        self._own(self.log)
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        done = self._run([self.pg_ctl, "start", "-D", str(self.data), "-l", str(self.log), "-w",
                          "-t", str(int(timeout)), "-o", options], timeout=timeout + 10)
        if done.returncode != 0:
            try:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-8:])
            except OSError:
                tail = ""
            raise DatabaseError(f"PostgreSQL did not start in {self.data}:\n{done.stdout}{done.stderr}{tail}")
        self.started = True
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(f"postgresql://ferryman@127.0.0.1:{self.port}/postgres",
                                     autocommit=True, connect_timeout=2) as conn:
                    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'ferryman_demo'").fetchone():
                        conn.execute("CREATE DATABASE ferryman_demo")
                return
            except psycopg.OperationalError as e:
                if time.monotonic() > deadline:
                    raise DatabaseError(f"PostgreSQL in {self.data} does not accept connections: {e}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the cluster, also one whose start was interrupted (its postmaster.pid exists)."""
        if self.started or (self.data / "postmaster.pid").exists():
            self._run([self.pg_ctl, "stop", "-D", str(self.data), "-m", "fast", "-w"], timeout=60)
            self.started = False


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.lower() in ("c.utf8", "c.utf-8") for line in out.splitlines())
