"""`make bench`: run the model, stream, PII and cost-growth benchmarks, print one table, write summary.json.

    .venv/bin/python bench/run_all.py [--quick] [--only model,stream,pii,growth] [--time-limit-min M]

Each benchmark runs as its own script in its own environment (model, PII and growth in `.venv`, the stream
benchmark in `.venv-stream`) and writes its JSON under bench/results/; this script reads those JSONs back,
only counting one as fresh when it was written during this run, and writes bench/results/summary.json with
the machine's cores, both environments' library versions and each figure next to its target.
`--quick` is a smoke run (small backlogs, short phases, no model training): its figures are not claims.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OPS = ROOT / ".venv" / "bin" / "python"
STREAM = ROOT / ".venv-stream" / "bin" / "python"
LOGS = ROOT / ".triage" / "bench-logs"
TRAINED_MODEL = ROOT / ".triage" / "bench" / "banking77"
OPS_PACKAGES = ("torch", "transformers", "onnxruntime", "tokenizers", "psycopg", "aiokafka", "hypothesis", "numpy")
STREAM_PACKAGES = ("faust-streaming", "aiokafka", "onnxruntime", "tokenizers", "psycopg", "pydantic", "numpy")


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Step:
    name: str
    python: Path
    argv: list[str]
    result: Path
    timeout_s: float


def plan(quick: bool) -> list[Step]:
    model_args: list[str] = []
    if quick:
        model_args = ["--skip-train"] if (TRAINED_MODEL / "model.int8.onnx").exists() else []
    steps = [
        Step("model", OPS, ["bench/bench_model.py", *model_args], RESULTS / "model.json", 3600),
        Step("stream", STREAM, ["bench/bench_stream.py", *(
            ["--backlog", "1500", "--warmup", "300", "--phase-seconds", "5", "--naive-seconds", "8"] if quick else [])],
             RESULTS / "stream.json", 1800),
        Step("pii", OPS, ["bench/bench_pii.py", *(["--tickets", "500"] if quick else [])], RESULTS / "pii.json", 900),
        Step("growth", OPS, ["bench/bench_growth.py", *(["--quick"] if quick else [])], RESULTS / "growth.json",
             1800),
    ]
    if quick and not model_args:
        # Training the Banking77 model takes most of 20 minutes here; a smoke run leaves it out.
        steps[0] = Step("model", OPS, [], RESULTS / "model.json", 0)
    return steps


def run_step(step: Step, deadline: float) -> dict[str, Any]:
    if not step.argv:
        return {"status": "skipped", "why": f"--quick and no trained model in {TRAINED_MODEL} (run `make bench`)"}
    left = deadline - time.monotonic()
    if left <= 60:
        return {"status": "skipped", "why": "the time limit has passed"}
    started = time.time()
    say(f"{step.name}: {step.python.parent.parent.name}/bin/python {' '.join(step.argv)}")
    log = LOGS / f"{step.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "w") as out:
            proc = subprocess.run([str(step.python), *step.argv], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=min(step.timeout_s, left), check=False)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        rc = None
    seconds = round(time.time() - started, 1)
    fresh = step.result.exists() and step.result.stat().st_mtime >= started
    status = "ok" if rc == 0 and fresh else ("timed out" if rc is None else f"exit {rc}" if rc else "no result")
    say(f"{step.name}: {status} in {seconds:.0f}s (log: {log.relative_to(ROOT)})")
    return {"status": status, "seconds": seconds, "fresh": fresh, "log": str(log.relative_to(ROOT))}


def load(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def rows(results: dict[str, dict[str, Any]], status: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, met) for the table; a figure from a JSON not written in this run says so."""
    out: list[tuple[str, str, str, str]] = []

    def add(bench: str, figure: str, value: Any, target: str = "", met: Any = None) -> None:
        stale = "" if status.get(bench, {}).get("fresh") else " (earlier run)"
        shown = "n/a" if value is None else f"{value}{stale}"
        out.append((f"{bench}: {figure}", shown, target, "" if met is None else ("yes" if met else "NO")))

    m = results.get("model", {})
    if m:
        for b, v in m.get("throughput_int8_texts_per_s", {}).items():
            add("model", f"serving int8 batch {b} (texts/s)", v, ">= 400 at b32" if b == "32" else "",
                m.get("targets", {}).get(">=400_texts_per_s_at_b32") if b == "32" else None)
        add("model", "test accuracy (torch / int8)", f"{m.get('test_accuracy_torch')} / {m.get('test_accuracy_int8')}",
            ">= 0.930", m.get("targets", {}).get("accuracy>=93.0%"))
        add("model", "ECE before -> after", f"{m.get('test_ece_before')} -> {m.get('test_ece_after')}", "<= 0.03",
            m.get("targets", {}).get("ece_after<=0.03"))
    else:
        add("model", "results", None)
    s = results.get("stream", {})
    if s:
        met = s.get("met", {})
        add("stream", "serving isolated (texts/s)", s.get("serving_isolated_per_s"))
        add("stream", "naive per-message baseline (msg/s)", s.get("naive_per_s"))
        add("stream", "end-to-end sustained (decisions/s)", s.get("e2e_sustained_per_s"))
        ratios = s.get("ratios", {})
        add("stream", "e2e / serving", ratios.get("e2e_vs_serving"), ">= 0.80", met.get("e2e_vs_serving"))
        add("stream", "e2e / naive", ratios.get("e2e_vs_naive"), ">= 5", met.get("e2e_vs_naive"))
        for phase in s.get("latency", []):
            target = "p95 <= 100 ms" if phase.get("share") == 0.5 else ""
            add("stream", f"latency at {phase.get('share', 0):.0%} p50/p95/p99 (ms)",
                f"{phase.get('p50_ms')}/{phase.get('p95_ms')}/{phase.get('p99_ms')}", target,
                met.get("p95_ms_at_half_rate") if target else None)
        add("stream", "worker peak RSS (MiB)", s.get("worker_peak_rss_mib"), "<= 1024", met.get("worker_rss_mib"))
    else:
        add("stream", "results", None)
    p = results.get("pii", {})
    if p:
        for kind, t in p.get("types", {}).items():
            add("pii", f"{kind} recall / precision", f"{t.get('recall')} / {t.get('precision')}", ">= 0.99 / 0.95",
                t.get("passed"))
        add("pii", "mask time p50 / p99 (us)", f"{p.get('timing', {}).get('mask_us_p50')} / "
                                               f"{p.get('timing', {}).get('mask_us_p99')}")
    else:
        add("pii", "results", None)
    g = results.get("growth", {})
    if g:
        for v in g.get("volumes", []):
            add("growth", f"{v['factor']}x ({v['tickets']} tickets) decisions/s, peak RSS MiB",
                f"{v['per_s']}, {v['worker_peak_rss_mib']}")
        add("growth", "throughput 16x / 1x", g.get("rate_ratio_16x_vs_1x"), ">= 0.70",
            g.get("met", {}).get("throughput_flat"))
        add("growth", "peak RSS 16x / 1x", g.get("rss_ratio_16x_vs_1x"), "<= 1.25 (+40 MiB)",
            g.get("met", {}).get("memory_not_growing"))
        sc = g.get("scaling")
        if sc:
            add("growth", "two workers / one worker (decisions/s)", sc.get("ratio"),
                f"reported ({os.cpu_count()} cores)")
    else:
        add("growth", "results", None)
    return out


