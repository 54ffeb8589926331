"""Fault injection (`make chaos`): seven scenarios, each ending with an input-set vs output-set verifier.

    .venv/bin/python bench/chaos.py [--tickets N] [--time-limit-min M] [--only 1,3,6]

Each scenario gets its own embedded PostgreSQL, broker, workers (real subprocesses) and webhook receiver in
a temporary folder, prints one row of the table (scenario, tickets in, decisions, DLQ, effects, duplicates,
lost, pass/fail) and the whole table goes to bench/results/chaos.json with the evidence of each check.
A scenario that would start after the time limit is recorded as skipped, and the JSON says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run_all import git_head
from tests.support import chaos_stack as lib
from tests.support.chaos_scenarios import (
    budget_two_workers,
    fuzz,
    kill_restart,
    llm_faults,
    postgres_outage,
    survivor,
    webhook_outage,
)
from tests.support.chaos_stack import ScenarioResult, say
from triage.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results" / "chaos.json"


SCENARIOS: dict[str, str] = {
    "1": "kill -9 x5 with restart", "2": "two workers, one killed", "3": "postgres down 20s",
    "4": "LLM failing/timeouts/429", "5": "webhook down 60s", "6": "hypothesis fuzz", "7": "budget, two workers",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--tickets", type=int, default=10_000,
                   help="tickets of scenario 1; 2 and 3 use a tenth, 4 and 5 a twentieth (at least 200)")
    p.add_argument("--time-limit-min", type=float, default=25.0, help="no scenario starts after this")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenario numbers")
    p.add_argument("--fuzz-cases", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "8")))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--merge", metavar="WHY", help="replace only the rows of these scenarios in --out, saying why")
    args = p.parse_args(argv)
    n = args.tickets
    small = max(200, n // 10)
    plan: dict[str, Callable[[Path], ScenarioResult]] = {
        "1": lambda w: kill_restart(w, n, 5, args.seed),
        "2": lambda w: survivor(w, small, args.seed + 2),
        "3": lambda w: postgres_outage(w, small, args.seed + 3, 20.0),
        "4": lambda w: llm_faults(w, max(200, n // 20), args.seed + 4),
        "5": lambda w: webhook_outage(w, max(200, n // 20), args.seed + 5, 60.0),
        "6": lambda w: fuzz(w, args.fuzz_cases, 500, args.seed + 6),
        "7": lambda w: budget_two_workers(w, 300, args.seed + 7),
    }
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    started = time.monotonic()
    limit_s = args.time_limit_min * 60
    verdicts: list[ScenarioResult] = []
    skipped: list[str] = []
    timings: dict[str, float] = {}
    for key in wanted:
        if time.monotonic() - started > limit_s:
            skipped.append(key)
            say(f"scenario {key} skipped: the {args.time_limit_min:.0f}-minute limit has passed")
            continue
        say(f"scenario {key}: {SCENARIOS[key]}")
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"chaos-{key}-") as tmp:
            try:
                v = plan[key](Path(tmp))
            except Exception as exc:  # noqa: BLE001 - a scenario that breaks is a FAIL row with the reason
                v = ScenarioResult(scenario=f"{key} {SCENARIOS[key]}", tickets_in=0, decisions=0, dlq=0, effects=0,
                            duplicates=0, lost=0, passed=False, details={"error": f"{type(exc).__name__}: {exc}"})
        timings[key] = round(time.monotonic() - t0, 1)
        v.details["seconds"] = timings[key]
        verdicts.append(v)
        failed = [k for k, ok in v.details.get("checks", {}).items() if not ok]
        say(f"scenario {key}: {'PASS' if v.passed else 'FAIL'} in {timings[key]:.0f}s"
            + (f" (failed checks: {', '.join(failed)})" if failed else "")
            + (f" error: {v.details['error']}" if "error" in v.details else ""))
    print()
    print(lib.table(verdicts))
    result = {
        "created_at": datetime.now(UTC).isoformat(), "command": " ".join([Path(sys.argv[0]).name, *(argv or
                                                                                                      sys.argv[1:])]),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg": os.getloadavg()},
        "tickets_scenario_1": n, "scaled_down": n < 10_000, "time_limit_min": args.time_limit_min,
        "seed": args.seed, "git_head": git_head(), "skipped": skipped, "seconds": timings,
        "scenarios": [v.as_dict() for v in verdicts],
        "all_passed": bool(verdicts) and all(v.passed for v in verdicts) and not skipped,
    }
    if args.merge and args.out.exists():
        # Re-running some scenarios (after fixing the harness): keep the other rows of the earlier run.
        earlier = json.loads(args.out.read_text())
        redone = {v.scenario.split()[0] for v in verdicts}
        kept = [r for r in earlier.get("scenarios", []) if r["scenario"].split()[0] not in redone]
        for r in result["scenarios"]:
            r["rerun"] = {"at": result["created_at"], "why": args.merge}
        result["scenarios"] = sorted(kept + result["scenarios"], key=lambda r: r["scenario"])
        result["earlier_run"] = {k: earlier.get(k) for k in ("created_at", "command", "seconds", "skipped")}
        result["all_passed"] = all(r["pass"] for r in result["scenarios"]) and not skipped
        print("\nmerged with the earlier run:")
        print(lib.table([ScenarioResult(r["scenario"], r["tickets_in"], r["decisions"], r["dlq"], r["effects"],
                                 r["duplicates"], r["lost"], r["pass"]) for r in result["scenarios"]]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    say(f"wrote {args.out}")
    return 0 if result["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
