"""How long `ferryman demo` takes from its start until every URL it prints answers.

    python bench/demo_startup.py --runs 5            # SQLite; add --postgres for the local PostgreSQL

Each run starts ``python -m ferryman demo`` on free ports and polls, from this process, the four
public URLs (``/webapps/`` and ``/public/`` on HTTP and HTTPS, the HTTPS ``/webapps/`` with the demo
user's password, TLS checked against the demo's CA) until each answers 200. "cold" runs use a new
state directory (CA, certificates, migrations and the demo user made from nothing), "warm" runs
reuse the previous one. Reported: median and worst of each, and when the demo itself said it was up.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_ports(n: int) -> list[int]:
    """`n` distinct ports that were free a moment ago (all bound at once, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def status(url: str, ca: Path | None, auth: str | None) -> int | None:
    scheme, rest = url.split("://", 1)
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    try:
        if scheme == "https":
            if ca is None or not ca.exists():
                return None
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, int(port), timeout=5, context=ssl.create_default_context(cafile=str(ca)))
        else:
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
        headers = {"Authorization": auth} if auth else {}
        conn.request("GET", "/" + path, headers=headers)
        got = conn.getresponse()
        got.read()
        conn.close()
        return got.status
    except (OSError, http.client.HTTPException, ssl.SSLError):
        return None


def one_run(state: Path, postgres: bool, timeout: float) -> dict[str, float]:
    http_port, https_port, a1, a2, s1, s2 = free_ports(6)
    args = [sys.executable, "-m", "ferryman", "demo", "--state-dir", str(state),
            "--http-port", str(http_port), "--https-port", str(https_port),
            "--app-http-ports", f"{a1},{a2}", "--app-https-ports", f"{s1},{s2}"]
    if postgres:
        args.append("--postgres")
    urls = [f"http://127.0.0.1:{http_port}/webapps/", f"http://127.0.0.1:{http_port}/public/",
            f"https://127.0.0.1:{https_port}/public/", f"https://127.0.0.1:{https_port}/webapps/"]
    out = tempfile.TemporaryFile()
    start = time.monotonic()
    proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    said_up: float | None = None
    try:
        pending = list(urls)
        while pending:
            if proc.poll() is not None:
                out.seek(0)
                raise SystemExit(f"ferryman demo exited with {proc.returncode}:\n{out.read().decode(errors='replace')}")
            if time.monotonic() - start > timeout:
                raise SystemExit(f"not every URL answered within {timeout:.0f} s: {pending}")
            if said_up is None:
                out.seek(0)
                if b"ferryman demo is up" in out.read():
                    said_up = time.monotonic() - start
            password_file = state / "demo-password"
            auth = None
            if password_file.exists():
                auth = "Basic " + base64.b64encode(f"demo:{password_file.read_text().strip()}".encode()).decode()
            url = pending[0]
            if status(url, state / "certs" / "ca.pem", auth if "/webapps" in url and url.startswith("https") else None) == 200:
                pending.pop(0)
            else:
                time.sleep(0.02)
        answered = time.monotonic() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        out.close()
    return {"answered": answered, "said_up": said_up if said_up is not None else answered}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="cold and warm runs each (default 5)")
    parser.add_argument("--postgres", action="store_true", help="run the demo with --postgres")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="ferryman-demo-bench-") as tmp:
            os.chmod(tmp, 0o755)  # PostgreSQL's user must reach the state directory
            state = Path(tmp) / "state"
            for kind in ("cold", "warm"):
                r = one_run(state, args.postgres, args.timeout)
                results[kind].append(r)
                print(f"run {i + 1} {kind}: every URL answered after {r['answered']:.2f} s "
                      f"(the demo said up after {r['said_up']:.2f} s)", flush=True)
    print(f"\nferryman demo{' --postgres' if args.postgres else ''}, {args.runs} runs each:")
    for kind, rows in results.items():
        times = [r["answered"] for r in rows]
        print(f"  {kind}: median {statistics.median(times):.2f} s, worst {max(times):.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"postgres": args.postgres, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
