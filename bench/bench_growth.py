"""Cost growth: the same pipeline at 1x, 4x and 16x ticket volume; throughput stays flat, memory does not grow.

    .venv/bin/python bench/bench_growth.py [--base N] [--quick]

One embedded PostgreSQL and broker; for each volume a fresh database and topic set-up, a backlog of
`base * k` simulated tickets, and a fresh `python -m streams worker` that drains it. Measured per volume:
committed decisions per second (from the rows' `decided_at`, first to last), the worker's peak resident
memory (VmHWM) and its resident memory at the end (VmRSS). All volumes, and the one- vs two-worker scaling
ratio, run in the same process one after another, so the ratios compare like with like on this noisy
machine -> bench/results/growth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import chaos_stack as lib
from tests.support.stream_helpers import wait_for
from triage.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results" / "growth.json"
FACTORS = (1, 4, 16)
# Flat enough on shared cores: the 16x rate within 30 % of the 1x rate; memory within 25 % (+ 40 MiB slack for
# allocator noise).
MIN_RATE_RATIO = 0.70
MAX_RSS_RATIO = 1.25
RSS_SLACK_MIB = 40.0


def rss_mib(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def rate(url: str) -> tuple[int, float]:
    rows = lib.fetch(url, "SELECT count(*), extract(epoch FROM max(decided_at) - min(decided_at)) "
                          "FROM triage.decisions")
    n, span = int(rows[0][0]), float(rows[0][1] or 0.0)
    return n, ((n - 1) / span if span > 0 else 0.0)


def one_volume(stack: lib.Stack, n: int, seed: int, timeout: float) -> dict[str, Any]:
    """Drain a backlog of `n` tickets with a fresh worker on a fresh stack; its rate and memory."""
    url = stack.url
    inputs = lib.build_inputs(n, seed, malformed_per_1000=0, feedback_per_1000=0)
    w = lib.stream_worker(stack, f"worker-{n}")
    w.start()
    try:
        lib.say(f"{n} tickets: producing")
        lib.produce(stack.bootstrap, inputs, lib.chunks(inputs, 1, seed)[0])
        t0 = time.monotonic()
        wait_for(lambda: lib.scalar(url, "SELECT count(*) FROM triage.decisions") >= n, timeout,
                     f"{n} decisions", interval=1.0)
        wall = time.monotonic() - t0
        decided, per_s = rate(url)
        assert w.proc is not None
        out = {"tickets": n, "decisions": decided, "per_s": round(per_s, 1), "wall_s": round(wall, 1),
               "worker_peak_rss_mib": round(rss_mib(w.proc.pid, "VmHWM"), 1),
               "worker_end_rss_mib": round(rss_mib(w.proc.pid, "VmRSS"), 1)}
        lib.say(f"  {per_s:.0f}/s, peak RSS {out['worker_peak_rss_mib']} MiB")
        return out
    finally:
        w.stop()


def scaling(work: Path, n: int, seed: int, timeout: float) -> dict[str, Any]:
    """Decisions/s draining the same backlog with one worker and then with two in one group (fresh stacks)."""
    out: dict[str, Any] = {"tickets": n}
    for workers in (1, 2):
        with lib.Stack(work / f"scale{workers}") as stack:
            inputs = lib.build_inputs(n, seed, malformed_per_1000=0, feedback_per_1000=0)
            procs = [lib.stream_worker(stack, f"w{workers}-{i}") for i in range(workers)]
            try:
                for w in procs:
                    w.start()
                if workers == 2:  # both members hold partitions before the backlog arrives
                    def all_hold_partitions(members: list[Any] = procs) -> bool:
                        return all(json.loads(m.get("/health")).get("partitions") for m in members)

                    wait_for(all_hold_partitions, 90, "both workers to hold partitions")
                lib.produce(stack.bootstrap, inputs, lib.chunks(inputs, 1, seed)[0])
                wait_for(lambda: lib.scalar(stack.url, "SELECT count(*) FROM triage.decisions") >= n,
                             timeout, f"{n} decisions with {workers} worker(s)", interval=1.0)
                out[f"workers_{workers}_per_s"] = round(rate(stack.url)[1], 1)
            finally:
                for w in procs:
                    w.stop()
        lib.say(f"scaling: {workers} worker(s) {out[f'workers_{workers}_per_s']}/s")
    one = out["workers_1_per_s"]
    out["ratio"] = round(out["workers_2_per_s"] / one, 3) if one else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--base", type=int, default=1000, help="tickets at 1x (16x is 16 times this)")
    p.add_argument("--quick", action="store_true", help="base 250: a smoke run, not a measurement")
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--no-scaling", action="store_true", help="skip the one- vs two-worker comparison")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    base = 250 if args.quick else args.base
    result: dict[str, Any] = {"created_at": datetime.now(UTC).isoformat(), "base": base, "factors": list(FACTORS),
                              "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                                          "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]},
                              "thresholds": {"min_rate_ratio": MIN_RATE_RATIO, "max_rss_ratio": MAX_RSS_RATIO,
                                             "rss_slack_mib": RSS_SLACK_MIB}}
    volumes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        for k in FACTORS:
            with lib.Stack(Path(tmp) / f"x{k}") as stack:
                volumes.append({"factor": k, **one_volume(stack, base * k, args.seed + k, timeout=120 + base * k / 20)})
        if not args.no_scaling:
            result["scaling"] = scaling(Path(tmp), base * 4, args.seed, timeout=120 + base / 5)
    first, last = volumes[0], volumes[-1]
    rate_ratio = last["per_s"] / first["per_s"] if first["per_s"] else 0.0
    rss_ratio = last["worker_peak_rss_mib"] / first["worker_peak_rss_mib"] if first["worker_peak_rss_mib"] else 0.0
    result.update(volumes=volumes, rate_ratio_16x_vs_1x=round(rate_ratio, 3), rss_ratio_16x_vs_1x=round(rss_ratio, 3))
    result["met"] = {
        "throughput_flat": rate_ratio >= MIN_RATE_RATIO,
        "memory_not_growing": last["worker_peak_rss_mib"] <= first["worker_peak_rss_mib"] * MAX_RSS_RATIO
        + RSS_SLACK_MIB,
    }
    result["quick"] = args.quick
    result["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lib.say(f"wrote {args.out}: rate 16x/1x {rate_ratio:.2f}, peak RSS 16x/1x {rss_ratio:.2f}, met {result['met']}")
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