def render(table: list[tuple[str, str, str, str]]) -> str:
    head = ("figure", "value", "target", "met")
    all_rows = [head, *table]
    widths = [max(len(r[i]) for r in all_rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in all_rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def versions(python: Path, packages: tuple[str, ...]) -> dict[str, str]:
    code = ("import json, platform, sys; from importlib import metadata as m\n"
            "out = {'python': platform.python_version()}\n"
            "for p in sys.argv[1:]:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: out[p] = 'missing'\n"
            "print(json.dumps(out))")
    try:
        proc = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, timeout=60,
                              check=True)
        data: dict[str, str] = json.loads(proc.stdout)
        return data
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}


def git_head() -> str:
    """The commit the run started from (the shared tree may hold uncommitted edits too: `dirty`)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="smoke run: small backlogs, short phases, no training")
    ap.add_argument("--only", default="model,stream,pii,growth", help="comma-separated benchmarks")
    ap.add_argument("--time-limit-min", type=float, default=90.0, help="no benchmark starts after this")
    ap.add_argument("--out", type=Path, default=RESULTS / "summary.json")
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    deadline = time.monotonic() + args.time_limit_min * 60
    load_start = [round(x, 2) for x in os.getloadavg()]
    status: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    for step in plan(args.quick):
        if step.name in wanted:
            status[step.name] = run_step(step, deadline)
        results[step.name] = load(step.result)
    table = rows(results, status)
    print()
    print(render(table))
    summary = {
        "created_at": datetime.now(UTC).isoformat(), "quick": args.quick, "git_head": git_head(),
        "machine": {"cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
                    "platform": platform.platform(), "load_avg_start": load_start,
                    "load_avg_end": [round(x, 2) for x in os.getloadavg()]},
        "versions": {"ops": versions(OPS, OPS_PACKAGES), "stream": versions(STREAM, STREAM_PACKAGES)},
        "runs": status,
        "table": [{"figure": f, "value": v, "target": t, "met": m} for f, v, t, m in table],
        "results": {k: str(RESULTS / f"{k}.json") for k, v in results.items() if v},
    }
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    say(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0 if all(s["status"] in ("ok", "skipped") for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
