"""`triage actions list` and `triage actions retry`: look at the outbox and re-queue parked actions.

The outbox's SQL lives in `streams.actions` (the one writer of `triage.actions`); this module only calls it.
"""

from __future__ import annotations

import argparse
from typing import Any

from apps.cli.common import UsageError, reachable_db_url
from streams.actions import outbox_counts, recent_actions, retry_parked


def register(sub: Any) -> None:
    p = sub.add_parser("actions", help="outbox of effects: list actions, re-queue parked ones")
    asub = p.add_subparsers(dest="actions_command", required=True, metavar="ACTION")
    r = asub.add_parser("retry", help="re-queue parked actions (all, or by id / idempotency key, or by adapter)")
    r.add_argument("ids", nargs="*", help="action ids or idempotency keys; none = every parked action")
    r.add_argument("--adapter", help="only actions of this adapter (webhook, work_queue)")
    r.set_defaults(func=cmd_retry)
    ls = asub.add_parser("list", help="recent actions with their status and last error")
    ls.add_argument("--status", choices=("pending", "delivered", "failed", "parked"), help="only this status")
    ls.add_argument("--limit", type=int, default=20, help="how many rows (default 20)")
    ls.set_defaults(func=cmd_list)


def cmd_retry(args: argparse.Namespace) -> int:
    url = reachable_db_url()
    requeued = retry_parked(url, args.ids or None, args.adapter)
    if not requeued:
        what = f" matching {', '.join(args.ids)}" if args.ids else ""
        if args.ids:
            raise UsageError(f"no parked action{what}; see `triage actions list --status parked`")
        print("no parked actions")
        return 0
    for action_id in requeued:
        print(f"re-queued {action_id}")
    print(f"{len(requeued)} action(s) re-queued; the stream worker's dispatcher delivers them next")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit} must be at least 1")
    url = reachable_db_url()
    rows = recent_actions(url, args.status, args.limit)
    counts = outbox_counts(url)
    print("outbox: " + (", ".join(f"{s} {n}" for s, n in counts.items()) or "empty"))
    for action_id, kind, adapter, status, attempts, last_error, updated_at in rows:
        err = f"  last error: {last_error}" if last_error else ""
        print(
            f"{updated_at:%Y-%m-%d %H:%M:%S}  {status:<9} {adapter:<10} {kind:<9} attempts={attempts}  {action_id}{err}"
        )
    return 0
