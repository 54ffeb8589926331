"""`triage canary start | status | stop`: the canary_promotion DAG's steps by hand."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from triage.settings import get_settings

CHANGED_BY = "cli"


def register(sub: Any) -> None:
    p = sub.add_parser("canary", help="run a candidate model beside the champion and judge it on live data")
    csub = p.add_subparsers(dest="canary_command", required=True, metavar="ACTION")
    s = csub.add_parser("start", help="deploy a candidate as canary (acts for a share) or shadow (only predicts)")
    s.add_argument("--version", type=int, help="candidate version (default: the newest candidate)")
    s.add_argument("--mode", choices=("canary", "shadow"), help="default: TRIAGE_CANARY_MODE")
    s.add_argument("--percent", type=float, help="share of tickets the canary acts for (default: "
                                                 "TRIAGE_CANARY_START_PERCENT)")
    s.set_defaults(func=start)
    st = csub.add_parser("status", help="live numbers of both arms and the verdict they give now (changes nothing)")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=status)
    sp = csub.add_parser("stop", help="end the active deployment")
    sp.add_argument("--reason", required=True, help="why (kept in the registry)")
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--reject", action="store_true", help="reject the candidate (rolled back)")
    how.add_argument("--promote", action="store_true", help="make the candidate champion")
    sp.set_defaults(func=stop)


def start(args: argparse.Namespace) -> int:
    from lifecycle import canary

    settings = get_settings()
    version = canary.pick_candidate(settings, args.version)
    dep = canary.start(settings, version, mode=args.mode, percent=args.percent, changed_by=CHANGED_BY)
    print(f"{dep.mode} of {dep.name} v{dep.challenger_version} beside champion v{dep.champion_version} "
          f"at {dep.percent:g}%")
    return 0


def status(args: argparse.Namespace) -> int:
    from lifecycle import canary

    found = canary.evaluate(get_settings(), now=datetime.now(UTC))
    if found is None:
        print(json.dumps({"active": False}) if args.json else f"no active deployment of {get_settings().model_name}")
        return 0
    dep, verdict = found
    if args.json:
        print(json.dumps({"active": True, "deployment_id": dep.id, "verdict": verdict.as_dict()}, default=str))
        return 0
    print(f"{dep.mode} of {dep.name} v{dep.challenger_version} beside champion v{dep.champion_version} at "
          f"{dep.percent:g}% since {dep.step_started_at:%Y-%m-%d %H:%M} UTC (started {dep.started_at:%Y-%m-%d %H:%M})")
    for arm in ("champion", "challenger"):
        n = verdict.numbers[arm]
        p95 = "-" if n["p95_latency_ms"] is None else f"{n['p95_latency_ms']:.1f} ms"
        print(f"  {arm:<10} v{n['version']}: {n['decisions']} decisions, {n['judged']} labelled, agreement "
              f"{_pct(n['agreement'])}, overrides {_pct(n['override_rate'])}, abstentions "
              f"{_pct(n['abstention_rate'])}, errors {_pct(n['error_rate'])}, p95 {p95}")
    print(f"verdict now: {verdict.action}: {verdict.reason}")
    return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def stop(args: argparse.Namespace) -> int:
    from ml import registry

    settings = get_settings()
    end = "promoted" if args.promote else "rolled_back" if args.reject else "ended"
    dep = registry.end_deployment(settings.db_url(), settings.model_name, end, args.reason, changed_by=CHANGED_BY)
    if dep is None:
        print(f"no active deployment of {settings.model_name}")
        return 0
    print(f"{dep.mode} of {dep.name} v{dep.challenger_version}: {end} ({args.reason})")
    return 0
