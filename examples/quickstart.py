"""Start the quickstart topology: two gunicorn app servers and ferryman in front of them.

    python examples/quickstart.py

then open http://127.0.0.1:8080/webapps/ and http://127.0.0.1:8080/public/ . Ctrl-C stops all.

It says "ferryman is up" only once a request has gone through ferryman to one of the app servers it
started; if anything it started exits first (a port already in use, say), it prints why, stops the
rest and exits 1.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = [("http-1", 9001), ("http-2", 9002)]
FERRYMAN_PORT = 8080
DEADLINE = 30.0


class Started:
    """A child process whose standard error is passed through and remembered, for the reason it died."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.label = label
        self.proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._pass_through, daemon=True)
        self._reader.start()

    def _pass_through(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            sys.stderr.write(line)
            sys.stderr.flush()

    def failure(self) -> str | None:
        """Why it stopped, when it has: its last error line (or its last line), and its exit status."""
        if self.proc.poll() is None:
            return None
        self._reader.join(2)
        errors = [ln for ln in self.lines if "ERROR" in ln or "Error" in ln or "error" in ln]
        last = (errors or self.lines or ["(no output)"])[-1].strip()
        return f"{self.label} exited with status {self.proc.returncode}: {last}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)


class NotUp(Exception):
    """Something the quickstart started does not serve; the message says what and why."""


def fetch(port: int, path: str) -> dict[str, object] | None:
    """The JSON an app server answers on 127.0.0.1:`port`, or None when nothing (or something else) does."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        seen = json.loads(body)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    return seen if isinstance(seen, dict) else None


def wait_serving(started: list[Started], port: int, path: str, check: object, what: str) -> None:
    """Until `check(json)` is true for an answer on `port`, while every started process still runs."""
    deadline = time.monotonic() + DEADLINE
    while True:
        for s in started:
            reason = s.failure()
            if reason is not None:
                raise NotUp(reason)
        seen = fetch(port, path)
        if seen is not None and check(seen):  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise NotUp(f"{what} did not answer on 127.0.0.1:{port} within {DEADLINE:.0f}s"
                        + (" (something else answers there)" if seen is not None else ""))
        time.sleep(0.1)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    started: list[Started] = []
    # from the start, so a SIGTERM during start-up also stops what was started (its default action would
    # leave the children running)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for name, port in APPS:
            env = dict(os.environ, APP_NAME=name)
            started.append(Started(f"app server {name} (gunicorn on 127.0.0.1:{port})", [
                sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "-b", f"127.0.0.1:{port}",
                "-w", "1", "--log-level", "warning", "hello_wsgi:application"], env))
            print(f"app server {name}: gunicorn on 127.0.0.1:{port}", flush=True)
        # an answer counts only if it echoes a query nobody else knows: another program on the port
        # cannot pass for one of ours
        nonce = f"quickstart={os.urandom(8).hex()}"
        for name, port in APPS:
            wait_serving(started, port, f"/webapps/?{nonce}",
                         lambda seen, name=name: seen.get("served_by") == name and seen.get("query") == nonce,
                         f"app server {name}")
        started.append(Started("ferryman", [sys.executable, "-m", "ferryman", "run", "-c",
                                            str(HERE / "quickstart.toml")]))
        ferryman = started[-1]
        names = {name for name, _ in APPS}
        listening = f"listening on http://127.0.0.1:{FERRYMAN_PORT} (listener http)"
        # through ferryman: it said it listens, one of our apps answers with our query and the
        # prefix that only ferryman adds
        wait_serving(started, FERRYMAN_PORT, f"/public/?{nonce}",
                     lambda seen: any(listening in ln for ln in ferryman.lines)
                     and seen.get("served_by") in names and seen.get("query") == nonce
                     and (seen.get("x_forwarded") or {}).get("x-forwarded-prefix") == "/public",  # type: ignore[union-attr]
                     "ferryman")
        print("\nferryman is up:\n  curl -s http://127.0.0.1:8080/webapps/   (served by http-1 and http-2 in turn)"
              "\n  curl -s http://127.0.0.1:8080/public/x  (the same apps under another prefix)"
              "\n  curl -si http://127.0.0.1:8080/public/login  (Location and cookie path rewritten)"
              "\nCtrl-C stops everything.", flush=True)
        if os.environ.get("FERRYMAN_QUICKSTART_ONCE"):
            return 0
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a child that exits wakes the pause below
        while True:
            for s in started:
                reason = s.failure()
                if reason is not None:
                    raise NotUp(reason)
            signal.pause()
    except NotUp as err:
        print(f"\nquickstart failed: {err}\nstopping what it started.", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for s in reversed(started):
            s.stop()


if __name__ == "__main__":
    raise SystemExit(main())
