"""Canary decisions benchmark: false promotions and power of the verdict, looked at as the DAG looks at it.

Each simulated canary is checked at every sensor look of `canary_promotion` (every
`canary_poke_interval_s` until `canary_timeout_hours`, from the default settings): at each look both
arms have `--labels-per-look` more labelled decisions (twice as many decisions, half labelled; a
disagreement is an override; errors at `--error-rate` in both arms; equal p95 latency), and the real
`lifecycle.canary.decide()` with the default `CanaryThresholds` judges the cumulative counts. A run
ends at promote, rollback, or the timeout, so the maximum sample is looks x labels per look per arm.

A/A runs (both arms agree with the humans `--base` of the time) measure the false-promotion rate,
runs whose challenger agrees `--lift` more often measure the power. The same A/A counts are judged by
the rule the canary used before (a one-sided two-proportion z-test at alpha, repeated at every look)
to show why it was replaced. Writes `bench/results/canary.json`, prints a table, and exits 1 when the
A/A false-promotion rate exceeds alpha or the power at 5 points is below 0.8.

    .venv/bin/python bench/bench_canary.py [--aa-runs 2000] [--power-runs 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run_all import git_head
from lifecycle.canary import ArmStats, CanaryThresholds, decide
from triage.settings import load_settings

RESULTS = Path(__file__).resolve().parent / "results" / "canary.json"
P95_MS = 10.0
PROMOTED, ROLLED_BACK, TIMED_OUT = 2, 1, 0


class Counts:
    """Cumulative per-look counts of both arms for a batch of simulated canaries, shape (runs, looks)."""

    def __init__(self, rng: np.random.Generator, runs: int, looks: int, labels: int, decisions: int,
                 p_champion: float, p_challenger: float, error_rate: float) -> None:
        self.labels, self.decisions = labels, decisions
        self.agree = [np.cumsum(rng.binomial(labels, p, size=(runs, looks)), axis=1)
                      for p in (p_champion, p_challenger)]
        self.errors = [np.cumsum(rng.binomial(decisions, error_rate, size=(runs, looks)), axis=1) for _ in range(2)]

    def arm(self, i: int, run: int, look: int) -> ArmStats:
        n, d = self.labels * (look + 1), self.decisions * (look + 1)
        agree = int(self.agree[i][run, look])
        return ArmStats(arm=("champion", "canary")[i], version=i + 1, decisions=d, labelled=n, judged=n, agree=agree,
                        overrides=n - agree, errors=int(self.errors[i][run, look]), p95_latency_ms=P95_MS)


def judge_with_decide(c: Counts, thresholds: CanaryThresholds, poke_s: int, percent: float) -> tuple[Any, Any]:
    """Outcome code and deciding look of each run, calling `decide()` at every look until it acts."""
    runs, looks = c.agree[0].shape
    outcome, at = np.full(runs, TIMED_OUT), np.full(runs, looks - 1)
    for r in range(runs):
        for k in range(looks):
            v = decide(c.arm(0, r, k), c.arm(1, r, k), thresholds=thresholds,
                       elapsed=timedelta(seconds=poke_s * (k + 1)), percent=percent, mode="canary")
            if v.action in ("promote", "ramp"):  # ramp: the first step of a promotion (none by default)
                outcome[r], at[r] = PROMOTED, k
                break
            if v.action == "rollback":
                outcome[r], at[r] = (TIMED_OUT if v.reason.startswith("timed out") else ROLLED_BACK), k
                break
    return outcome, at


def _z(x1: Any, n1: Any, x2: Any, n2: Any) -> Any:
    pooled = (x1 + x2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, (x2 / n2 - x1 / n1) / np.where(se > 0, se, 1.0), 0.0)


def judge_with_repeated_ztest(c: Counts, thresholds: CanaryThresholds) -> tuple[Any, Any]:
    """The rule `decide()` used before the mSPRT: one-sided z-tests at alpha, acted on at the first significant
    look (error rate at any look; agreement and override rate once each arm has min_feedback labels)."""
    runs, looks = c.agree[0].shape
    zc = NormalDist().inv_cdf(1 - thresholds.alpha)
    n = (np.arange(looks) + 1) * c.labels
    d = (np.arange(looks) + 1) * c.decisions
    z_agree = _z(c.agree[0], n, c.agree[1], n)
    z_over = _z(n - c.agree[0], n, n - c.agree[1], n)
    z_err = _z(c.errors[0], d, c.errors[1], d)
    ready = n >= thresholds.min_feedback
    rollback = ((z_err > zc) & (c.errors[1] > 0)) | (ready & ((z_agree < -zc) | (z_over > zc)))
    promote = ready & (z_agree > zc) & ~rollback
    event = np.where(promote, PROMOTED, np.where(rollback, ROLLED_BACK, TIMED_OUT))
    acted = event != TIMED_OUT
    first = np.where(acted.any(axis=1), acted.argmax(axis=1), looks - 1)
    return event[np.arange(runs), first], first


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson interval of a rate k/n."""
    p, z2 = k / n, z * z
    mid, half = (p + z2 / (2 * n)) / (1 + z2 / n), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [round(max(0.0, mid - half), 4), round(min(1.0, mid + half), 4)]


