"""Load with failures, run longer: steady GETs and POSTs through a two-member gunicorn pool while the
members are SIGKILLed and restarted in turn; every request and every member-side record counted.

    python bench/load_with_failures.py [--duration 60] [--kills 6] [--threads 8] [--down 1.0] [--json FILE]

The scenario and the rules it checks are in tests/failover_load.py (the slow test
tests/integration/test_load_with_failures.py runs the same, shorter). Prints one summary line (requests,
rate, outcomes by method, lost, truncated, duplicated POSTs, failed POSTs, failures away from a kill) and exits 1
if a rule broke.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import failover_load  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    ap.add_argument("--kills", type=int, default=6, help="SIGKILL+restart cycles, alternating members (default 6)")
    ap.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    ap.add_argument("--down", type=float, default=1.0, help="seconds a killed member stays down (default 1)")
    ap.add_argument("--json", type=Path, help="also write the counts to this file")
    args = ap.parse_args()
    report = failover_load.run(args.duration, args.kills, args.threads, args.down)
    print(report.summary())
    if args.json:
        args.json.write_text(json.dumps({
            "duration_s": round(report.duration, 2), "kills": report.kills, "threads": report.threads,
            "sent": dict(report.sent), "outcomes": {f"{m} {o}": n for (m, o), n in report.outcomes.items()},
            "lost": report.lost, "truncated": report.truncated, "post_duplicates": len(report.post_duplicates),
            "post_ok_not_recorded_once": len(report.post_ok_not_recorded_once),
            "post_failed_recorded": report.post_failed_recorded, "get_retried": report.get_retried,
            "served_after_restart": report.served_after_restart, "kill_times_s": [round(k, 2) for k in report.kill_times],
            "failures_away_from_kills": len(report.failures_away_from_kills),
        }, indent=2) + "\n")
    try:
        report.check(len(report.kills))
    except AssertionError as exc:
        print(f"RULE BROKEN: {exc}", file=sys.stderr)
        return 1
    print("every request got exactly one final response; no POST was repeated; no GET got 502/503; "
          "failures only at kills, truncated answers seen as truncated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
