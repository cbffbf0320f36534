"""A worker process of a master (`ferryman.server.master`): ``python -m ferryman.server.worker``.

Not a command for people: the master starts it with the listening sockets, the shared member table
and a readiness pipe as inherited file descriptors, and writes one JSON object on its stdin::

    {"number": 2, "config": "<the TOML text>", "filename": "/etc/ferryman.toml", "base_dir": "/etc",
     "listeners": [[fd, ...], ...], "table": fd, "slots": [["pool", "member", slot], ...], "ready": fd}

The configuration travels as text, the exact text the master validated, so a worker started later (a
replacement after a crash) serves what the master serves even if the file was edited since. The worker
compiles it, serves on the inherited sockets, writes ``ready`` on the pipe and runs until SIGTERM or
SIGINT, then stops like a single ferryman: stop accepting, finish in flight within
``shutdown_timeout``, exit 0. SIGHUP is the master's: a worker ignores it. A worker whose master dies
gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``), so no worker outlives its master.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from ferryman.config.loader import load_config_text
from ferryman.errors import ConfigError
from ferryman.plan import compile_plan
from ferryman.server.app import CannotListen, run_loop, setup_logging, start
from ferryman.server.member_table import MemberTable, SharedMembers

log = logging.getLogger("ferryman")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


async def serve_worker(plan: Any, spec: dict[str, Any]) -> int:
    loop = asyncio.get_running_loop()
    sockets = [[socket.socket(fileno=fd) for fd in fds] for fds in spec["listeners"]]
    table = MemberTable.attach(spec["table"])
    slot_of = {(pool, member): slot for pool, member, slot in spec["slots"]}
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    try:
        running = await start(plan, sockets, lambda server: SharedMembers(table, slot_of, server.members))
    except CannotListen as exc:
        log.error("%s", exc)
        return 1
    loop.add_signal_handler(signal.SIGUSR1, running.reopen_logs)  # passed on by the master (logrotate)
    with os.fdopen(spec["ready"], "wb") as ready:
        ready.write(b"ready\n")
    await stop.wait()
    await running.stop(plan.config.shutdown_timeout)
    table.close()
    return 0


def main() -> int:
    _die_with_parent()
    if os.getppid() == 1:  # the master died before we could ask to follow it
        return 1
    spec = json.loads(sys.stdin.buffer.read())
    try:
        plan = compile_plan(load_config_text(spec["config"], spec["filename"], Path(spec["base_dir"])))
    except ConfigError as err:  # the master validated this very text: only a file it names changed
        for issue in err.issues:
            print(issue, file=sys.stderr)
        return 2
    setup_logging(plan.config.log, f"worker {spec['number']}")
    return run_loop(serve_worker(plan, spec))


if __name__ == "__main__":
    raise SystemExit(main())