def summary(outcome: Any, at: Any, labels: int) -> dict[str, Any]:
    n = len(outcome)
    decided_labels = (at + 1) * labels
    promoted = outcome == PROMOTED
    return {"runs": n, "promoted": int(promoted.sum()), "rolled_back": int((outcome == ROLLED_BACK).sum()),
            "timed_out": int((outcome == TIMED_OUT).sum()), "promotion_rate": round(float(promoted.mean()), 4),
            "promotion_rate_95ci": wilson(int(promoted.sum()), n),
            "median_labels_per_arm_to_decide": int(np.median(decided_labels)),
            "median_labels_per_arm_to_promote": int(np.median(decided_labels[promoted])) if promoted.any() else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--aa-runs", type=int, default=2000, help="A/A canaries (default 2000)")
    parser.add_argument("--power-runs", type=int, default=1000, help="canaries with a better challenger (1000)")
    parser.add_argument("--labels-per-look", type=int, default=24, help="new labelled decisions per arm per look")
    parser.add_argument("--base", type=float, default=0.85, help="agreement of the champion (and the A/A challenger)")
    parser.add_argument("--lift", type=float, default=0.05, help="agreement gain of the better challenger")
    parser.add_argument("--error-rate", type=float, default=0.005, help="error rate of both arms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    settings = load_settings({})  # the defaults, whatever this shell's TRIAGE_ variables say
    thresholds = CanaryThresholds.from_settings(settings)
    poke_s = settings.canary_poke_interval_s
    looks = math.ceil(thresholds.timeout.total_seconds() / poke_s)
    labels, decisions = args.labels_per_look, 2 * args.labels_per_look
    load_before, t0 = os.getloadavg(), time.perf_counter()
    rng = np.random.default_rng(args.seed)

    def counts(runs: int, p_challenger: float) -> Counts:
        return Counts(rng, runs, looks, labels, decisions, args.base, p_challenger, args.error_rate)

    aa, better = counts(args.aa_runs, args.base), counts(args.power_runs, args.base + args.lift)
    aa_m = summary(*judge_with_decide(aa, thresholds, poke_s, settings.canary_start_percent), labels)
    pw_outcome, pw_at = judge_with_decide(better, thresholds, poke_s, settings.canary_start_percent)
    pw_m = summary(pw_outcome, pw_at, labels)
    aa_z = summary(*judge_with_repeated_ztest(aa, thresholds), labels)
    pw_z = summary(*judge_with_repeated_ztest(better, thresholds), labels)
    n_max = looks * labels
    zc = NormalDist().inv_cdf(1 - thresholds.alpha)
    fixed = float((_z(aa.agree[0][:, -1], n_max, aa.agree[1][:, -1], n_max) > zc).mean())
    decided_labels = (pw_at + 1) * labels
    within = {str(m): round(float(((pw_outcome == PROMOTED) & (decided_labels <= m)).mean()), 4)
              for m in (250, 500, 1000, 1500, 2000, 3000, n_max) if m <= n_max}
    alpha = thresholds.alpha
    aa_rate, power = aa_m["promotion_rate"], pw_m["promotion_rate"]
    passed = aa_rate <= alpha and power >= 0.8
    report: dict[str, Any] = {
        "benchmark": "canary", "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "seed": args.seed,
        "command": " ".join(["python", "bench/bench_canary.py", *(argv if argv is not None else sys.argv[1:])]),
        "git_head": git_head(), "python": platform.python_version(), "platform": platform.platform(),
        "cores": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "test": "mSPRT", "alpha": alpha, "tau": thresholds.tau,
        "method": "one-sided mixture SPRT per direction (normal mixing N(0, tau^2) restricted to that side) on the "
                  "window's cumulative counts at each look; reject when the likelihood ratio reaches 1/alpha",
        "simulation": {"looks": looks, "poke_interval_s": poke_s,
                       "timeout_h": thresholds.timeout.total_seconds() / 3600,
                       "labels_per_look_per_arm": labels, "decisions_per_look_per_arm": decisions,
                       "max_labels_per_arm": n_max, "min_feedback": thresholds.min_feedback,
                       "base_agreement": args.base, "lift": args.lift, "error_rate": args.error_rate,
                       "p95_latency_ms": P95_MS, "percent": settings.canary_start_percent,
                       "thresholds": "CanaryThresholds.from_settings(default settings)"},
        "aa_runs": args.aa_runs, "aa_false_promotion_rate": aa_rate, "aa_false_promotion_rate_95ci":
            aa_m["promotion_rate_95ci"],
        "power_runs": args.power_runs, "power_at_5pt": power, "power_at_5pt_95ci": pw_m["promotion_rate_95ci"],
        "median_labels_per_arm_to_decide_at_5pt": pw_m["median_labels_per_arm_to_decide"],
        "median_labels_per_arm_to_promote_at_5pt": pw_m["median_labels_per_arm_to_promote"],
        "median_labels_per_arm_to_decide_aa": aa_m["median_labels_per_arm_to_decide"],
        "power_at_5pt_within_labels_per_arm": within,
        "zscore_aa_false_promotion_rate": aa_z["promotion_rate"],
        "zscore_aa_false_promotion_rate_95ci": aa_z["promotion_rate_95ci"],
        "zscore_power_at_5pt": pw_z["promotion_rate"],
        "zscore_fixed_horizon_aa_false_promotion_rate": round(fixed, 4),
        "outcomes": {"msprt_aa": aa_m, "msprt_5pt": pw_m, "zscore_aa": aa_z, "zscore_5pt": pw_z},
        "elapsed_s": round(time.perf_counter() - t0, 1), "passed": passed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"canary decisions: {looks} looks every {poke_s} s, {labels} labels per arm per look (max {n_max}), "
          f"min_feedback {thresholds.min_feedback}, alpha {alpha}, tau {thresholds.tau}; "
          f"{report['cores']} cores, load {report['load_average_before'][0]}, {report['elapsed_s']} s")
    print(f"{'rule':<22}{'A/A runs':>9}{'false promotion':>17}{'5-pt runs':>11}{'power':>8}{'median labels':>15}")
    for name, a, p in (("mSPRT (decide)", aa_m, pw_m), ("repeated z-test (old)", aa_z, pw_z)):
        print(f"{name:<22}{a['runs']:>9}{a['promotion_rate']:>17.2%}{p['runs']:>11}{p['promotion_rate']:>8.2%}"
              f"{p['median_labels_per_arm_to_decide']:>15}")
    print(f"fixed-horizon z-test, one look at {n_max} labels: A/A false promotion {fixed:.2%}")
    print(f"power within labels per arm: {within}")
    print(f"wrote {args.out}")
    if not passed:
        print(f"FAILED: A/A false promotion {aa_rate:.2%} > alpha {alpha} or power {power:.2%} < 80 %", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
