"""Cost of choosing a member, per request: `Pool.choose` for each balancing method.

    python bench/pick_bench.py

Times the decision alone (no sockets) for a one-member pool and two-member pools, unsticky and
sticky, and prints nanoseconds per pick and that cost as a share of ferryman's CPU time per proxied
request (--request-us, from bench/proxy_bench.py's "CPU us/req" column).
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ferryman.core.balancer import Member, PickContext, Pool, make_strategy  # noqa: E402
from ferryman.core.health import MemberHealth  # noqa: E402


def pool(n: int, method: str) -> Pool:
    members = [Member(i, f"http://127.0.0.1:{9001 + i}", route=f"r{i + 1}") for i in range(n)]
    for m in members:
        m.health = MemberHealth(m.name, passive_fails=3, retry=60.0)
    return Pool("p", members, 60.0, make_strategy(method))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--request-us", type=float, default=28.0,
                    help="ferryman CPU time per proxied request in microseconds (default 28)")
    ap.add_argument("--number", type=int, default=200_000)
    args = ap.parse_args()
    import random
    rng = random.Random(1)
    cases = [("1 member", 1, "byrequests", None, None)]
    for method in ("byrequests", "bybusyness", "bytraffic", "p2c", "hash"):
        cases.append((f"2 members {method}", 2, method, None, b"user-42" if method == "hash" else None))
    cases.append(("2 members byrequests, sticky", 2, "byrequests", "r2", None))
    print(f"{'case':<34}{'ns/pick':>10}{'share of a request':>22}")
    for name, n, method, route, key in cases:
        p = pool(n, method)
        now = 1000.0
        exclude: set[int] = set()

        def pick() -> None:
            p.choose(now, PickContext(route=route, hash_key=key, exclude=exclude, rng=rng))

        best = min(timeit.repeat(pick, number=args.number, repeat=5)) / args.number
        ns = best * 1e9
        print(f"{name:<34}{ns:>10.0f}{ns / (args.request_us * 1000) * 100:>21.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
