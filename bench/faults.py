"""Faults under load: kills and restarts while jobs run, then the invariants.

Scenarios (each on a deployment of its own: a private PostgreSQL 15 and Redis on free
ports, never the shared 5432/6379 servers, a scheduler and 3 workers):

* `sigkill`  - workers SIGKILLed at random moments during 200 jobs (restarted at once);
* `redis`    - the broker crashes (no persistence) and restarts during 500 jobs;
* `postgres` - the jobs store restarts (fast or immediate) during 200 jobs;
* `cancel`   - 1,000 request-cancellation timings against jobs of a few seconds.

After each: every job is terminal within lease + 60 s of the last fault, none is lost,
none has two snapshots, and the transition log agrees with the job rows
(bench/_faults/invariants.py, shared with tests/faults/). The figures are printed and
appended to bench/RESULTS.md.

    .venv/bin/python bench/faults.py [--scenario sigkill|redis|postgres|cancel|all] [--jobs N]

Exit status 1 when any invariant was violated (the run's logs are then kept).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._faults.scenarios import DEFAULT_JOBS, RUNNERS, SCENARIOS, Options, ScenarioResult
from bench._faults.servers import missing_tools
from bench._results import record


def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # the same teardown as Ctrl-C: servers and processes stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--jobs", type=int, default=None,
                        help="jobs (cancel: timings) per scenario; default: "
                             + ", ".join(f"{k} {v}" for k, v in DEFAULT_JOBS.items()))
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--lease", type=int, default=5, help="DATAPLANE_LEASE_SECONDS")
    parser.add_argument("--max-faults", type=int, default=None, help="stop injecting after this many")
    parser.add_argument("--kill-share", type=float, default=0.0,
                        help="cancel: share of timings that use `cancel` (kill) instead of request-cancellation")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep logs and data dirs even when all is well")
    parser.add_argument("--no-record", action="store_true", help="print only, do not append to RESULTS.md")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    missing = missing_tools()
    if missing:
        print(f"cannot run: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)

    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    command = "`.venv/bin/python bench/faults.py " + " ".join(argv if argv is not None else sys.argv[1:]) + "`"
    failed = False
    for name in names:
        opts = Options(jobs=args.jobs or DEFAULT_JOBS[name], workers=args.workers, lease=args.lease,
                       seed=args.seed, keep=args.keep, max_faults=args.max_faults, kill_share=args.kill_share)
        print(f"== {name}: {opts.jobs} jobs ...", flush=True)
        began = time.monotonic()
        result: ScenarioResult = RUNNERS[name](opts)
        lines = [*result.lines(), "", f"Command: {command.strip()}"]
        print(f"== {name} ({result.title}): {'OK' if result.ok else 'VIOLATIONS'} "
              f"in {time.monotonic() - began:.0f} s")
        print("\n".join(lines), flush=True)
        if not args.no_record:
            record(f"Faults: {result.title} (bench/faults.py --scenario {name})", lines)
        failed = failed or not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
