"""Measuring helpers for proxy_bench.py: run wrk and parse its report, read CPU time from /proc.

Nothing here knows about proxies; everything works on a URL, a pid or a CPU number.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import time
from dataclasses import dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    """What one wrk run reported."""

    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]  # "50", "75", "90", "99" -> milliseconds
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx_3xx: int = 0

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx_3xx


def parse_duration_ms(text: str) -> float:
    """'1.23ms' -> 1.23, '456.00us' -> 0.456, '1.02s' -> 1020.0 (wrk's latency units)."""
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_S[match.group(2)] * 1000.0


def parse_wrk(output: str) -> WrkResult:
    """Parse the text wrk prints with --latency."""
    done = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", output, re.M)
    rps = re.search(r"^Requests/sec:\s*([0-9.]+)", output, re.M)
    if not done or not rps:
        raise ValueError("wrk printed no request count / Requests/sec:\n" + output)
    latency = {
        pct: parse_duration_ms(value)
        for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M)
    }
    if "50" not in latency or "99" not in latency:
        raise ValueError("wrk printed no latency distribution (was --latency given?):\n" + output)
    errors = {}
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
    non_ok = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    return WrkResult(
        requests=int(done.group(1)),
        seconds=parse_duration_ms(done.group(2) + done.group(3)) / 1000.0,
        rps=float(rps.group(1)),
        latency_ms=latency,
        socket_errors=errors,
        non_2xx_3xx=int(non_ok.group(1)) if non_ok else 0,
    )


#: A wrk script that makes every request's head differ from the one before (a counter in the query), so
#: no proxy can answer a head it has read before from a memo of it.
VARY_SCRIPT = """counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, wrk.path .. "?n=" .. counter)
end
"""


def wrk_command(url: str, connections: int, seconds: int, cpu: int, script: str | None = None) -> list[str]:
    """One wrk thread pinned to `cpu`, with the latency distribution (wrk takes whole seconds);
    `script`: a wrk Lua script file (e.g. one holding VARY_SCRIPT)."""
    return [
        "taskset", "-c", str(cpu),
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency",
        *(["-s", script] if script else []),
        url,
    ]  # fmt: skip


def run_wrk(url: str, connections: int, seconds: int, cpu: int, script: str | None = None) -> WrkResult:
    """Run wrk against `url` and return its parsed report; raise on failure."""
    cmd = wrk_command(url, connections, seconds, cpu, script)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=seconds + 60)
    finally:  # Ctrl-C or timeout: never leave wrk running (or unreaped)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err.strip()}")
    return parse_wrk(out)


# --------------------------------------------------------------------------- /proc CPU time


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3, `state`, is index 0)."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants (Apache's and nginx's workers are children)."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(name))[1])
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        parents.setdefault(ppid, []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of `root` and its live descendants, all threads included, in seconds.

    The descendants' own counters are read live, so workers count while they run; cutime/cstime
    (reaped children) are added too so that a worker that exits mid-run is not lost.
    """
    ticks = 0
    for pid in process_tree(root):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        # utime, stime, cutime, cstime are fields 14..17 of stat, i.e. indexes 11..14 here.
        ticks += sum(int(v) for v in fields[11:15])
    return ticks / CLOCK_TICKS


@dataclass
class CpuTimes:
    """Seconds one CPU spent since boot running tasks (user, nice, system) and idle (idle, iowait).

    The rest (irq, softirq, steal) is neither: on loopback, much of the kernel's TCP work runs as
    softirq, which the kernel does not charge to any process.
    """

    task: float
    idle: float

    @classmethod
    def read(cls, cpu: int) -> CpuTimes:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{cpu} "):
                    user, nice, system, idle, iowait = (int(v) for v in line.split()[1:6])
                    return cls((user + nice + system) / CLOCK_TICKS, (idle + iowait) / CLOCK_TICKS)
        raise ValueError(f"no cpu{cpu} in /proc/stat")

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.task - other.task, self.idle - other.idle)


@dataclass
class CpuSample:
    """A snapshot to diff: named process trees' CPU time, the CPU time of our reaped children
    (wrk), per-CPU times, and the wall clock."""

    procs: dict[str, float]
    children: float
    cpus: dict[int, CpuTimes]
    wall: float

    @classmethod
    def take(cls, pids: dict[str, int], cpus: tuple[int, ...]) -> CpuSample:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(
            procs={name: tree_cpu_seconds(pid) for name, pid in pids.items()},
            children=usage.ru_utime + usage.ru_stime,
            cpus={c: CpuTimes.read(c) for c in cpus},
            wall=time.monotonic(),
        )


@dataclass
class CpuUsage:
    """CPU used between two samples."""

    procs: dict[str, float]  # per named process tree
    children: float  # our child processes that exited meanwhile (wrk)
    cpus: dict[int, CpuTimes]  # per CPU, every process on it
    wall_seconds: float

    @classmethod
    def between(cls, before: CpuSample, after: CpuSample) -> CpuUsage:
        return cls(
            procs={name: after.procs[name] - before.procs[name] for name in before.procs},
            children=after.children - before.children,
            cpus={c: after.cpus[c] - before.cpus[c] for c in before.cpus},
            wall_seconds=after.wall - before.wall,
        )

    def share(self, seconds: float) -> float:
        """`seconds` of CPU as a fraction of the wall time (1.0 = one full core)."""
        return seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def wait_until_quiet(cpus: tuple[int, ...], busy_below: float, max_wait: float) -> float:
    """Wait until every CPU in `cpus` is less than `busy_below` busy over half a second, for at
    most `max_wait` seconds (other people's work on a shared machine skews a run). Returns the
    seconds waited; waiting out the limit is not an error."""
    started = time.monotonic()
    while True:
        before = {c: CpuTimes.read(c) for c in cpus}
        time.sleep(0.5)
        idle = [(CpuTimes.read(c) - before[c]).idle / 0.5 for c in cpus]
        waited = time.monotonic() - started
        if min(idle) > 1.0 - busy_below or waited >= max_wait:
            return waited
