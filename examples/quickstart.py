"""Start the quickstart topology: two gunicorn app servers and ferryman in front of them.

    python examples/quickstart.py

then open http://127.0.0.1:8080/webapps/ and http://127.0.0.1:8080/public/ . Ctrl-C stops all.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = [("http-1", 9001), ("http-2", 9002)]


def wait_http(port: int, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing answered on port {port} within {timeout:.0f}s")
            time.sleep(0.1)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, port in APPS:
            env = dict(os.environ, APP_NAME=name)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "-b", f"127.0.0.1:{port}",
                 "-w", "1", "--log-level", "warning", "hello_wsgi:application"], env=env))
            print(f"app server {name}: gunicorn on 127.0.0.1:{port}", flush=True)
        for _, port in APPS:
            wait_http(port, "/webapps/")
        procs.append(subprocess.Popen([sys.executable, "-m", "ferryman", "run", "-c",
                                       str(HERE / "quickstart.toml")]))
        wait_http(8080, "/webapps/")
        print("\nferryman is up:\n  curl -s http://127.0.0.1:8080/webapps/   (served by http-1 and http-2 in turn)"
              "\n  curl -s http://127.0.0.1:8080/public/x  (the same apps under another prefix)"
              "\n  curl -si http://127.0.0.1:8080/public/login  (Location and cookie path rewritten)"
              "\nCtrl-C stops everything.", flush=True)
        if os.environ.get("FERRYMAN_QUICKSTART_ONCE"):
            return 0
        signal.signal(signal.SIGTERM, _interrupt)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    raise SystemExit(main())
