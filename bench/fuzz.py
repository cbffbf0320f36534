"""The long fuzzing run: mutated corpus cases and random bytes against ferryman's core, for minutes.

    python3 bench/fuzz.py --minutes 5 [--seed N] [--out findings.txt]

Seeds are every request vector (tests/integration/vectors.py) and response vector
(tests/integration/response_vectors.py). Each round picks a target (the request machine, the response
machine, the validation layer via the machine, the rewriters, the path normaliser), mutates a seed
(byte flips, inserted tokens such as CR, LF, NUL, framing headers and chunk lines, deletions,
duplications, line-ending swaps), cuts the result at random points, and runs the checks of tests/fuzzing.py:
no unexpected exception, events independent of the split, accepted messages serialise to one canonical,
singly framed message, rewriters never produce a line-splitting byte. Findings are deduplicated by their
first line and printed (and written to --out) as byte strings ready to become corpus cases. Exit status 1
when anything was found.

The bounded version of the same checks runs in the normal suite: tests/unit/test_fuzz_core.py.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzzing import (  # noqa: E402
    TOKENS, Finding, check_path, check_request_bytes, check_response_bytes, check_rewriters, mutate, random_cuts,
)
from tests.integration.response_vectors import RESPONSE_VECTORS  # noqa: E402
from tests.integration.vectors import VECTORS  # noqa: E402


def _raw(raw: bytes) -> bytes:
    return raw.replace(b"{TRAP}", b"127.0.0.1:9").replace(b"{MEMBER}", b"127.0.0.1:8").replace(b"{PORT}", b"80")


REQUESTS = [_raw(v.raw) for v in VECTORS]
RESPONSES = [(v.raw, v.method.encode()) for v in RESPONSE_VECTORS]
REWRITER_SEEDS = [b"http://127.0.0.1:9001/webapps/x?y=1", b"/webapps/a", b"a=b; Domain=app1; Path=/webapps/; HttpOnly",
                  b"for=1.2.3.4;host=x;proto=https, for=\"[::1]:80\"", b"1.2.3.4, 10.0.0.2, unknown", b"https://app2/webapps"]
PATH_SEEDS = [b"/webapps/a/../b", b"/%2e%2e/x", b"/a//b/./c", b"/a%2fb", b"/..;/x", b"/%41%7e", b"/a\\b"]


def _soup(rng: random.Random) -> bytes:
    return b"".join(rng.choice(TOKENS) if rng.random() < 0.7 else bytes([rng.randrange(256)])
                    for _ in range(rng.randint(1, 40)))


def one(rng: random.Random, counts: collections.Counter[str]) -> None:
    kind = rng.choices(["request", "pipelined", "response", "rewriter", "path"], [40, 15, 30, 10, 5])[0]
    counts[kind] += 1
    if kind in ("request", "pipelined"):
        data = mutate(rng, rng.choice(REQUESTS)) if rng.random() < 0.85 else _soup(rng)
        if kind == "pipelined":
            data = b"GET /webapps/ok HTTP/1.1\r\nHost: t\r\n\r\n" + data + rng.choice(REQUESTS)
        check_request_bytes(data, random_cuts(rng, len(data)))
    elif kind == "response":
        raw, method = rng.choice(RESPONSES)
        data = mutate(rng, raw) if rng.random() < 0.85 else b"HTTP/1.1 200 OK\r\n" + _soup(rng)
        check_response_bytes(data, random_cuts(rng, len(data)), method)
    elif kind == "rewriter":
        check_rewriters(mutate(rng, rng.choice(REWRITER_SEEDS)) if rng.random() < 0.8 else _soup(rng))
    else:
        check_path(mutate(rng, rng.choice(PATH_SEEDS)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: time-based, printed)")
    ap.add_argument("--out", type=Path, default=None, help="also write findings to this file")
    ap.add_argument("--max-findings", type=int, default=50, help="stop after this many distinct findings")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    print(f"fuzz: seed {seed}, {args.minutes} min, {len(REQUESTS)} request and {len(RESPONSES)} response seeds",
          flush=True)
    counts: collections.Counter[str] = collections.Counter()
    findings: dict[str, str] = {}
    start = time.monotonic()
    stop = start + args.minutes * 60
    next_report = start + 30
    n = 0
    while time.monotonic() < stop and len(findings) < args.max_findings:
        n += 1
        try:
            one(rng, counts)
        except Finding as exc:
            text = str(exc)
            key = text.split(":", 1)[0] + text.split("\n", 1)[0][-60:]
            if key not in findings:
                findings[key] = text
                print(f"FINDING {len(findings)}: {text[:2000]}", flush=True)
        if time.monotonic() >= next_report:
            el = time.monotonic() - start
            print(f"  {el:6.0f}s {n} cases ({n / el:.0f}/s), {len(findings)} findings", flush=True)
            next_report += 30
    elapsed = time.monotonic() - start
    print(f"fuzz: {n} cases in {elapsed:.0f}s ({n / elapsed:.0f}/s): "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"; {len(findings)} distinct findings")
    if args.out:
        args.out.write_text(f"seed {seed}, {n} cases, {elapsed:.0f}s\n\n" + "\n\n".join(findings.values()) + "\n")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
