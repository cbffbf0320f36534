"""Child processes of the demo: started in their own session, logged to a file, stopped for sure.

Each child gets its own process group (so a terminal's Ctrl-C reaches only the demo, which then stops
the children in order) and, on Linux, is sent SIGTERM if the demo itself dies without cleaning up.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def signals_deferred(signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a child is started and recorded, then deliver them.

    The demo stops by raising from its signal handler; raised in the middle of starting a process
    (between fork and exec, or before the child is recorded) it would leave that process unknown to
    the cleanup, or run the handler in the forked copy. Blocking the signals instead would hand the
    blocked mask on to the started program, which could then never be stopped."""
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: held.append(signum)) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in held[:1]:
            signal.raise_signal(s)


class Child:
    """One started process with its output appended to `log`."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, pass_fds: Sequence[int] = ()) -> None:
        self.name = name
        self.log = log
        self.argv = list(argv)
        with open(log, "ab") as out:
            out.write(f"--- {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None, cwd=cwd, pass_fds=tuple(pass_fds),
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> int | None:
        """The exit status if the process has ended, else None."""
        return self.proc.poll()

    def tail(self, lines: int = 12) -> str:
        """The last lines of the log, indented, for error messages."""
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join("    " + line for line in text)

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the whole group, then SIGKILL after `timeout`; reap the process."""
        if self.proc.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.proc.wait()
        # Workers that outlived their master (same group) go too.
        self.signal_group(signal.SIGKILL)
