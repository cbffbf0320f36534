"""Running `ferryman demo` as a user does: a subprocess on ephemeral ports with its own state directory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, wait_until

ARTIFACTS = REPO / "test-artifacts" / "demo"
EPHEMERAL = ["--http-port", "0", "--https-port", "0", "--app-http-ports", "0,0", "--app-https-ports", "0,0"]


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class DemoRun:
    """`python -m ferryman demo ...` in its own process group, output in `self.output_path`."""

    def __init__(self, state: Path, *args: str) -> None:
        self.state = state
        self.output_path = state.parent / f"{state.name}.out"
        self._out = open(self.output_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "ferryman", "demo", "--state-dir", str(state), *args],
                                     cwd=REPO, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.info: dict = {}

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_up(self, timeout: float = 180) -> dict:
        """Until the demo says it is up (its run file exists); fail with its output if it exits first."""
        run_file = self.state / "run" / "demo.json"

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"ferryman demo exited with {self.proc.returncode}:\n{self.output()}")
            return run_file.exists() and "is up" in self.output()
        wait_until(up, timeout, 0.1, f"ferryman demo not up within {timeout}s:\n{self.output()}")
        self.info = json.loads(run_file.read_text())
        return self.info

    def pids(self) -> list[int]:
        """Every process the demo said it started."""
        out = [self.info["front_end"]["pid"]] if self.info else []
        for app in self.info.get("app_servers", {}).values():
            out += app["pids"]
        return out

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the demo (only its own process: it must stop its children) and wait for its exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            raise


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A directory for this test's screenshots (test-artifacts/demo/<test name>/, not committed)."""
    path = ARTIFACTS / request.node.name.replace("/", "_").replace("[", "-").rstrip("]")
    path.mkdir(parents=True, exist_ok=True)
    return path
