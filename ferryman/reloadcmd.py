"""``ferryman reload -c FILE``: signal the ferryman serving FILE and report what it made of it.

The process is found through its pid file (`ferryman.pidfile`). It is signalled only when the status
file beside the pid file names the same process, which only a running ferryman writes: a stale pid
file whose number now belongs to another program never gets a SIGHUP (which would end most programs).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import tomllib
from pathlib import Path

from ferryman import pidfile


def _pid_setting(config_path: str) -> str | None:
    """The ``pid_file`` the configuration sets, read even when the rest of it is invalid."""
    try:
        data = tomllib.loads(Path(config_path).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    value = data.get("pid_file")
    return value if isinstance(value, str) else None


def _cmdline_is_ferryman(pid: int) -> bool:
    """False only when /proc shows that process `pid` is not a ferryman."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (or not ours to read): the status file check stands alone
    return b"ferryman" in cmdline


def reload_command(config_path: str, timeout: float) -> int:
    """Exit status: 0 reloaded, 1 nothing runs it (or no answer, or the reload failed part-way), 2 refused."""
    pid_path = pidfile.pid_path(_pid_setting(config_path), config_path)
    pid = pidfile.read_pid(pid_path)
    if pid is None:
        print(f"ferryman reload: no ferryman is running {config_path}: there is no pid file {pid_path}; start "
              f"it with ferryman run -c {config_path}", file=sys.stderr)
        return 1
    before = pidfile.read_status(pid_path)
    if not pidfile.is_running(pid) or before is None or before.get("pid") != pid \
            or not _cmdline_is_ferryman(pid):
        print(f"ferryman reload: the pid file {pid_path} is stale: process {pid} is not the ferryman running "
              f"{config_path}; start it with ferryman run -c {config_path} (the stale file may be removed)",
              file=sys.stderr)
        return 1
    generation = before.get("generation", 0)
    # A reload already under way read the file before this command ran: its status is not the answer.
    # The answer is the first status of a reload that began reading after the signal was sent.
    sent = time.time()
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"ferryman reload: process {pid} ended before it could be signalled", file=sys.stderr)
        return 1
    except PermissionError:
        print(f"ferryman reload: not allowed to signal process {pid} (it runs as another user); run this as "
              "that user", file=sys.stderr)
        return 1
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        status = pidfile.read_status(pid_path)
        if status is not None and status.get("pid") == pid and status.get("generation", 0) > generation \
                and status.get("read_at", sent) >= sent:
            break
        if not pidfile.is_running(pid):
            print(f"ferryman reload: process {pid} ended while reloading; see its error log", file=sys.stderr)
            return 1
        if time.monotonic() >= deadline:
            print(f"ferryman reload: process {pid} was signalled but said nothing within {timeout:g}s; see its "
                  "error log", file=sys.stderr)
            return 1
        pause.wait(0.05)
    runs = status.get("config")
    note = "" if runs == os.path.realpath(config_path) else f" (it runs {runs})"
    if status.get("outcome") == "reloaded":
        changes = status.get("changes") or []
        print(f"reloaded: process {pid} serves {config_path} now{note}"
              + ("".join(f"\n  {change}" for change in changes) if changes else " (nothing added or removed)"))
        return 0
    reasons = status.get("reasons") or []
    if status.get("outcome") == "failed":  # valid, but not every worker (or not at all) took it
        print(f"failed: process {pid} did not complete the reload of {config_path}{note}:", file=sys.stderr)
        for reason in reasons:
            print(reason, file=sys.stderr)
        return 1
    print(f"refused: {len(reasons)} problem(s); process {pid} still serves its previous configuration{note}:",
          file=sys.stderr)
    for reason in reasons:
        print(reason, file=sys.stderr)
    return 2
