"""Results of proxy_bench.py: medians over runs, ferryman's ratios, a text table and a Markdown table."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

BASELINE = "backend (direct)"
FERRYMAN = "ferryman"


@dataclass
class Run:
    """One wrk run against one peer."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us_per_req: float
    proc_cpu_share: float  # the peer's CPU time / wall time (1.0 = one core)
    cpu0_other_share: float  # CPU 0 task time not spent by the peer: other load on the proxy core
    cpu1_other_share: float  # CPU 1 task time not spent by wrk or the backend
    cpu0_idle_share: float  # CPU 0 idle: well above 0 means the proxy was not CPU-bound
    cpu1_idle_share: float  # CPU 1 idle: near 0 means wrk + backend were the bottleneck


@dataclass
class Result:
    """All runs of one peer in one scenario, and their medians."""

    path: str
    connections: int
    peer: str
    runs: list[Run] = field(default_factory=list)

    @property
    def scenario(self) -> str:
        return f"{self.path} c={self.connections}"

    def median(self, metric: str) -> float:
        return statistics.median(getattr(run, metric) for run in self.runs)

    def summary(self) -> dict:
        keys = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "proc_cpu_share", "cpu0_other_share",
                "cpu1_other_share", "cpu0_idle_share", "cpu1_idle_share")  # fmt: skip
        return {
            "path": self.path,
            "connections": self.connections,
            "peer": self.peer,
            "median": {key: round(self.median(key), 3) for key in keys},
            "errors": sum(run.errors for run in self.runs),
            "runs": [asdict(run) for run in self.runs],
        }


def ratios(results: list[Result]) -> dict[tuple[str, int, str], tuple[float, float, float]]:
    """(path, connections, peer) -> (ferryman req/s ÷ peer req/s, ferryman p99 ÷ peer p99,
    ferryman CPU µs/req ÷ peer CPU µs/req)."""
    ferryman = {(r.path, r.connections): r for r in results if r.peer == FERRYMAN and r.runs}
    out = {}
    for r in results:
        mine = ferryman.get((r.path, r.connections))
        if mine is None or r.peer == FERRYMAN or not r.runs:
            continue
        out[(r.path, r.connections, r.peer)] = (
            mine.median("rps") / r.median("rps"),
            mine.median("p99_ms") / r.median("p99_ms"),
            mine.median("cpu_us_per_req") / max(r.median("cpu_us_per_req"), 1e-9),
        )
    return out


def cpu_summary(results: list[Result], peers: tuple[str, ...] = ("floor", "nginx", "haproxy")) -> list[str]:
    """One line per scenario: ferryman's CPU µs per request beside the floor's, nginx's and HAProxy's
    (those measured), each with ferryman's multiple of it."""
    lines = []
    for path, conns in dict.fromkeys((r.path, r.connections) for r in results):
        here = {r.peer: r.median("cpu_us_per_req") for r in results
                if (r.path, r.connections) == (path, conns) and r.runs}
        if FERRYMAN not in here:
            continue
        mine = here[FERRYMAN]
        others = [f"{p} {here[p]:.1f} (ferryman {mine / max(here[p], 1e-9):.2f}×)" for p in peers if p in here]
        lines.append(f"{path} c={conns}: CPU µs/req ferryman {mine:.1f}" + "".join(f" | {o}" for o in others))
    return lines


HEADERS = ("scenario", "peer", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "peer CPU",
           "errors", "ferryman÷peer req/s", "ferryman÷peer p99", "ferryman÷peer CPU/req")  # fmt: skip


def rows(results: list[Result], pending: list[str]) -> list[tuple[str, ...]]:
    """Table rows, one per result, plus a 'pending' row per scenario for each peer not measured."""
    ratio = ratios(results)
    out: list[tuple[str, ...]] = []
    scenarios = list(dict.fromkeys((r.path, r.connections) for r in results))
    for path, conns in scenarios:
        for r in (r for r in results if (r.path, r.connections) == (path, conns)):
            rr = ratio.get((path, conns, r.peer))
            out.append((
                r.scenario, r.peer,
                f"{r.median('rps'):,.0f}",
                f"{r.median('p50_ms'):.2f}",
                f"{r.median('p99_ms'):.2f}",
                f"{r.median('cpu_us_per_req'):.1f}",
                f"{100 * r.median('proc_cpu_share'):.0f}%",
                str(sum(run.errors for run in r.runs)),
                f"{rr[0]:.2f}×" if rr else "—",
                f"{rr[1]:.2f}×" if rr else "—",
                f"{rr[2]:.2f}×" if rr else "—",
            ))  # fmt: skip
        for peer in pending:
            out.append((f"{path} c={conns}", peer, "pending", *["—"] * (len(HEADERS) - 3)))
    return out


def text_table(table: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [HEADERS, *table]) for i in range(len(HEADERS))]
    numeric = set(range(2, len(HEADERS)))

    def line(row: tuple[str, ...]) -> str:
        cells = (c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out, last = [line(HEADERS), rule], None
    for row in table:
        if last is not None and row[0] != last:
            out.append("")
        out.append(line(row))
        last = row[0]
    return "\n".join(out)


def markdown_table(table: list[tuple[str, ...]]) -> str:
    align = ["---", "---"] + ["---:"] * (len(HEADERS) - 2)
    lines = ["| " + " | ".join(HEADERS) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table]
    return "\n".join(lines)
